"""One module per CLI verb; each defines NAME, a docstring (the help) and ``command``."""
