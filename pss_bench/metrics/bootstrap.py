"""Bootstrap confidence intervals and paired significance for PQ and Context Error.

Pure numpy on the per-unit values the evaluations keep; no files, no
printing, no segment matching or retrieval again. Two resampling schemes:

* **Context Error** (:func:`bootstrap_context_error`): the unit is the query
  instance. Each resample draws, *within each class*, as many queries as the
  class has, with replacement (stratified), and every model gets the same
  draws (paired). A resample's class CE is the mean of its drawn queries'
  CEs, its mean CE the mean over classes, exactly as for the point estimate.
  The retrievals, and so each query's CE, stay fixed: the interval covers the
  sampling of query instances from the population of scenes, with the
  gallery held fixed.
* **PQ** (:func:`bootstrap_pq`): the unit is the image. Each resample draws
  ``n`` of the ``n`` images with replacement, the same images for every
  model, sums their per-class IoU, TP, FP, FN and recomputes PQ, SQ, RQ and
  the All / Things / Stuff means from the sums.

With ``B`` resamples and ``α = 1 - level``, an interval is the percentile
interval ``[q_{α/2}, q_{1-α/2}]`` of the ``B`` resampled values (linear
interpolation between order statistics). For a difference ``Δ = model -
reference`` the two-sided p-value of "Δ ≠ 0" inverts that interval (the
smallest ``α`` whose interval excludes 0), with the usual +1 correction::

    p = min(1, 2 (1 + min(#{Δ*_b <= 0}, #{Δ*_b >= 0})) / (B + 1))

so ``p < α`` exactly when 0 lies (up to interpolation) outside the interval,
and ``p >= 2 / (B + 1)``. Resamples in which a statistic is undefined (a
class absent from the drawn images) are left out of its quantiles.

Randomness: one ``numpy.random.Generator`` per stratum, seeded from
``(seed, stream, stratum)``, so a model's intervals do not depend on which
other models or metrics are bootstrapped with it (as long as the models
embed the same instances: the CE resamples the union of their queries).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pss_bench.metrics.pq import PQImageStats
from pss_bench.metrics.results import (  # noqa: F401  (re-exported)
    CEBootstrap,
    CEComparison,
    CEModelBootstrap,
    Difference,
    Interval,
    PQBootstrap,
    PQComparison,
    PQModelBootstrap,
    QueryScores,
)
from pss_bench.structures import Category

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
_PQ_STREAM = 0
_CE_STREAM = 1
#: Elements of one block of resample weights: small enough to stay in the CPU cache (a quarter of
#: the CPU time of 4M-element blocks in bench/bootstrap_speed.py's job).
_BLOCK = 1 << 15
CE_FIELDS = ("ce", "random", "oracle", "precision")
PQ_ROWS = ("All", "Things", "Stuff")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BootstrapSettings:
    """How the intervals were made.

    Attributes:
        resamples: ``B``.
        level: the confidence level, e.g. 0.95.
        seed: the random seed.
    """

    resamples: int = DEFAULT_RESAMPLES
    level: float = DEFAULT_LEVEL
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if int(self.resamples) < 1:
            raise ValueError(f"the bootstrap needs at least 1 resample, got {self.resamples}")
        if not 0.0 < float(self.level) < 1.0:
            raise ValueError(f"the confidence level must lie strictly between 0 and 1, got {self.level}")

    @property
    def alpha(self) -> float:
        return 1.0 - self.level

    def to_dict(self) -> dict:
        return {"resamples": self.resamples, "level": self.level, "seed": self.seed, "method": "percentile",
                "p_value": "paired bootstrap, two-sided, percentile inversion"}


def _f(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


# --------------------------------------------------------------------------- primitives


def resample_counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """How often each of ``n`` units is drawn in each of ``b`` resamples of size ``n``.

    Args:
        rng: the generator.
        n: units (drawn with replacement, ``n`` per resample).
        b: resamples.

    Returns:
        ``(b, n)`` float64 counts; each row sums to ``n``.
    """
    if n == 0:
        return np.zeros((b, 0))
    # 32-bit draws are about 3x faster; bincount wants the platform integer.
    idx = rng.integers(0, n, size=(b, n), dtype=np.int32).astype(np.intp)
    idx += (np.arange(b, dtype=np.int64) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _blocks(n: int, b: int):
    step = max(1, _BLOCK // max(1, n))
    for s in range(0, b, step):
        yield s, min(b, s + step)


def resampled_sums(values: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """``sum_i w_bi values_i`` for ``b`` resamples ``w_b`` of the ``n`` rows of ``values``.

    Args:
        values: ``(n, Q)`` float64.
        b: resamples.
        rng: the generator.

    Returns:
        ``(b, Q)`` float64.
    """
    n = values.shape[0]
    out = np.empty((b, values.shape[1]))
    for s, e in _blocks(n, b):
        out[s:e] = resample_counts(rng, n, e - s) @ values
    return out


def percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` percentile bounds over axis 0, ignoring NaN (NaN where all are).

    Args:
        samples: ``(B, ...)``.
        level: the confidence level.
    """
    a = (1.0 - level) / 2
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=0)  # NaN sort last
    n = (~np.isnan(x)).sum(axis=0)
    out = []
    for q in (a, 1.0 - a):
        # numpy's default ("linear") quantile of the n valid values: position (n - 1) q.
        pos = np.maximum(n - 1, 0) * q
        i0 = np.floor(pos).astype(np.intp)
        i1 = np.minimum(i0 + 1, np.maximum(n - 1, 0))
        v0 = np.take_along_axis(x, i0[None], axis=0)[0]
        v1 = np.take_along_axis(x, i1[None], axis=0)[0]
        frac = pos - i0
        with np.errstate(invalid="ignore"):
            v = np.where(frac > 0, v0 + frac * (v1 - v0), v0)
        out.append(np.where(n > 0, v, np.nan))
    return out[0], out[1]


