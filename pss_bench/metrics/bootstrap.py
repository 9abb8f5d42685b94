"""Bootstrap confidence intervals and paired significance for PQ and Context Error.

Pure numpy on what the evaluations keep; no files, no printing, no segment
matching or faiss search again. The unit of both is the **image** (a study's
images are independent draws from a population of scenes; its queries, and
the gallery they retrieve from, are not):

* **Context Error** (:func:`bootstrap_context_error`): each resample draws
  ``n`` of the ``n`` images with replacement, the same images for every model
  (paired), and scores them as a new study of those images would: their
  instances are the queries *and* the gallery
  (:mod:`pss_bench.metrics.ce_resample`: the ranked lists are built once and
  re-weighted). The estimand: the expected mean CE of a study of ``n``
  images from the same population, with its own instances as the gallery.
  With another, fixed gallery (``--gallery``) the per-query values stay and
  the query images are resampled as clusters.
* **PQ** (:func:`bootstrap_pq`): each resample draws ``n`` of the ``n``
  images, sums their per-class IoU, TP, FP, FN and recomputes PQ, SQ, RQ and
  the All / Things / Stuff means. A class with false positives only (no GT
  in the evaluated set) stays in every resample's means; its PQ is 0 in the
  estimate, and the row's interval joins two answers the study cannot tell
  apart: the class never occurs (PQ 0 in every resample) or it is rare and
  the images missed it (its rates drawn from their posterior, its GT from
  the prior). A class with GT counts where drawn (the official rule). A
  class with 1 to ``FEW_SEGMENTS - 1`` GT segments is not resampled with the images: its
  PQ and RQ are drawn, in every resample, from a posterior of its own
  TP / FP / FN rates given its counts (:func:`few_segment_draws`), since a
  class seen in one or two images has a PQ of 0 or its IoU whatever images
  are redrawn. A Δ row averages the classes both models have. The
  estimand: the population PQ of the classes the study evaluated.

An interval is the **expanded percentile** interval (Hesterberg 2015): the
percentile interval ``[q_{α'/2}, q_{1-α'/2}]`` of the ``B`` resampled
values at ``α' = 2 Φ(-sqrt(n/(n-1)) t_{n-1,1-α/2})`` (:func:`expanded_alpha`),
a little wider than the plain one on few images. The two-sided p-value of
"Δ ≠ 0" inverts that interval: from the plain percentile one (with the
usual +1 correction)::

    p_raw = min(1, 2 (1 + min(#{Δ*_b <= 0}, #{Δ*_b >= 0})) / (B + 1))

:func:`expanded_p_value` maps ``p_raw`` to the ``α`` whose expanded interval
just touches 0, so ``p < α`` exactly when 0 lies outside the interval.
Resamples in which a statistic is undefined (a class absent from the drawn
images) are left out of its quantiles.

Randomness: one ``numpy.random.Generator`` per metric, seeded from
``(seed, stream)`` and drawing image counts only, so a model's intervals do
not depend on which other models are bootstrapped with it.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pss_bench.metrics.ce_resample import CEIndex, resample_class
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
    PQResult,
    QueryScores,
)
from pss_bench.structures import Category

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
#: The generator streams of the two metrics: ``numpy.random.default_rng([seed, stream])``.
PQ_STREAM = 0
CE_STREAM = 1
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
        return {"resamples": self.resamples, "level": self.level, "seed": self.seed,
                "method": "expanded percentile (Hesterberg 2015), images resampled",
                "p_value": "paired bootstrap, two-sided, inverting the expanded percentile interval"}


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


def image_weights(n: int, b: int, rng: np.random.Generator) -> np.ndarray:
    """The ``(b, n)`` resample counts that :func:`resampled_sums` draws from ``rng`` (the same draws, block by block)."""
    if n == 0:
        return np.zeros((b, 0))
    return np.concatenate([resample_counts(rng, n, e - s) for s, e in _blocks(n, b)])


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


@functools.lru_cache(maxsize=256)
def expanded_alpha(alpha: float, n: int) -> float:
    """The percentile level of the expanded percentile interval (Hesterberg 2015) for ``n`` units.

    ``α' = 2 Φ(-sqrt(n / (n - 1)) t_{n-1, 1-α/2})``: the percentile
    interval at level ``1 - α'`` is as much wider than the plain one as a
    t interval with the ``n - 1`` variance divisor is wider than a z
    interval with the ``n`` divisor (about 10% at n = 20, 3.5% at 50, under
    1% at 250), correcting the percentile interval's known narrowness on
    small samples. ``n < 2``: ``α`` unchanged.
    """
    from scipy.stats import norm, t

    if n < 2:
        return float(alpha)
    return float(2 * norm.cdf(-np.sqrt(n / (n - 1)) * t.ppf(1 - float(alpha) / 2, n - 1)))


def expanded_p_value(p_raw, n: int):
    """The p-value whose expanded interval just touches 0, from the plain percentile one (inverse of
    :func:`expanded_alpha`): ``p = 2 F_{t, n-1}(Φ^{-1}(p_raw / 2) / sqrt(n / (n - 1)))``."""
    from scipy.stats import norm, t

    if n < 2:
        return p_raw
    p_raw = np.asarray(p_raw, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(p_raw), np.nan, 2 * t.cdf(norm.ppf(np.minimum(p_raw, 1.0) / 2)
                                                            / np.sqrt(n / (n - 1)), n - 1))


def interval(estimate, samples: np.ndarray, level: float, n: int = 0) -> Interval:
    """``estimate`` with the expanded percentile interval of its ``(B,)`` resampled ``samples`` over ``n`` units."""
    lo, hi = percentile_interval(samples[:, None], 1.0 - float(expanded_alpha(1.0 - level, n)))
    return Interval(_f(estimate), _f(lo[0]), _f(hi[0]))


def difference(estimate, deltas: np.ndarray, settings: BootstrapSettings, n: int = 0) -> Difference:
    """A paired difference: ``estimate``, the expanded interval of its ``(B,)`` resampled ``deltas``, its p-value."""
    est = _f(estimate)
    if est is None:
        return Difference(None, None, None, None, None)
    lo, hi = percentile_interval(deltas[:, None], 1.0 - float(expanded_alpha(settings.alpha, n)))
    p = _f(expanded_p_value(paired_p_value(deltas[:, None])[0], n))
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
    indexes: Sequence[CEIndex],
    *,
    settings: BootstrapSettings = BootstrapSettings(),
    all_classes: bool = False,
) -> CEBootstrap:
    """Paired image bootstrap of the Context Error of one or more models, each resample its own gallery.

    A resample draws ``n`` of the ``n`` images with replacement, the same
    images for every model; each model's class CE, bounds and precision are
    those of a study of the drawn images
    (:func:`~pss_bench.metrics.ce_resample.resample_class`: the gallery is
    re-formed, retrieval re-weighted, not re-searched). The classes of a mean
    are those of the point estimate, in every resample.

    Args:
        indexes: each model's :class:`~pss_bench.metrics.ce_resample.CEIndex`
            (``ContextErrorResult.index``), the first is the reference. Same
            categories, K and number of images.
        settings: resamples, level and seed.
        all_classes: average every class with queries, not only the informative ones.

    Returns:
        A :class:`CEBootstrap`.

    Raises:
        ValueError: no index, or indexes of different categories, K or image counts.
    """
    if not indexes:
        raise ValueError("need at least one Context Error index")
    cats, k, n_img = indexes[0].categories, indexes[0].k, indexes[0].n_images
    for t in indexes[1:]:
        if t.categories != cats or t.k != k or t.n_images != n_img:
            raise ValueError("cannot bootstrap Context Errors of different categories, K or images together")
    n_cls, n_mod, b = len(cats), len(indexes), int(settings.resamples)

    counts = np.stack([t.counts() for t in indexes], axis=1)  # (C, M)
    others = np.stack([t.others for t in indexes], axis=1)
    include = (counts > 0) & (all_classes | (others > k))

    weights = image_weights(n_img, b, np.random.default_rng([int(settings.seed), CE_STREAM]))
    point = np.full((n_cls, n_mod, 4), np.nan)
    boot = np.full((b, n_cls, n_mod, 4), np.nan)
    for m, t in enumerate(indexes):
        for c, ci in t.classes.items():
            point[c, m] = resample_class(ci, np.ones((1, len(ci))), k)[0]
            boot[:, c, m] = resample_class(ci, weights[:, ci.image], k)

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
            d = {f: interval(point[c, m, j], boot[:, c, m, j], settings.level, n_img) for j, f in enumerate(CE_FIELDS)}
            d["score"] = interval(point_scores[c, m], boot_scores[:, c, m], settings.level, n_img)
            per_class[cats[c].id] = d
        mean = {f: interval(point_means[m, j], boot_means[:, m, j], settings.level, n_img)
                for j, f in enumerate(names)}
        models.append(CEModelBootstrap(per_class, mean, tuple(cats[c].id for c in np.flatnonzero(include[:, m]))))

    differences: list[CEComparison | None] = [None]
    for m in range(1, n_mod):
        common = include[:, 0] & include[:, m]
        inc = np.stack([common, common], axis=1)
        pm = _ce_means(point[:, [0, m]], inc)  # (2, 5): reference, model
        bm = _ce_means(boot[:, :, [0, m]], inc)  # (B, 2, 5)
        d = {f: difference(pm[1, j] - pm[0, j], bm[:, 1, j] - bm[:, 0, j], settings, n_img)
             for j, f in enumerate(names) if f != "random" and f != "oracle"}
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_est = (pm[1, 0] - pm[0, 0]) / pm[0, 0] if pm[0, 0] else np.nan
            rel = (bm[:, 1, 0] - bm[:, 0, 0]) / bm[:, 0, 0]
        lo, hi = percentile_interval(rel[:, None], 1.0 - float(expanded_alpha(settings.alpha, n_img)))
        d_rel = Difference(_f(rel_est), _f(lo[0]), _f(hi[0]), d["ce"].p_value, d["ce"].significant)
        if d_rel.estimate is None:
            d_rel = Difference(None, None, None, None, None)
        per_class = {}
        both = (counts[:, 0] > 0) & (counts[:, m] > 0)
        for c in np.flatnonzero(both):
            per_class[cats[c].id] = difference(point[c, m, 0] - point[c, 0, 0], boot[:, c, m, 0] - boot[:, c, 0, 0],
                                                settings, n_img)
        same = _same_queries(indexes[0], indexes[m], np.flatnonzero(both))
        differences.append(CEComparison(tuple(cats[c].id for c in np.flatnonzero(common)), d["ce"], d_rel,
                                        d["score"], d["precision"], per_class, same))
    return CEBootstrap(settings, all_classes, tuple(models), tuple(differences))


def _same_queries(a: CEIndex, b: CEIndex, classes: np.ndarray) -> bool:
    """Whether two indexes hold the same queries in the given classes."""
    for c in classes.tolist():
        ka, kb = a.classes[c].keys, b.classes[c].keys
        if ka.shape != kb.shape or not np.array_equal(np.unique(ka, axis=0), np.unique(kb, axis=0)):
            return False
    return True


# --------------------------------------------------------------------------- PQ


def pq_scores(iou: np.ndarray, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
              isthing: np.ndarray, *, classes: np.ndarray | None = None, keep: np.ndarray | None = None,
              fill: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """PQ, SQ, RQ per class and the All / Things / Stuff means, vectorised.

    The rules of :meth:`~pss_bench.metrics.pq.PQStats.compute`: a class counts
    when ``TP + FP + FN > 0``; ``SQ = 0`` without TP.

    Args:
        iou, tp, fp, fn: ``(..., C)`` summed statistics.
        isthing: ``(C,)`` bool.
        classes: ``(..., C)`` bool, the classes a mean may include (default: all).
        keep: ``(..., C)`` bool, classes that count in the means even where
            absent from the statistics, with their ``fill`` values (default:
            none: a class counts where ``TP + FP + FN > 0``).
        fill: ``{"pq", "sq", "rq"}`` -> ``(..., C)`` values of the absent
            classes of ``keep`` (needed with ``keep``).

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
    scores = {"pq": pq, "sq": sq, "rq": rq}
    use_all = present
    if keep is not None:
        keep = np.broadcast_to(np.asarray(keep, bool), present.shape)
        missing = keep & ~present
        scores = {k: np.where(missing, fill[k], v) for k, v in scores.items()}
        use_all = present | keep
    if classes is not None:
        use_all = use_all & np.broadcast_to(np.asarray(classes, bool), present.shape)
    isthing = np.asarray(isthing, bool)
    for row, sel in (("All", np.ones_like(isthing)), ("Things", isthing), ("Stuff", ~isthing)):
        use = use_all & sel
        n = use.sum(axis=-1)
        for name, v in scores.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"{row}/{name}"] = np.where(n > 0, np.where(use, v, 0.0).sum(axis=-1) / n, np.nan)
    return out


