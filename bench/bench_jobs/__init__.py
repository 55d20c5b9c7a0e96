"""The jobs of bench/throughput.py (JOBS_PACKAGE=bench.bench_jobs): they yield generated rows."""
