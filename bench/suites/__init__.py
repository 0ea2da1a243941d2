"""Sets of runs: the suites' policy and their catalogue."""