#: A class with at least one but fewer GT segments than this in the evaluated set is not resampled with the
#: images: its PQ and RQ are drawn from the posterior of :func:`few_segment_draws` in every resample.
FEW_SEGMENTS = 10
#: The Jeffreys prior of a Poisson rate, Gamma(1/2): the pseudo-count added to each of a class's TP, FP
#: and FN counts (and to each joint outcome of :func:`few_segment_pair_draws`).
JEFFREYS = 0.5
#: The streams, under ``(seed, PQ_STREAM)``, of the few-segment draws: ``[seed, PQ_STREAM, stream, category id]``.
FEW_STREAM, FEW_PAIR_STREAM = 1, 2


def pooled_sq(iou: np.ndarray, tp: np.ndarray) -> float:
    """A model's SQ over all its matches, ``Σ iou / Σ tp`` (0.5, the least IoU of a match, without any).

    The SQ :func:`few_segment_draws` gives a class with GT but no TP.
    """
    t = float(np.sum(tp))
    return float(np.sum(iou)) / t if t > 0 else 0.5


def few_segment_draws(iou: float, tp: float, fp: float, fn: float, sq_prior: float, b: int,
                      rng: np.random.Generator) -> np.ndarray:
    """``b`` draws of a few-segment class's statistics from the posterior of its rates, as pseudo-sums.

    A class's population PQ is ``SQ · λ_TP / (λ_TP + λ_FP / 2 + λ_FN / 2)``
    with ``λ`` the expected TP, FP and FN counts per image. With Jeffreys'
    prior, each count's rate has the posterior ``Gamma(count + 1/2)`` (on
    the scale of the study), so a draw is ``g_x ~ Gamma(x + 1/2)`` for
    ``x`` in TP, FP, FN, and ``(SQ · g_TP, g_TP, g_FP, g_FN)`` gives, through
    :func:`pq_scores`, ``PQ = SQ · RQ`` with ``RQ = g_TP / (g_TP + g_FP / 2 +
    g_FN / 2)``. ``SQ`` is the class's own (``iou / tp``), or ``sq_prior``
    without a TP. A class with one matched segment and nothing else gets
    ``RQ`` below 0.5 in about a fifth of the draws (median 0.77), one with one
    missed segment above 0.5 in about a quarter (median 0.21): the coin flip
    that no resampling of the study's images can show.

    Args:
        iou, tp, fp, fn: the class's sums over the evaluated set.
        sq_prior: the SQ of a class without TP (:func:`pooled_sq`).
        b: draws.
        rng: the generator.

    Returns:
        ``(b, 4)`` float64: iou, tp, fp, fn.
    """
    g = rng.gamma(np.array([tp, fp, fn], dtype=np.float64) + JEFFREYS, size=(b, 3))
    sq = iou / tp if tp > 0 else sq_prior
    return np.stack([sq * g[:, 0], g[:, 0], g[:, 1], g[:, 2]], axis=1)


