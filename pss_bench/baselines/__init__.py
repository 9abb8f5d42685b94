"""Baselines compared with the PSS reference model (each in its own sub-package)."""
