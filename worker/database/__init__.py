"""Where the database session lives: connecting, reconnecting, replaying, and waiting.

- `connection.Database`: one session kept alive across faults; `run(work)` is how to use it;
- `classify`: what each driver error means (resolve again, back off, retry, give up);
- `deadline`: the client-side deadline, so no call hangs on a silent network;
- `resolver`: where the URL comes from (Platform API, command, file, environment, embedded);
- `embedded`: the local PostgreSQL cluster used when no URL is configured;
- `notify`: LISTEN, and waiting for a NOTIFY;
- `sql`: composing statements and sending a batch, for the layers above.

This is the only package that imports psycopg2.
"""

from worker.database.connection import Database
from worker.database.errors import (
    DatabaseError,
    DatabaseUnavailable,
    ResolverError,
    RowsRefused,
)

__all__ = ["Database", "DatabaseError", "DatabaseUnavailable", "ResolverError", "RowsRefused"]