def containing_estimate(iv: Interval) -> Interval:
    """``iv`` widened, where needed, to contain its estimate.

    Used for the intervals of PQ and RQ whose mean has a few-segment class: the posterior of a class
    without a TP lies above its estimate of 0 (the rate of its matches is drawn above 0), so a mean of
    several such classes can have every draw above the estimate, for example on a handful of images.
    """
    if iv.estimate is None or iv.low is None or iv.high is None:
        return iv
    return Interval(iv.estimate, min(iv.low, iv.estimate), max(iv.high, iv.estimate))


def union(a: Interval, b: Interval) -> Interval:
    """The smallest interval holding both (``a``'s estimate): for an estimand a study cannot pin down,
    the interval under each of the answers it cannot tell apart, joined."""
    if None in (a.low, a.high):
        return b
    if None in (b.low, b.high):
        return a
    return Interval(a.estimate, min(a.low, b.low), max(a.high, b.high))


def few_segment_mask(total: np.ndarray, *, no_gt: bool = False) -> np.ndarray:
    """``(C,)`` bool: the classes with 1 to ``FEW_SEGMENTS - 1`` GT segments, from one model's ``(4, C)``
    summed iou, tp, fp, fn; with ``no_gt``, also those with false positives but no GT."""
    gt = total[1] + total[3]
    return ((gt > 0) | (no_gt & (total[2] > 0))) & (gt < FEW_SEGMENTS)


