"""`bench ci`: the CI job against a stored baseline or against another commit."""
