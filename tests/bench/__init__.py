"""Benchmarks: scripts that measure and print, never timed tests. `make bench` runs them (tests/bench/run.py)."""
