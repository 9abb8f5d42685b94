"""Regression checks for users' own test suites: PQ and Context Error must not get worse.

Example (in a user's ``test_model.py``)::

    from pss_bench.testing import assert_pq, assert_context_error

    def test_no_pq_regression():
        assert_pq("out/pred", "data/gtFine/cityscapes_panoptic_val.json",
                  baseline="baselines/model_pq.json", tol=0.005)

The baseline JSON holds a previous result. ``pytest --pss-bench-update``
(the pytest plugin registered by pss-bench) rewrites the baselines instead of
comparing. A relative baseline path is resolved against pytest's rootdir when
running under pytest, else the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from pss_bench.io.atomic import write_json_atomic
from pss_bench.io.panoptic import read_json_file

_settings: dict = {"update": False, "rootdir": None}

BASELINE_FORMAT = "pss-bench-baseline"


class RegressionError(AssertionError):
    """A metric got worse than its stored baseline by more than the tolerance."""


def configure(update: bool, rootdir: str | os.PathLike | None) -> None:
    """Called by the pytest plugin."""
    _settings["update"] = bool(update)
    _settings["rootdir"] = Path(rootdir) if rootdir is not None else None


def _resolve(baseline: str | os.PathLike) -> Path:
    p = Path(baseline)
    if p.is_absolute():
        return p
    return (_settings["rootdir"] or Path.cwd()) / p


def _fmt(v) -> str:
    return "null" if v is None else f"{v:.4f}"


def compare_metrics(
    current: dict[str, float | None],
    baseline: dict[str, float | None],
    tol: float,
    higher_is_better: bool,
) -> list[tuple[str, float | None, float | None]]:
    """The metrics that regressed by more than ``tol``: ``(name, baseline, current)``.

    A metric that had a value in the baseline and has none now is a regression;
    one that is new is not.
    """
    worse = []
    for name, old in baseline.items():
        if old is None:
            continue
        new = current.get(name)
        if new is None:
            worse.append((name, old, None))
            continue
        delta = (new - old) if higher_is_better else (old - new)
        if delta < -tol:
            worse.append((name, old, new))
    return worse


def _diff_message(what: str, worse, tol: float, baseline_path: Path, higher_is_better: bool) -> str:
    direction = "dropped" if higher_is_better else "rose"
    lines = [f"{what} {direction} by more than {tol} against {baseline_path}:",
             f"  {'metric':<32} {'baseline':>10} {'current':>10} {'change':>10}"]
    for name, old, new in worse:
        change = "" if new is None else f"{new - old:+.4f}"
        lines.append(f"  {name:<32} {_fmt(old):>10} {_fmt(new):>10} {change:>10}")
    lines.append("Run pytest with --pss-bench-update to accept the new numbers as the baseline.")
    return "\n".join(lines)


def _check(kind: str, flat: dict, full: dict, baseline: str | os.PathLike, tol: float,
           higher_is_better: bool, what: str) -> dict:
    path = _resolve(baseline)
    if _settings["update"]:
        write_json_atomic(path, {"format": BASELINE_FORMAT, "kind": kind, "metrics": flat, "result": full})
        return full
    if not path.is_file():
        raise RegressionError(f"{path}: no baseline yet; run pytest with --pss-bench-update to create it")
    stored = read_json_file(path)
    if not isinstance(stored, dict) or stored.get("format") != BASELINE_FORMAT or stored.get("kind") != kind:
        raise RegressionError(f"{path}: not a pss-bench {kind} baseline")
    worse = compare_metrics(flat, stored["metrics"], tol, higher_is_better)
    if worse:
        raise RegressionError(_diff_message(what, worse, tol, path, higher_is_better))
    return full


def pq_metrics(result_dict: dict, categories: dict | None = None) -> dict[str, float | None]:
    """Flat ``{"All/pq": ..., "class 26 (car)/pq": ...}`` from ``PQResult.to_dict()``."""
    flat: dict[str, float | None] = {}
    for row in ("All", "Things", "Stuff"):
        r = result_dict[row]
        for m in ("pq", "sq", "rq"):
            flat[f"{row}/{m}"] = None if r is None else r[m]
    for cid, r in result_dict["per_class"].items():
        present = r["tp"] + r["fp"] + r["fn"] > 0
        name = f"class {cid}" + (f" ({categories[int(cid)].name})" if categories else "")
        flat[f"{name}/pq"] = r["pq"] if present else None
    return flat


def variant_metrics(result, metric: str) -> dict[str, float | None]:
    """Flat values of one further metric of a ``PQResult`` (``result.variants``), as :func:`pq_metrics` for PQ.

    ``boundary-pq``: as PQ; ``pq-dagger``: ``All/pq`` ... and each counted
    class's PQ†; ``pc``: ``All/pc`` and each class with GT area;
    ``pq-area``: ``small/All/pq`` ... per range and row.
    """
    v = result.variants
    cats = result.categories
    full = v.to_dict()

    def name(cid) -> str:
        return f"class {cid}" + (f" ({cats[int(cid)].name})" if cats else "")

    if metric == "boundary-pq":
        return pq_metrics(full["boundary_pq"], cats)
    flat: dict[str, float | None] = {}
    if metric == "pq-dagger":
        for row in ("All", "Things", "Stuff"):
            r = full["pq_dagger"][row]
            flat[f"{row}/pq"] = None if r is None else r["pq"]
        for cid, value in v.pq_dagger.per_class.items():
            flat[f"{name(cid)}/pq"] = value if cid in v.pq_dagger.counted else None
    elif metric == "pc":
        flat["All/pc"] = v.pc.pc
        for cid, value in v.pc.per_class.items():
            flat[f"{name(cid)}/pc"] = value if cid in v.pc.counted else None
    elif metric == "pq-area":
        for rng in ("small", "medium", "large"):
            for row in ("All", "Things", "Stuff"):
                r = full["pq_area"][rng][row]
                for m in ("pq", "sq", "rq"):
                    flat[f"{rng}/{row}/{m}"] = None if r is None else r[m]
    return flat


def assert_pq(
    pred: str | os.PathLike,
    gt: str | os.PathLike,
    baseline: str | os.PathLike,
    tol: float = 0.005,
    *,
    gt_dir: str | os.PathLike | None = None,
    pred_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    metric: str = "pq",
) -> dict:
    """Fails when ``metric``'s rows or a class's score dropped by more than ``tol`` (fractions).

    Args:
        metric: ``"pq"`` (PQ / SQ / RQ rows, each class's PQ), or one of
            ``"boundary-pq"``, ``"pq-dagger"``, ``"pc"``, ``"pq-area"``
            (:func:`variant_metrics`). Each metric has its own baseline kind:
            a baseline written for one is refused for another.

    Returns:
        The current ``PQResult.to_dict()`` (with the metric's key when not PQ).

    Raises:
        RegressionError: with a per-metric table of what got worse.
        PssBenchError: an unknown metric name.
    """
    from pss_bench.errors import PssBenchError
    from pss_bench.evaluation.pq import evaluate_pq
    from pss_bench.metrics.variants import METRIC_NAMES

    if metric not in METRIC_NAMES:
        raise PssBenchError(f"assert_pq: unknown metric {metric!r}; choose from {', '.join(METRIC_NAMES)}")
    result = evaluate_pq(pred, gt, gt_dir=gt_dir, pred_dir=pred_dir, workers=workers, metrics=[metric])
    full = result.to_dict()
    if metric == "pq":
        return _check("pq", pq_metrics(full, result.categories), full, baseline, tol, True, "PQ")
    return _check(metric, variant_metrics(result, metric), full, baseline, tol, True, metric)


def ce_metrics(result_dict: dict) -> dict[str, float | None]:
    """Flat ``{"mean/ce": ..., "mean_all_classes/ce": ..., "class 24/ce": ...}`` from a Context Error result dict.

    ``mean/ce`` is the headline mean (informative classes by default);
    ``mean_all_classes/ce`` the paper's plain mean over every class with queries.
    """
    flat: dict[str, float | None] = {"mean/ce": result_dict["mean"]["ce"]}
    if result_dict.get("mean_all_classes") is not None:
        flat["mean_all_classes/ce"] = result_dict["mean_all_classes"]["ce"]
    for cid, r in result_dict["per_class"].items():
        flat[f"class {cid}/ce"] = r["ce"]
    return flat


def assert_context_error(
    pred_dir: str | os.PathLike,
    gt: str | os.PathLike,
    baseline: str | os.PathLike,
    tol: float = 0.01,
    *,
    gt_dir: str | os.PathLike | None = None,
    k: int = 20,
    **kwargs,
) -> dict:
    """Fails when the mean or a class's Context Error rose by more than ``tol`` (lower is better).

    Extra keyword arguments go to
    :func:`pss_bench.evaluation.context_error.evaluate_context_error`.

    Returns:
        The current result as a dict.
    """
    from pss_bench.evaluation.context_error import evaluate_context_error

    result = evaluate_context_error(pred_dir, gt, gt_dir=gt_dir, k=k, **kwargs)
    full = result.to_dict()
    return _check("context-error", ce_metrics(full), full, baseline, tol, False, "Context Error")


__all__: Iterable[str] = ["assert_pq", "assert_context_error", "RegressionError", "compare_metrics"]
