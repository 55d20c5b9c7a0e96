"""`python -m worker.database stop|status`: the embedded cluster (`make db-stop`).

Run as the package, not as `-m worker.database.embedded`: the package imports that module
first, so running it by name would warn (RuntimeWarning) before doing anything."""

import sys

from worker.database.embedded import main

raise SystemExit(main(sys.argv[1:]))
