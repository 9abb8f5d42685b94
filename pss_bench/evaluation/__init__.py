"""Evaluations over files: they read with ``pss_bench.io`` and score with ``pss_bench.metrics``."""
