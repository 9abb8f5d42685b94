"""Regression checks for users' own test suites: PQ and Context Error must not get worse.

Example (in a user's ``test_model.py``)::

    from pss_bench.testing import assert_pq, assert_context_error

    def test_no_pq_regression():
        assert_pq("out/pred", "data/gtFine/cityscapes_panoptic_val.json",
                  baseline="baselines/model_pq.json", tol=0.005)

The baseline JSON holds a previous result and a fingerprint of the GT it was
made on (a hash of its annotations and its image count): a check against
another GT fails saying so. ``pytest --pss-bench-update`` (the pytest plugin
registered by pss-bench) rewrites the baselines instead of comparing. A
relative baseline path is resolved against pytest's rootdir when running
under pytest, else the working directory.

``two_sided=True`` also fails when a metric got *better* by more than the
tolerance: what a project's own fixed model should use, where a bug that
inflates PQ or lowers the Context Error is as wrong as a drop. Failures
show the caller's line, not this module's frames (``__tracebackhide__``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from pss_bench.io.atomic import write_json_atomic
from pss_bench.io.panoptic import PanopticJson, load_panoptic_json, read_json_file

_settings: dict = {"update": False, "rootdir": None}

BASELINE_FORMAT = "pss-bench-baseline"
#: The rows :func:`assert_pq` checks by default (per-class PQ is opt-in: a
#: one-instance class swings by whole points between honest runs).
PQ_ROWS = ("All", "Things", "Stuff")


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
    two_sided: bool = False,
) -> list[tuple[str, float | None, float | None]]:
    """The metrics that moved by more than ``tol``: ``(name, baseline, current)``.

    One-sided (default): only a change for the worse counts. ``two_sided``:
    a change either way does. A metric that had a value in the baseline and
    has none now always counts; one that is new does not.
    """
    moved = []
    for name, old in baseline.items():
        if old is None:
            continue
        new = current.get(name)
        if new is None:
            moved.append((name, old, None))
            continue
        delta = (new - old) if higher_is_better else (old - new)
        if delta < -tol or (two_sided and delta > tol):
            moved.append((name, old, new))
    return moved


def _diff_message(what: str, worse, tol: float, baseline_path: Path, higher_is_better: bool,
                  two_sided: bool = False) -> str:
    if two_sided:
        direction = "changed (two-sided check: better counts too)"
    else:
        direction = "dropped" if higher_is_better else "rose"
    lines = [f"{what} {direction} by more than {tol} against {baseline_path}:",
             f"  {'metric':<32} {'baseline':>10} {'current':>10} {'change':>10}"]
    for name, old, new in worse:
        change = "" if new is None else f"{new - old:+.4f}"
        lines.append(f"  {name:<32} {_fmt(old):>10} {_fmt(new):>10} {change:>10}")
    lines.append("Run pytest with --pss-bench-update to accept the new numbers as the baseline.")
    return "\n".join(lines)


def gt_fingerprint(gt: PanopticJson) -> dict:
    """``{"sha256", "images"}`` of a parsed GT: what its baselines were made on.

    The hash covers the categories and every annotation's image id, PNG name
    and segments (id, category, crowd flag, area), in a canonical form: the
    same GT gives the same hash whatever its JSON's key order or spacing; a
    GT with an image, segment or area more or less gives another.
    """
    import hashlib
    import json

    canon = {
        "categories": [[c.id, c.name, bool(c.isthing)] for c in gt.categories.values()],
        "annotations": [[str(a.image_id), a.file_name, a.segments.ids.tolist(), a.segments.category_ids.tolist(),
                         a.segments.iscrowd.tolist(),
                         a.segments.areas.tolist() if a.segments.areas is not None else None]
                        for a in gt.annotations],
    }
    digest = hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return {"sha256": digest, "images": len(gt.annotations)}


def _same_gt(path: Path, stored: dict, gt: dict) -> None:
    """Raises when a baseline records another GT than ``gt`` (a baseline without a record is not checked)."""
    __tracebackhide__ = True
    was = stored.get("gt")
    if isinstance(was, dict) and (was.get("sha256"), was.get("images")) != (gt["sha256"], gt["images"]):
        raise RegressionError(
            f"{path}: the baseline was made on another GT ({was.get('images')} images, sha256 "
            f"{str(was.get('sha256'))[:12]}...) than this one ({gt['images']} images, sha256 {gt['sha256'][:12]}...): "
            f"its numbers do not apply; run pytest with --pss-bench-update to make a baseline on this GT"
        )


def _check_gt_first(baseline: str | os.PathLike, kind: str, gt: dict) -> None:
    """The GT check before any scoring: a wrong GT fails in a line, not with a missing-prediction error."""
    __tracebackhide__ = True
    path = _resolve(baseline)
    if _settings["update"] or not path.is_file():
        return
    stored = read_json_file(path)
    if isinstance(stored, dict) and stored.get("format") == BASELINE_FORMAT and stored.get("kind") == kind:
        _same_gt(path, stored, gt)


def _check(kind: str, flat: dict, full: dict, baseline: str | os.PathLike, tol: float,
           higher_is_better: bool, what: str, *, gt: dict, checked=None, tolerances=None,
           two_sided: bool = False) -> dict:
    """Compares ``flat`` with the stored baseline (or rewrites it under ``--pss-bench-update``).

    Args:
        gt: :func:`gt_fingerprint` of the GT scored now.
        checked: ``name -> bool``: which stored metrics to compare (default: all).
        tolerances: ``name -> tol`` for metrics with their own tolerance.
    """
    __tracebackhide__ = True
    path = _resolve(baseline)
    if _settings["update"]:
        write_json_atomic(path, {"format": BASELINE_FORMAT, "kind": kind, "gt": gt, "metrics": flat,
                                 "result": full})
        return full
    if not path.is_file():
        raise RegressionError(f"{path}: no baseline yet; run pytest with --pss-bench-update to create it")
    stored = read_json_file(path)
    if not isinstance(stored, dict) or stored.get("format") != BASELINE_FORMAT or stored.get("kind") != kind:
        raise RegressionError(f"{path}: not a pss-bench {kind} baseline")
    _same_gt(path, stored, gt)
    metrics = {k: v for k, v in stored["metrics"].items() if checked is None or checked(k)}
    moved = []
    for name, old in metrics.items():
        t = (tolerances or {}).get(name, tol)
        moved += compare_metrics(flat, {name: old}, t, higher_is_better, two_sided)
    if moved:
        raise RegressionError(_diff_message(what, moved, tol, path, higher_is_better, two_sided))
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
    rows: Iterable[str] = PQ_ROWS,
    per_class: bool = False,
    class_tol: float | None = None,
    two_sided: bool = False,
    gt_dir: str | os.PathLike | None = None,
    pred_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    metric: str = "pq",
) -> dict:
    """Fails when ``metric``'s chosen ``rows`` dropped by more than ``tol`` (fractions).

    Args:
        metric: ``"pq"`` (PQ / SQ / RQ rows, each class's PQ), or one of
            ``"boundary-pq"``, ``"pq-dagger"``, ``"pc"``, ``"pq-area"``
            (:func:`variant_metrics`). Each metric has its own baseline kind:
            a baseline written for one is refused for another.
        rows: which of ``All``, ``Things``, ``Stuff`` are checked (for
            ``pq-area``: in every size range; ``pc`` has ``All`` only).
        per_class: also check each class's score (opt-in: a class with one or
            two instances moves by whole points between honest runs).
        class_tol: the per-class tolerance (default: ``tol``).
        two_sided: also fail when a checked metric rose by more than its
            tolerance (a model whose numbers are known: an inflated PQ is a bug).

    Every metric is stored in the baseline whatever is checked, so the
    choice can change without rewriting it.

    Returns:
        The current ``PQResult.to_dict()`` (with the metric's key when not PQ).

    Raises:
        RegressionError: with a per-metric table of what moved, or the GT
            differs from the baseline's.
        PssBenchError: an unknown metric name.
        ValueError: an unknown row.
    """
    __tracebackhide__ = True
    from pss_bench.errors import PssBenchError
    from pss_bench.evaluation.pq import evaluate_pq
    from pss_bench.metrics.variants import METRIC_NAMES

    if metric not in METRIC_NAMES:
        raise PssBenchError(f"assert_pq: unknown metric {metric!r}; choose from {', '.join(METRIC_NAMES)}")
    rows = tuple(rows)
    if not set(rows) <= set(PQ_ROWS):
        raise ValueError(f"rows must be among {PQ_ROWS}, found {rows}")
    parsed = load_panoptic_json(gt, gt_dir, role="gt")
    fingerprint = gt_fingerprint(parsed)
    _check_gt_first(baseline, metric, fingerprint)
    result = evaluate_pq(pred, parsed, pred_dir=pred_dir, workers=workers, metrics=[metric])
    full = result.to_dict()

    def checked(name: str) -> bool:
        if name.startswith("class "):
            return per_class
        return any(part in rows for part in name.split("/"))  # "All/pq", "small/All/pq"

    flat = pq_metrics(full, result.categories) if metric == "pq" else variant_metrics(result, metric)
    ctol = tol if class_tol is None else class_tol
    return _check(metric, flat, full, baseline, tol, True, "PQ" if metric == "pq" else metric, gt=fingerprint,
                  checked=checked, tolerances={k: ctol for k in flat if k.startswith("class ")},
                  two_sided=two_sided)


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
    two_sided: bool = False,
    **kwargs,
) -> dict:
    """Fails when the mean or a class's Context Error rose by more than ``tol`` (lower is better).

    ``two_sided``: also fail when one fell by more than ``tol``. Extra keyword
    arguments go to :func:`pss_bench.evaluation.context_error.evaluate_context_error`.

    Returns:
        The current result as a dict.
    """
    __tracebackhide__ = True
    from pss_bench.evaluation.context_error import evaluate_context_error

    fingerprint = gt_fingerprint(load_panoptic_json(gt, gt_dir, role="gt"))
    _check_gt_first(baseline, "context-error", fingerprint)
    result = evaluate_context_error(pred_dir, gt, gt_dir=gt_dir, k=k, **kwargs)
    full = result.to_dict()
    return _check("context-error", ce_metrics(full), full, baseline, tol, False, "Context Error",
                  gt=fingerprint, two_sided=two_sided)


__all__: Iterable[str] = ["assert_pq", "assert_context_error", "RegressionError", "compare_metrics", "gt_fingerprint"]
