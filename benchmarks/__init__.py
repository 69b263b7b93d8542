"""Load tests, the latency guard and the comparison with baselines."""
