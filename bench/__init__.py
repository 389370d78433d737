"""Benchmarks of the Messenger API (see bench/README.md); run with ``make bench``."""
