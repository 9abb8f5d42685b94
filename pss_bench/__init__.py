"""pss-bench: panoptic quality and Context Error for any panoptic model.

Public Python API::

    from pss_bench import evaluate_pq, PanopticQuality
"""

from pss_bench.errors import (
    FormatError,
    GroundTruthFormatError,
    PredictionFormatError,
    PssBenchError,
)

__version__ = "0.1.0"

__all__ = [
    "FormatError",
    "GroundTruthFormatError",
    "PanopticQuality",
    "PredictionFormatError",
    "PssBenchError",
    "evaluate_pq",
]


def __getattr__(name: str):
    # Lazy so that `import pss_bench` stays cheap (no torch import).
    if name == "evaluate_pq":
        from pss_bench.evaluation.pq import evaluate_pq

        return evaluate_pq
    if name == "PanopticQuality":
        from pss_bench.metrics.pq import PanopticQuality

        return PanopticQuality
    raise AttributeError(name)