def with_few_segment_draws(total: np.ndarray, sums: np.ndarray, categories: Sequence[Category],
                           seed: int, *, no_gt: bool = False) -> np.ndarray:
    """One model's resampled sums with each few-segment class's replaced by its :func:`few_segment_draws`.

    Args:
        total: ``(4, C)`` the model's sums (iou, tp, fp, fn) over the evaluated set.
        sums: ``(B, 4, C)`` its resampled sums.
        categories: the ``C`` categories.
        seed: the bootstrap seed; a class draws from ``[seed, PQ_STREAM, FEW_STREAM, category id]``, so a
            model's draws depend on its own statistics only.
        no_gt: draw the classes with false positives but no GT too (TP = FN = 0: their GT rate from
            its ``Gamma(1/2)`` prior), as if they occurred, rarely, in the population.

    Returns:
        A ``(B, 4, C)`` copy (``sums`` itself without such a class).
    """
    few = few_segment_mask(total, no_gt=no_gt)
    if not few.any():
        return sums
    out = sums.copy()
    prior = pooled_sq(total[0], total[1])
    for c in np.flatnonzero(few):
        rng = np.random.default_rng([int(seed), PQ_STREAM, FEW_STREAM, int(categories[c].id)])
        out[:, :, c] = few_segment_draws(*total[:, c], prior, sums.shape[0], rng)
    return out