def paired_p_value(deltas: np.ndarray) -> np.ndarray:
    """Two-sided p-value of "Δ ≠ 0" from resampled differences, over axis 0.

    ``p = min(1, 2 (1 + min(#{Δ <= 0}, #{Δ >= 0})) / (B' + 1))`` with ``B'``
    the non-NaN resamples (NaN where there is none).

    Args:
        deltas: ``(B, ...)`` resampled differences.
    """
    valid = ~np.isnan(deltas)
    nb = valid.sum(axis=0)
    le = (valid & (deltas <= 0)).sum(axis=0)
    ge = (valid & (deltas >= 0)).sum(axis=0)
    p = np.minimum(1.0, 2.0 * (1 + np.minimum(le, ge)) / (nb + 1))
    return np.where(nb > 0, p, np.nan)


def _interval(estimate, samples: np.ndarray, level: float) -> Interval:
    lo, hi = percentile_interval(samples[:, None], level)
    return Interval(_f(estimate), _f(lo[0]), _f(hi[0]))


def _difference(estimate, deltas: np.ndarray, settings: BootstrapSettings) -> Difference:
    est = _f(estimate)
    if est is None:
        return Difference(None, None, None, None, None)
    lo, hi = percentile_interval(deltas[:, None], settings.level)
    p = _f(paired_p_value(deltas[:, None])[0])
    return Difference(est, _f(lo[0]), _f(hi[0]), p, None if p is None else bool(p < settings.alpha))


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


# --------------------------------------------------------------------------- Context Error


def _score_of(ce: np.ndarray, rnd: np.ndarray, orc: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rnd > orc, (rnd - ce) / (rnd - orc), np.nan)


