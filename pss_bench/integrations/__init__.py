"""Adapters to other frameworks: a detectron2 evaluator, a torchmetrics metric.

Each module imports its framework itself (torchmetrics) or only when used
(detectron2); importing this package imports neither.
"""