def few_segment_pair_draws(a: tuple[np.ndarray, ...], b_: tuple[np.ndarray, ...], sq_prior: tuple[float, float],
                           b: int, rng: np.random.Generator) -> np.ndarray:
    """Paired :func:`few_segment_draws` of one class for two models on the same GT segments.

    The GT segments of the class fall into four outcomes, matched by both
    models, by the first only, by the second only, by neither, with counts
    ``n11, n10, n01, n00``; per image the counts are not known beyond the
    TP counts, so ``n11 = Σ_i min(TP_a,i, TP_b,i)`` (exact in images with one
    segment of the class: the two models agree where they can). The false
    positives likewise: ``f11 = Σ_i min(FP_a,i, FP_b,i)`` shared, ``f10``,
    ``f01`` each model's own. Each of the seven counts gets its rate's
    ``Gamma(count + 1/2)`` draw ``g``; model a has ``TP = g11 + g10``,
    ``FN = g01 + g00``, ``FP = gf11 + gf10``, model b ``TP = g11 + g01``,
    ``FN = g10 + g00``, ``FP = gf11 + gf01``: what the models share is drawn
    once. Two models with the same TP, FP and FN in every image share one
    draw of :func:`few_segment_draws`'s three rates (Δ from their SQs only),
    as the image bootstrap gives a class on which they agree image by image
    a Δ of its SQs only.

    Args:
        a, b_: each model's ``(iou, tp, fp, fn)`` of the class per image, ``(N,)`` each.
        sq_prior: each model's SQ of a class without TP.
        b: draws.
        rng: the generator.

    Returns:
        ``(b, 2, 4)`` float64: per draw and model, iou, tp, fp, fn.
    """
    tpa, tpb, fpa, fpb = (np.asarray(x, dtype=np.float64) for x in (a[1], b_[1], a[2], b_[2]))
    gt = np.asarray(a[1], dtype=np.float64) + np.asarray(a[3], dtype=np.float64)
    if all(np.array_equal(x, y) for x, y in zip(a[1:], b_[1:])):
        g = rng.gamma(np.array([tpa.sum(), fpa.sum(), gt.sum() - tpa.sum()]) + JEFFREYS, size=(b, 3))
        parts = ((g[:, 0], g[:, 1], g[:, 2]), (g[:, 0], g[:, 1], g[:, 2]))
    else:
        n11 = float(np.minimum(tpa, tpb).sum())
        n10, n01 = float(tpa.sum()) - n11, float(tpb.sum()) - n11
        n00 = max(float(gt.sum()) - n11 - n10 - n01, 0.0)
        f11 = float(np.minimum(fpa, fpb).sum())
        counts = np.array([n11, n10, n01, n00, f11, float(fpa.sum()) - f11, float(fpb.sum()) - f11])
        g = rng.gamma(counts + JEFFREYS, size=(b, 7))
        parts = ((g[:, 0] + g[:, 1], g[:, 4] + g[:, 5], g[:, 2] + g[:, 3]),
                 (g[:, 0] + g[:, 2], g[:, 4] + g[:, 6], g[:, 1] + g[:, 3]))
    out = np.empty((b, 2, 4))
    for j, (stats, (t, f, miss)) in enumerate(zip((a, b_), parts)):
        tp_sum = float(np.sum(stats[1]))
        sq = float(np.sum(stats[0])) / tp_sum if tp_sum > 0 else sq_prior[j]
        out[:, j] = np.stack([sq * t, t, f, miss], axis=1)
    return out


