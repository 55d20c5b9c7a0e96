"""Jobs for the tests (JOBS_PACKAGE=tests.value_jobs): numbers and key spellings on tap."""
