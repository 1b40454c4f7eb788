"""Load benchmarks: the harness (`python -m benchmarks.run`), its baselines and results."""
