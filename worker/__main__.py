"""`python -m worker [command]`: see worker/cli.py."""

import sys

from worker.cli import main

sys.exit(main(sys.argv[1:]))
