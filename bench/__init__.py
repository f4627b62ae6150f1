"""Benchmarks of the training-runs database; run with ``python -m bench.run``."""
