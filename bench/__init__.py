"""Benchmarks: `python -m bench` (`make bench`) runs every module here and prints its figures."""
