"""Your jobs: one module per job. Every module here is discovered at start (see README)."""
