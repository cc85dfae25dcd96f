"""whaled's version: one place, that the package, the metrics and the run records name."""

VERSION = "0.1.0"  # pyproject.toml says the same; tests/test_architecture.py checks they agree
