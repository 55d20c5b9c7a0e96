"""Jobs for the tests (JOBS_PACKAGE=tests.hostile_jobs): they yield whatever a document says."""
