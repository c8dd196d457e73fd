"""Benchmarks: what to time (`cases`), how to time it (`measure`), the pytest-benchmark plugin."""
