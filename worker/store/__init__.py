"""Nightshift's own tables, in the `nightshift` schema: run history, job state, job locks, the
queue of run requests, and the migrations that create them and every job's table.

- `queries`: every bookkeeping query, by name (the SQL is in `sql/queries.sql`);
- `records`: what those queries return;
- `claims`: the worker's side of the queue: claiming a request, refusing one (`sql/claims.sql`);
- `migrate`: numbered migrations (`sql/migrations/`) and job tables.
"""
