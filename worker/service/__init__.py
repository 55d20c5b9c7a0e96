"""The long-running service: `python -m worker`.

- `worker.Worker`: start, serve, drain;
- `cron`: what runs when (crontab expressions, `<JOB>_SCHEDULE` overrides, misfire grace);
- `scheduler`: APScheduler, set up so each run knows the fire time it serves;
- `queue`: queued run requests, heard through LISTEN/NOTIFY and polling;
- `housekeeping`: dead runs and runs cut short;
- `shutdown`: SIGTERM, warm then cold.
"""
