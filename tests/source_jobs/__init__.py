"""Jobs for the tests of `worker.source` through the CLI (JOBS_PACKAGE=tests.source_jobs)."""
