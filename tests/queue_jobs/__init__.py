"""Jobs for the tests of the queue of run requests (JOBS_PACKAGE=tests.queue_jobs)."""