def bootstrap_pq(
    images: Sequence[PQImageStats],
    *,
    settings: BootstrapSettings = BootstrapSettings(),
    few_segment_term: bool = True,
) -> PQBootstrap:
    """Paired bootstrap of the PQ of one or more models over the same images.

    Images are resampled (the same draws for every model) and each class's
    sums re-summed, except for a class with 1 to ``FEW_SEGMENTS - 1`` GT
    segments: in every resample its PQ and RQ are a draw from the posterior
    of its TP / FP / FN rates (:func:`few_segment_draws`; in a Δ,
    :func:`few_segment_pair_draws`, both models' draws together), so the
    class is in every resample's mean and the interval shows the error of
    its few segments. Its SQ, and every score of the other classes, are
    those of the resampled images. A row without such a class gets exactly
    the image bootstrap.

    Args:
        images: each model's per-image statistics
            (:attr:`~pss_bench.metrics.pq.PQResult.images`), the first is the
            reference; same categories and the same images in the same order.
        settings: resamples, level and seed.
        few_segment_term: draw the few-segment classes from their posterior
            (``tp + fn`` must then count GT segments, as PQ's statistics do;
            PQ† and Parsing Covering keep other sums there and turn it off).

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

    rng = np.random.default_rng([int(settings.seed), PQ_STREAM])
    sums = resampled_sums(flat, b, rng).reshape(b, n_mod, 4, n_cls)
    # The point estimates from the plain sums (the accumulator's numbers).
    total = np.stack([np.stack([s.iou.sum(0), s.tp.sum(0), s.fp.sum(0), s.fn.sum(0)]) for s in images])
    point = pq_scores(total[:, 0], total[:, 1], total[:, 2], total[:, 3], isthing)  # (M, ...)
    # A class without GT in the evaluated set (false positives only) has PQ = SQ = RQ = 0 wherever it
    # appears: it stays in every resample's mean, with 0, where dropping it from the resamples that miss
    # its images would lift the mean. A class with GT keeps the official rule (in a resample's mean when
    # drawn): fixing it too, with its full-set PQ, hides the uncertainty of a rare class's PQ, which
    # bench/interval_coverage.py measured as worse (docs/statistics.md).
    present = total[:, 1] + total[:, 2] + total[:, 3] > 0  # (M, C)
    fp_only = present & (total[:, 1] + total[:, 3] == 0)
    zero = np.zeros_like(total[:, 0])
    fill = {"pq": zero, "sq": zero, "rq": zero}
    boot = pq_scores(sums[:, :, 0], sums[:, :, 1], sums[:, :, 2], sums[:, :, 3], isthing,
                     keep=fp_only, fill=fill)  # (B, M, ...)
    few_mask = (np.stack([few_segment_mask(t) for t in total]) if few_segment_term
                else np.zeros_like(present))  # (M, C)
    sq_prior = [pooled_sq(total[m, 0], total[m, 1]) for m in range(n_mod)]
    if few_mask.any():
        # Each class its own generator, seeded by its category id: a model's draws do not depend on the
        # other models, so its intervals are those of a bootstrap of that model alone.
        fsums = np.stack([with_few_segment_draws(total[m], sums[:, m], cats, settings.seed)
                          for m in range(n_mod)], axis=1)
        fboot = pq_scores(fsums[:, :, 0], fsums[:, :, 1], fsums[:, :, 2], fsums[:, :, 3], isthing,
                          keep=fp_only, fill=fill)
        # SQ keeps the image bootstrap: the posterior is about the rates (RQ), SQ of a class without TP is 0.
        boot = {k: (v if k.endswith("/sq") else fboot[k]) for k, v in boot.items()}
    # A class with false positives and no GT: PQ 0 in these images, but a study cannot tell a class that
    # never occurs (population PQ 0) from a rare one its images missed (population PQ > 0). A row with such
    # a class gets the union of both answers' intervals: the lower end with the class at 0 (above), the upper
    # end with the class drawn as if it occurred (its TP and FN rates from the Gamma(1/2) prior).
    boot_no_gt = None
    if few_segment_term and fp_only.any():
        gsums = np.stack([with_few_segment_draws(total[m], sums[:, m], cats, settings.seed, no_gt=True)
                          for m in range(n_mod)], axis=1)
        gboot = pq_scores(gsums[:, :, 0], gsums[:, :, 1], gsums[:, :, 2], gsums[:, :, 3], isthing,
                          keep=fp_only, fill=fill)
        boot_no_gt = {k: v for k, v in gboot.items() if not k.endswith("/sq")}

    models = []
    for m in range(n_mod):
        rows = {r: {s: interval(point[f"{r}/{s}"][m], boot[f"{r}/{s}"][:, m], settings.level, n_img)
                    for s in ("pq", "sq", "rq")} for r in PQ_ROWS}
        per_class = {cats[c].id: interval(point["class_pq"][m, c], boot["class_pq"][:, m, c], settings.level, n_img)
                     for c in range(n_cls) if np.isfinite(point["class_pq"][m, c])}
        gt_segments = total[m, 1] + total[m, 3]
        few = {r: tuple(cats[c].id for c in np.flatnonzero(present[m] & sel & (gt_segments > 0)
                                                            & (gt_segments < FEW_SEGMENTS)))
               for r, sel in (("All", np.ones(n_cls, bool)), ("Things", isthing), ("Stuff", ~isthing))}
        no_gt = {r: tuple(cats[c].id for c in np.flatnonzero(fp_only[m] & sel))
                 for r, sel in (("All", np.ones(n_cls, bool)), ("Things", isthing), ("Stuff", ~isthing))}
        if few_segment_term:
            for r in PQ_ROWS:
                if no_gt[r]:
                    rows[r] = {k: (v if k == "sq" else union(v, interval(
                        point[f"{r}/{k}"][m], boot_no_gt[f"{r}/{k}"][:, m], settings.level, n_img)))
                        for k, v in rows[r].items()}
                if few[r] or no_gt[r]:
                    rows[r] = {k: (v if k == "sq" else containing_estimate(v)) for k, v in rows[r].items()}
            for c in np.flatnonzero(fp_only[m]):
                per_class[cats[c].id] = union(per_class[cats[c].id], interval(
                    point["class_pq"][m, c], boot_no_gt["class_pq"][:, m, c], settings.level, n_img))
            for c in np.flatnonzero(few_mask[m] | fp_only[m]):
                per_class[cats[c].id] = containing_estimate(per_class[cats[c].id])
        n_row = {r: int((present[m] & sel).sum())
                 for r, sel in (("All", np.ones(n_cls, bool)), ("Things", isthing), ("Stuff", ~isthing))}
        models.append(PQModelBootstrap(rows, per_class, few, n_row,
                                       {cats[c].id: int(gt_segments[c]) for c in np.flatnonzero(present[m])}, no_gt))
    differences: list[PQComparison | None] = [None]
    for m in range(1, n_mod):
        # Δ over the classes both models have: a class one model alone has (a false positive of a class
        # without GT) would weigh in one mean and not in the other.
        both = present[0] & present[m]
        pair = (np.array([0, m]),)
        pd = pq_scores(total[pair][:, 0], total[pair][:, 1], total[pair][:, 2], total[pair][:, 3], isthing,
                       classes=np.stack([both, both]), keep=fp_only[pair] & both,
                       fill={k: v[pair] for k, v in fill.items()})
        bd = pq_scores(sums[:, pair[0], 0], sums[:, pair[0], 1], sums[:, pair[0], 2], sums[:, pair[0], 3], isthing,
                       classes=np.stack([both, both]), keep=fp_only[pair] & both,
                       fill={k: v[pair] for k, v in fill.items()})
        few_pair = (few_mask[0] | few_mask[m]) & both
        if few_pair.any():
            psums = sums[:, pair[0]].copy()
            for c in np.flatnonzero(few_pair):
                rng_c = np.random.default_rng([int(settings.seed), PQ_STREAM, FEW_PAIR_STREAM, int(cats[c].id)])
                psums[:, :, :, c] = few_segment_pair_draws(
                    tuple(x[:, c] for x in (images[0].iou, images[0].tp, images[0].fp, images[0].fn)),
                    tuple(x[:, c] for x in (images[m].iou, images[m].tp, images[m].fp, images[m].fn)),
                    (sq_prior[0], sq_prior[m]), b, rng_c)
            pboot = pq_scores(psums[:, :, 0], psums[:, :, 1], psums[:, :, 2], psums[:, :, 3], isthing,
                              classes=np.stack([both, both]), keep=fp_only[pair] & both,
                              fill={k: v[pair] for k, v in fill.items()})
            bd = {k: (v if k.endswith("/sq") else pboot[k]) for k, v in bd.items()}
        pair_class = bd["class_pq"]  # (B, 2, C)
        rows = {r: {s: difference(pd[f"{r}/{s}"][1] - pd[f"{r}/{s}"][0],
                                   bd[f"{r}/{s}"][:, 1] - bd[f"{r}/{s}"][:, 0], settings, n_img)
                    for s in ("pq", "sq", "rq")} for r in PQ_ROWS}
        left_out = tuple(cats[c].id for c in np.flatnonzero(present[0] ^ present[m]))
        per_class = {}
        for c in range(n_cls):
            est = point["class_pq"][m, c] - point["class_pq"][0, c]
            if np.isfinite(est):
                deltas = (pair_class[:, 1, c] - pair_class[:, 0, c] if few_pair[c]
                          else boot["class_pq"][:, m, c] - boot["class_pq"][:, 0, c])
                per_class[cats[c].id] = difference(est, deltas, settings, n_img)
        differences.append(PQComparison(rows, per_class, left_out))
    return PQBootstrap(settings, tuple(models), tuple(differences), bool(few_segment_term))


# --------------------------------------------------------------------------- the further metrics


#: The rows and scores of each further metric's bootstrap that carry a meaning, and the name its
#: score has in ``pss-bench pq --json`` (:meth:`~pss_bench.metrics.results.VariantResult.to_dict`).
#: PQ† keeps only ``pq`` per row; Parsing Covering has one value, ``pc``, over all classes.
VARIANT_FIELDS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "boundary_pq": (PQ_ROWS, {"pq": "pq", "sq": "sq", "rq": "rq"}),
    "pq_dagger": (PQ_ROWS, {"pq": "pq"}),
    "pc": (("All",), {"pq": "pc"}),
    "pq_area/small": (PQ_ROWS, {"pq": "pq", "sq": "sq", "rq": "rq"}),
    "pq_area/medium": (PQ_ROWS, {"pq": "pq", "sq": "sq", "rq": "rq"}),
    "pq_area/large": (PQ_ROWS, {"pq": "pq", "sq": "sq", "rq": "rq"}),
}


def bootstrap_variants(results: Sequence[PQResult], *, settings: BootstrapSettings = BootstrapSettings()
                       ) -> dict[str, PQBootstrap]:
    """The further metrics (Boundary PQ, PQ†, PC, PQ by size), each resampled as PQ is, on the same images.

    Each metric is a :func:`bootstrap_pq` of its per-image statistics
    (:func:`~pss_bench.metrics.variants.variant_image_stats`) with the same
    settings, hence the same resampled images as PQ's bootstrap: the same
    intervals whether one model is bootstrapped (``pss-bench pq``) or several
    (``pss-bench compare``, paired, the first the reference).

    Args:
        results: each model's :class:`~pss_bench.metrics.results.PQResult`,
            evaluated with the same metrics and kept per-image statistics
            (``images`` and ``variant_images``).
        settings: resamples, level and seed.

    Returns:
        ``{key: PQBootstrap}`` with the keys of
        :data:`~pss_bench.metrics.variants.BOOTSTRAP_KEYS` of the metrics
        asked, in that order; empty without further metrics. Parsing
        Covering's models carry no few-segment flags or GT segment counts (its
        statistics are GT areas). Only the fields of :data:`VARIANT_FIELDS`
        mean something; :func:`variant_bootstrap_dict` writes those.
    """
    from dataclasses import replace

    from pss_bench.metrics.variants import variant_image_stats

    if not results or results[0].variant_images is None or results[0].images is None:
        return {}
    per_model = [variant_image_stats(r.variant_images, r.images.image_ids) for r in results]
    # PQ† keeps GT counts of stuff in tp (fp = fn = 0) and PC GT areas: no posterior of match rates there.
    out = {key: bootstrap_pq([stats[key] for stats in per_model], settings=settings,
                             few_segment_term=key not in ("pq_dagger", "pc")) for key in per_model[0]}
    if "pc" in out:
        # Parsing Covering's statistics carry GT areas where PQ's carry segment counts: no
        # few-segment flags or counts can be read from them.
        pc = out["pc"]
        out["pc"] = replace(pc, models=tuple(replace(m, few_segments={}, gt_segments={}, no_gt={})
                                             for m in pc.models))
    return out


def variant_bootstrap_dict(key: str, boot: PQBootstrap) -> dict:
    """``boot.to_dict()`` with only the rows and scores that ``key``'s metric has (:data:`VARIANT_FIELDS`).

    Boundary PQ and the PQ-by-size ranges keep PQ's layout; PQ† keeps ``pq``
    per row; Parsing Covering keeps its ``All`` row, its score named ``pc``,
    and drops the segment counts (its statistics are areas).
    """
    rows, scores = VARIANT_FIELDS[key]
    out = boot.to_dict()

    def keep(d: dict) -> dict:
        return {r: {scores[s]: v for s, v in d[r].items() if s in scores} for r in rows}

    for m in out["models"]:
        m["rows"] = keep(m["rows"])
        if key == "pc":
            m["classes"] = {"All": m["classes"]["All"]}
            del m["few_segments"], m["gt_segments"], m["no_gt"]
    for d in out["differences"]:
        if d is not None:
            d["rows"] = keep(d["rows"])
    return out
