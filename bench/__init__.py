"""Training-benchmark harness."""