def _ce_means(class_means: np.ndarray, include: np.ndarray) -> np.ndarray:
    """Means over included classes.

    Args:
        class_means: ``(..., C, M, 4)`` class means (NaN where undefined).
        include: ``(C, M)`` bool.

    Returns:
        ``(..., M, 5)``: ce, random, oracle, precision, score.
    """
    inc = include[..., None]
    ce_r_o = np.where(inc, class_means[..., :3], 0.0).sum(axis=-3)
    n = include.sum(axis=0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ce_r_o = np.where(n > 0, ce_r_o / n, np.nan)
    prec = _nanmean(np.where(include, class_means[..., 3], np.nan), axis=-2)
    score = _score_of(ce_r_o[..., 0], ce_r_o[..., 1], ce_r_o[..., 2])
    return np.concatenate([ce_r_o, prec[..., None], score[..., None]], axis=-1)


def bootstrap_context_error(
    tables: Sequence[QueryScores],
    *,
    settings: BootstrapSettings = BootstrapSettings(),
    all_classes: bool = False,
) -> CEBootstrap:
    """Paired, class-stratified bootstrap of the Context Error of one or more models.

    Queries of the models are matched by ``(image index, segment id)``. For
    each class, the union of the models' queries is the population the
    resamples draw from, with the same draws for every model; a model's class
    CE in a resample is the mean over its own drawn queries (identical query
    sets: the plain paired bootstrap).

    Args:
        tables: the per-query values of each model
            (:attr:`~pss_bench.metrics.context_error.ContextErrorResult.queries`),
            the first is the reference. Same categories and K.
        settings: resamples, level and seed.
        all_classes: average every class with queries, not only the informative ones.

    Returns:
        A :class:`CEBootstrap`.

    Raises:
        ValueError: no table, or tables of different categories or K.
    """
    if not tables:
        raise ValueError("need at least one query table")
    cats, k = tables[0].categories, tables[0].k
    for t in tables[1:]:
        if t.categories != cats or t.k != k:
            raise ValueError("cannot bootstrap Context Errors of different categories or K together")
    n_cls, n_mod, b = len(cats), len(tables), int(settings.resamples)

    # Union of the queries, by (class, image index, segment id).
    triples = np.concatenate([np.column_stack([t.class_index, t.keys]) for t in tables]).reshape(-1, 3)
    union, inverse = np.unique(triples, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_union = union.shape[0]
    values = np.zeros((n_union, n_mod, 4))
    present = np.zeros((n_union, n_mod, 4), bool)
    start = 0
    for m, t in enumerate(tables):
        rows = inverse[start : start + len(t)]
        start += len(t)
        vals = np.stack([t.ce, t.random, t.oracle, t.precision], axis=1)
        ok = ~np.isnan(vals)
        values[rows, m] = np.where(ok, vals, 0.0)
        present[rows, m] = ok
    strata = union[:, 0]

    counts = np.stack([np.bincount(t.class_index, minlength=n_cls) for t in tables], axis=1)  # (C, M)
    others = np.stack([t.others for t in tables], axis=1)
    include = (counts > 0) & (all_classes | (others > k))

    point = np.full((n_cls, n_mod, 4), np.nan)
    boot = np.full((b, n_cls, n_mod, 4), np.nan)
    for c in range(n_cls):
        rows = np.flatnonzero(strata == c)
        if rows.size == 0:
            continue
        x = values[rows].reshape(rows.size, -1)
        w = present[rows].reshape(rows.size, -1).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            point[c] = (x.sum(axis=0) / w.sum(axis=0)).reshape(n_mod, 4)
            rng = np.random.default_rng([int(settings.seed), _CE_STREAM, c])
            sums = resampled_sums(np.concatenate([x, w], axis=1), b, rng)
            q = x.shape[1]
            boot[:, c] = (sums[:, :q] / sums[:, q:]).reshape(b, n_mod, 4)

    point_means = _ce_means(point, include)  # (M, 5)
    boot_means = _ce_means(boot, include)  # (B, M, 5)
    point_scores = _score_of(point[..., 0], point[..., 1], point[..., 2])  # (C, M)
    boot_scores = _score_of(boot[..., 0], boot[..., 1], boot[..., 2])
    names = ("ce", "random", "oracle", "precision", "score")

    models = []
    for m in range(n_mod):
        per_class = {}
        for c in range(n_cls):
            if counts[c, m] == 0:
                continue
            d = {f: _interval(point[c, m, j], boot[:, c, m, j], settings.level) for j, f in enumerate(CE_FIELDS)}
            d["score"] = _interval(point_scores[c, m], boot_scores[:, c, m], settings.level)
            per_class[cats[c].id] = d
        mean = {f: _interval(point_means[m, j], boot_means[:, m, j], settings.level) for j, f in enumerate(names)}
        models.append(CEModelBootstrap(per_class, mean, tuple(cats[c].id for c in np.flatnonzero(include[:, m]))))

    differences: list[CEComparison | None] = [None]
    for m in range(1, n_mod):
        common = include[:, 0] & include[:, m]
        inc = np.stack([common, common], axis=1)
        pm = _ce_means(point[:, [0, m]], inc)  # (2, 5): reference, model
        bm = _ce_means(boot[:, :, [0, m]], inc)  # (B, 2, 5)
        d = {f: _difference(pm[1, j] - pm[0, j], bm[:, 1, j] - bm[:, 0, j], settings)
             for j, f in enumerate(names) if f != "random" and f != "oracle"}
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_est = (pm[1, 0] - pm[0, 0]) / pm[0, 0] if pm[0, 0] else np.nan
            rel = (bm[:, 1, 0] - bm[:, 0, 0]) / bm[:, 0, 0]
        lo, hi = percentile_interval(rel[:, None], settings.level)
        d_rel = Difference(_f(rel_est), _f(lo[0]), _f(hi[0]), d["ce"].p_value, d["ce"].significant)
        if d_rel.estimate is None:
            d_rel = Difference(None, None, None, None, None)
        per_class = {}
        both = (counts[:, 0] > 0) & (counts[:, m] > 0)
        for c in np.flatnonzero(both):
            per_class[cats[c].id] = _difference(point[c, m, 0] - point[c, 0, 0], boot[:, c, m, 0] - boot[:, c, 0, 0],
                                                settings)
        same = _same_queries(tables[0], tables[m], np.flatnonzero(both))
        differences.append(CEComparison(tuple(cats[c].id for c in np.flatnonzero(common)), d["ce"], d_rel,
                                        d["score"], d["precision"], per_class, same))
    return CEBootstrap(settings, all_classes, tuple(models), tuple(differences))


def _same_queries(a: QueryScores, b: QueryScores, classes: np.ndarray) -> bool:
    """Whether two tables hold the same queries in the given classes."""
    for c in classes.tolist():
        ka = a.keys[a.class_index == c]
        kb = b.keys[b.class_index == c]
        if ka.shape != kb.shape or not np.array_equal(np.unique(ka, axis=0), np.unique(kb, axis=0)):
            return False
    return True


# --------------------------------------------------------------------------- PQ


def pq_scores(iou: np.ndarray, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
              isthing: np.ndarray) -> dict[str, np.ndarray]:
    """PQ, SQ, RQ per class and the All / Things / Stuff means, vectorised.

    The rules of :meth:`~pss_bench.metrics.pq.PQStats.compute`: a class counts
    when ``TP + FP + FN > 0``; ``SQ = 0`` without TP.

    Args:
        iou, tp, fp, fn: ``(..., C)`` summed statistics.
        isthing: ``(C,)`` bool.

    Returns:
        ``{"class_pq": (..., C)`` (NaN for absent classes), and for each row
        ``r`` and score ``s`` the key ``"r/s"``: ``(...)`` (NaN for a row
        without classes)``}``.
    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    present = tp + fp + fn > 0
    denom = tp + 0.5 * fp + 0.5 * fn
    with np.errstate(divide="ignore", invalid="ignore"):
        pq = np.where(present, iou / denom, 0.0)
        sq = np.where(tp > 0, iou / tp, 0.0)
        rq = np.where(present, tp / denom, 0.0)
    out = {"class_pq": np.where(present, pq, np.nan)}
    isthing = np.asarray(isthing, bool)
    for row, sel in (("All", np.ones_like(isthing)), ("Things", isthing), ("Stuff", ~isthing)):
        use = present & sel
        n = use.sum(axis=-1)
        for name, v in (("pq", pq), ("sq", sq), ("rq", rq)):
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"{row}/{name}"] = np.where(n > 0, np.where(use, v, 0.0).sum(axis=-1) / n, np.nan)
    return out


def bootstrap_pq(
    images: Sequence[PQImageStats],
    *,
    settings: BootstrapSettings = BootstrapSettings(),
) -> PQBootstrap:
    """Paired bootstrap of the PQ of one or more models over the same images.

    Args:
        images: each model's per-image statistics
            (:attr:`~pss_bench.metrics.pq.PQResult.images`), the first is the
            reference; same categories and the same images in the same order.
        settings: resamples, level and seed.

    Returns:
        A :class:`PQBootstrap`.

    Raises:
        ValueError: no model, or models over different categories or images.
    """
    if not images:
        raise ValueError("need at least one model's per-image statistics")
    cats: tuple[Category, ...] = images[0].categories
    for s in images[1:]:
        if s.categories != cats:
            raise ValueError("cannot bootstrap PQs of different categories together")
        if s.image_ids != images[0].image_ids:
            raise ValueError("cannot pair PQs over different images (or images in a different order)")
    n_img, n_cls, n_mod, b = len(images[0]), len(cats), len(images), int(settings.resamples)
    stack = np.stack([np.stack([s.iou, s.tp, s.fp, s.fn], axis=1) for s in images], axis=1)  # (N, M, 4, C)
    flat = stack.reshape(n_img, -1).astype(np.float64)
    isthing = np.array([c.isthing for c in cats], bool)

    rng = np.random.default_rng([int(settings.seed), _PQ_STREAM])
    sums = resampled_sums(flat, b, rng).reshape(b, n_mod, 4, n_cls)
    # The point estimates from the plain sums (the accumulator's numbers).
    total = np.stack([np.stack([s.iou.sum(0), s.tp.sum(0), s.fp.sum(0), s.fn.sum(0)]) for s in images])
    point = pq_scores(total[:, 0], total[:, 1], total[:, 2], total[:, 3], isthing)  # (M, ...)
    boot = pq_scores(sums[:, :, 0], sums[:, :, 1], sums[:, :, 2], sums[:, :, 3], isthing)  # (B, M, ...)

    models = []
    for m in range(n_mod):
        rows = {r: {s: _interval(point[f"{r}/{s}"][m], boot[f"{r}/{s}"][:, m], settings.level)
                    for s in ("pq", "sq", "rq")} for r in PQ_ROWS}
        per_class = {cats[c].id: _interval(point["class_pq"][m, c], boot["class_pq"][:, m, c], settings.level)
                     for c in range(n_cls) if np.isfinite(point["class_pq"][m, c])}
        models.append(PQModelBootstrap(rows, per_class))
    differences: list[PQComparison | None] = [None]
    for m in range(1, n_mod):
        rows = {r: {s: _difference(point[f"{r}/{s}"][m] - point[f"{r}/{s}"][0],
                                   boot[f"{r}/{s}"][:, m] - boot[f"{r}/{s}"][:, 0], settings)
                    for s in ("pq", "sq", "rq")} for r in PQ_ROWS}
        per_class = {}
        for c in range(n_cls):
            est = point["class_pq"][m, c] - point["class_pq"][0, c]
            if np.isfinite(est):
                per_class[cats[c].id] = _difference(est, boot["class_pq"][:, m, c] - boot["class_pq"][:, 0, c],
                                                    settings)
        differences.append(PQComparison(rows, per_class))
    return PQBootstrap(settings, tuple(models), tuple(differences))
