"""The comparison of two sets of results: the statistics and `bench compare`."""
