"""Benchmark helpers run by `make bench` (python -m modelgate.bench)."""
