"""The operator's status page: jobs, their recent runs, the run history, one run, "Run now".

`python -m worker web` serves it (gunicorn, on $PORT); `create_app()` builds the WSGI app to
mount inside another (see the README's "Status page"). It reads the same database as the worker
(`worker.database.Database`), and queues runs as `python -m worker trigger` does.

- `app`: create_app, HTTP Basic auth (STATUS_PASSWORD), CSRF, the database session;
- `views`: the pages; `plot`: a job's last runs as an SVG; `serve`: gunicorn, in-process.
"""

from worker.web.app import create_app

__all__ = ["create_app"]
