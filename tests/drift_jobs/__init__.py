"""Jobs for the tests of declaration drift (JOBS_PACKAGE=tests.drift_jobs): their declarations
come from the environment, so a test can change them between two commands."""
