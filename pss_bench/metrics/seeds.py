"""Verdicts across training seeds: each model trained several times, every run evaluated on the same images.

A difference between two architectures has two sources of chance: which
images the test set happens to hold (a sample of scenes) and which training
run each architecture happens to be (its seed). :func:`bootstrap_pq` and
:func:`bootstrap_context_error` resample images only, so a verdict from one
run per model says nothing about the second. :func:`seed_study` reports, per
model (a *group* of runs) and metric:

* the runs' own values, their mean, sd (``n - 1`` divisor) and range;
* the **image interval** of the mean over the group's runs: images
  resampled (the same draws for every run of every group, as in
  :mod:`~pss_bench.metrics.bootstrap`), the runs fixed;
* the **two-level interval**: each resample also draws the group's runs with
  replacement (its own draw per group), so the interval holds the spread
  between training seeds as well as the images' (a hierarchical bootstrap,
  resampling the top level, runs, and the bottom level, images; Davison and
  Hinkley 1997, section 3.8). The runs are drawn from their deviations
  around each resample's mean widened by ``sqrt(S / (S - 1))``, which makes
  the variance of the mean of ``S`` drawn runs that of ``S`` new ones (the
  plain draw has ``(S - 1) / S`` of it). With 3 runs per group the seed
  level has 10 distinct multisets: the interval is coarse, not exact
  (``tests/metrics/test_seeds.py`` measures its false positives).

and, for each group after the first, the difference of the means with its
image and two-level intervals and p-values (images paired between groups,
runs resampled independently: runs of two architectures with the same seed
share nothing), and Welch's t-test on the runs' values (seeds only, images
fixed). Intervals are expanded percentile intervals over ``n`` images and
p-values their inversions, as in :mod:`~pss_bench.metrics.bootstrap`; with
one run per group the image intervals are exactly
:func:`~pss_bench.metrics.bootstrap.bootstrap_pq`'s and
:func:`~pss_bench.metrics.bootstrap.bootstrap_context_error`'s (the same
draws, the same rules).

PQ metrics are each run's own All / Things / Stuff means (a class with
false positives only stays in every resample's means with 0, and a class
with few GT segments is drawn from its posterior, as there; a difference of
groups then combines each run's own draws of such a class, where
``bootstrap_pq`` draws the two models' outcomes together: wider).
The Context Error and context precision are means over the classes that
every run has queries for (and, unless ``all_classes``, that are
informative: more than K others in every run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from pss_bench.metrics.bootstrap import (
    CE_STREAM,
    PQ_STREAM,
    BootstrapSettings,
    difference,
    image_weights,
    interval,
    containing_estimate,
    union,
    few_segment_mask,
    pq_scores,
    with_few_segment_draws,
)
from pss_bench.metrics.ce_resample import CEIndex, resample_class
from pss_bench.metrics.pq import PQImageStats
from pss_bench.metrics.results import Difference, Interval

#: The generator stream of the run (seed) draws: ``numpy.random.default_rng([seed, SEED_STREAM])``.
SEED_STREAM = 2

#: Metric keys, in table order: PQ, PQ-Th, PQ-St, SQ, RQ (All), mean CE, mean context precision@K.
PQ_METRICS = {"pq": "All/pq", "pq_th": "Things/pq", "pq_st": "Stuff/pq", "sq": "All/sq", "rq": "All/rq"}
CE_METRICS = ("ce", "precision")
METRICS = (*PQ_METRICS, *CE_METRICS)


@dataclass(frozen=True)
class RunStats:
    """What one training run's evaluation keeps: per-image PQ statistics and the Context Error index.

    Attributes:
        label: the run's name (e.g. its seed).
        pq: ``PQResult.images``, or ``None`` (no PQ).
        ce: ``ContextErrorResult.index``, or ``None`` (no Context Error).
    """

    label: str
    pq: PQImageStats | None
    ce: CEIndex | None


@dataclass(frozen=True)
class GroupSummary:
    """One model over its runs.

    Attributes:
        name: the model.
        labels: its runs.
        values: metric -> each run's value (``None`` where undefined).
        mean, sd, low, high: metric -> mean, sd, min and max over the runs.
        images: metric -> the image interval of the mean (runs fixed).
        two_level: metric -> the interval with runs and images resampled.
    """

    name: str
    labels: tuple[str, ...]
    values: dict[str, tuple[float | None, ...]]
    mean: dict[str, float | None]
    sd: dict[str, float | None]
    low: dict[str, float | None]
    high: dict[str, float | None]
    images: dict[str, Interval]
    two_level: dict[str, Interval]

    def to_dict(self) -> dict:
        return {"name": self.name, "runs": list(self.labels),
                "metrics": {m: {"values": list(self.values[m]), "mean": self.mean[m], "sd": self.sd[m],
                                "min": self.low[m], "max": self.high[m], "images": self.images[m].to_dict(),
                                "two_level": self.two_level[m].to_dict()} for m in self.values}}


@dataclass(frozen=True)
class GroupDifference:
    """``name`` minus ``reference``, the means over their runs.

    Attributes:
        images: metric -> Δ with its image interval and p-value (runs fixed).
        two_level: metric -> Δ with runs and images resampled.
        welch_p: metric -> Welch's t-test p-value on the runs' values (``None``
            with fewer than two runs in a group or no spread).
    """

    name: str
    reference: str
    images: dict[str, Difference]
    two_level: dict[str, Difference]
    welch_p: dict[str, float | None]

    def to_dict(self) -> dict:
        return {"name": self.name, "reference": self.reference,
                "metrics": {m: {"images": self.images[m].to_dict(), "two_level": self.two_level[m].to_dict(),
                                "welch_p": self.welch_p[m]} for m in self.images}}


@dataclass(frozen=True)
class SeedStudy:
    """:func:`seed_study`'s result.

    Attributes:
        settings: resamples, level, seed.
        n_images: the evaluated images.
        ce_classes: category ids the CE means average (empty without CE).
        groups: one summary per model, the first is the reference.
        differences: each later model against the first.
    """

    settings: BootstrapSettings
    n_images: int
    ce_classes: tuple[int, ...]
    groups: tuple[GroupSummary, ...]
    differences: tuple[GroupDifference, ...]

    def to_dict(self) -> dict:
        return {**self.settings.to_dict(), "n_images": self.n_images, "ce_classes": list(self.ce_classes),
                "groups": [g.to_dict() for g in self.groups],
                "differences": [d.to_dict() for d in self.differences]}


def _f(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _pq_values(stats: PQImageStats, weights: np.ndarray, seed: int) -> tuple[dict, dict, set, dict]:
    """``(point {metric: float}, resampled {metric: (B,)}, metrics drawn with a few-segment class,
    resampled with the classes without GT drawn too {metric: (B,)})`` of one run.

    As :func:`~pss_bench.metrics.bootstrap.bootstrap_pq` resamples one model: a class with few GT segments
    is drawn from its posterior (PQ and RQ; SQ keeps the image resamples); the last dict holds, for the
    metrics whose row has a class with false positives but no GT, the resamples in which that class is
    drawn as if it occurred (the upper end of the union interval).
    """
    isthing = np.array([c.isthing for c in stats.categories], bool)
    arrays = [np.asarray(a, np.float64) for a in (stats.iou, stats.tp, stats.fp, stats.fn)]
    total = [a.sum(axis=0) for a in arrays]
    point = pq_scores(*total, isthing)
    present = total[1] + total[2] + total[3] > 0
    fp_only = present & (total[1] + total[3] == 0)
    zero = np.zeros_like(total[0])
    keep, fill = np.broadcast_to(fp_only, (len(weights), len(zero))), {"pq": zero, "sq": zero, "rq": zero}
    sums = np.stack([weights @ a for a in arrays], axis=1)  # (B, 4, C)
    boot = pq_scores(*sums.transpose(1, 0, 2), isthing, keep=keep, fill=fill)
    drawn = with_few_segment_draws(np.stack(total), sums, stats.categories, seed)
    few = few_segment_mask(np.stack(total))
    flagged = set()
    if drawn is not sums:
        fboot = pq_scores(*drawn.transpose(1, 0, 2), isthing, keep=keep, fill=fill)
        boot = {k: (v if k.endswith("/sq") else fboot[k]) for k, v in boot.items()}
        rows = {"All": np.ones_like(isthing), "Things": isthing, "Stuff": ~isthing}
        flagged = {m for m, key in PQ_METRICS.items()
                   if not key.endswith("/sq") and (few & rows[key.split("/")[0]]).any()}
    alt = {}
    if fp_only.any():
        gdrawn = with_few_segment_draws(np.stack(total), sums, stats.categories, seed, no_gt=True)
        gboot = pq_scores(*gdrawn.transpose(1, 0, 2), isthing, keep=keep, fill=fill)
        rows = {"All": np.ones_like(isthing), "Things": isthing, "Stuff": ~isthing}
        alt = {m: gboot[key] for m, key in PQ_METRICS.items()
               if not key.endswith("/sq") and (fp_only & rows[key.split("/")[0]]).any()}
        flagged |= set(alt)
    return ({m: float(point[key]) for m, key in PQ_METRICS.items()},
            {m: boot[key] for m, key in PQ_METRICS.items()}, flagged, alt)


def ce_means(indexes: Sequence[CEIndex], *, settings: BootstrapSettings = BootstrapSettings(),
             all_classes: bool = False) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Mean CE and mean context precision of several embeddings of the same instances, and their image resamples.

    The classes averaged are those every index has queries for (and, unless
    ``all_classes``, informative in every index); the resamples are
    :func:`~pss_bench.metrics.bootstrap.bootstrap_context_error`'s (same
    stream, same draws for every index).

    Returns:
        ``(category ids averaged, point (R, 2), resampled (B, R, 2))``, the
        last axis ``(ce, precision)``; NaN where no class is averaged.
    """
    cats, k, n_img = indexes[0].categories, indexes[0].k, indexes[0].n_images
    counts = np.stack([t.counts() for t in indexes])
    others = np.stack([t.others for t in indexes])
    keep = (counts > 0).all(axis=0) & (all_classes | (others > k).all(axis=0))
    classes = [int(c) for c in np.flatnonzero(keep)]
    b = int(settings.resamples)
    point = np.full((len(indexes), 2), np.nan)
    boot = np.full((b, len(indexes), 2), np.nan)
    if classes:
        w = image_weights(n_img, b, np.random.default_rng([int(settings.seed), CE_STREAM]))
        for i, t in enumerate(indexes):
            p = np.stack([resample_class(t.classes[c], np.ones((1, len(t.classes[c]))), k)[0] for c in classes])
            bt = np.stack([resample_class(t.classes[c], w[:, t.classes[c].image], k) for c in classes])  # (C, B, 4)
            point[i] = p[:, 0].mean(), p[:, 3].mean()
            boot[:, i, 0], boot[:, i, 1] = bt[:, :, 0].mean(axis=0), bt[:, :, 3].mean(axis=0)
    return tuple(cats[c].id for c in classes), point, boot


def _check(runs: Sequence[RunStats]) -> tuple[int, bool, bool]:
    """``(n_images, with PQ, with CE)``; every run must have the same kinds of statistics over the same images."""
    has_pq = {r.pq is not None for r in runs}
    has_ce = {r.ce is not None for r in runs}
    if len(has_pq) > 1 or len(has_ce) > 1:
        raise ValueError("every run needs the same metrics (PQ and/or Context Error)")
    with_pq, with_ce = has_pq.pop(), has_ce.pop()
    if not (with_pq or with_ce):
        raise ValueError("the runs have neither PQ nor Context Error statistics")
    n = None
    if with_pq:
        first = runs[0].pq
        for r in runs[1:]:
            if r.pq.categories != first.categories or r.pq.image_ids != first.image_ids:
                raise ValueError(f"run {r.label!r}: PQ over other categories or images than run {runs[0].label!r}")
        n = len(first)
    if with_ce:
        first = runs[0].ce
        for r in runs[1:]:
            if r.ce.categories != first.categories or r.ce.k != first.k or r.ce.n_images != first.n_images:
                raise ValueError(f"run {r.label!r}: Context Error over other categories, K or images "
                                 f"than run {runs[0].label!r}")
        if n is not None and first.n_images != n:
            raise ValueError("the Context Error and the PQ statistics cover different numbers of images")
        n = first.n_images
    return int(n), with_pq, with_ce


def seed_study(groups: Mapping[str, Sequence[RunStats]], *, settings: BootstrapSettings = BootstrapSettings(),
               all_classes: bool = False) -> SeedStudy:
    """Means over training runs with image and two-level bootstrap intervals, and differences to the first model.

    Args:
        groups: model name -> its runs (at least one each); the first model
            is the reference of the differences. Every run evaluated on the
            same images.
        settings: resamples, level, seed (image draws use the streams of
            :mod:`~pss_bench.metrics.bootstrap`, run draws :data:`SEED_STREAM`).
        all_classes: average the CE over every class with queries, not only
            the classes informative in every run.

    Returns:
        A :class:`SeedStudy`.

    Raises:
        ValueError: no group, an empty group, or runs over different images,
            categories or K.
    """
    from scipy.stats import ttest_ind

    if not groups or any(len(runs) == 0 for runs in groups.values()):
        raise ValueError("need at least one model with at least one run")
    runs = [r for rs in groups.values() for r in rs]
    n_img, with_pq, with_ce = _check(runs)
    b = int(settings.resamples)
    points: list[dict] = [{} for _ in runs]
    boots: list[dict] = [{} for _ in runs]
    metrics: list[str] = []
    few: list[set] = [set() for _ in runs]  # per run, the PQ metrics whose row has a few-segment class
    alts: list[dict] = [{} for _ in runs]  # per run, resamples with the classes without GT drawn
    if with_pq:
        w = image_weights(n_img, b, np.random.default_rng([int(settings.seed), PQ_STREAM]))
        for i, r in enumerate(runs):
            p, bt, few[i], alts[i] = _pq_values(r.pq, w, settings.seed)
            points[i].update(p)
            boots[i].update(bt)
        metrics += list(PQ_METRICS)
    ce_ids: tuple[int, ...] = ()
    if with_ce:
        ce_ids, ce_point, ce_boot = ce_means([r.ce for r in runs], settings=settings, all_classes=all_classes)
        for i in range(len(runs)):
            for j, m in enumerate(CE_METRICS):
                points[i][m] = float(ce_point[i, j])
                boots[i][m] = ce_boot[:, i, j]
        metrics += list(CE_METRICS)

    seed_rng = np.random.default_rng([int(settings.seed), SEED_STREAM])
    summaries, img_samples, two_samples = [], [], []
    start = 0
    for name, rs in groups.items():
        idx = list(range(start, start + len(rs)))
        start += len(rs)
        draws = seed_rng.integers(0, len(rs), size=(b, len(rs)))
        values, mean, sd, low, high, images, two_level = {}, {}, {}, {}, {}, {}, {}
        img_s, two_s = {}, {}
        for m in metrics:
            v = np.array([points[i][m] for i in idx], np.float64)
            stack = np.stack([boots[i][m] for i in idx], axis=1)  # (B, S)
            img_s[m] = stack.mean(axis=1)
            # Runs drawn from their deviations around the resample's mean, widened by sqrt(S / (S - 1)):
            # the mean of S runs drawn from S has variance (S - 1) / S of the runs' s^2 / S otherwise
            # (a third too small at S = 3).
            spread = np.sqrt(len(idx) / (len(idx) - 1)) if len(idx) > 1 else 1.0
            widened = img_s[m][:, None] + spread * (stack - img_s[m][:, None])
            two_s[m] = np.take_along_axis(widened, draws, axis=1).mean(axis=1)
            values[m] = tuple(_f(x) for x in v)
            mean[m] = _f(v.mean())
            sd[m] = _f(v.std(ddof=1)) if len(v) > 1 else None
            low[m], high[m] = _f(v.min()), _f(v.max())
            images[m] = interval(v.mean(), img_s[m], settings.level, n_img)
            two_level[m] = interval(v.mean(), two_s[m], settings.level, n_img)
            if any(m in alts[i] for i in idx):  # as bootstrap_pq: the union with classes without GT drawn
                alt = np.stack([alts[i].get(m, boots[i][m]) for i in idx], axis=1)
                alt_img = alt.mean(axis=1)
                alt_two = np.take_along_axis(alt_img[:, None] + spread * (alt - alt_img[:, None]), draws,
                                             axis=1).mean(axis=1)
                images[m] = union(images[m], interval(v.mean(), alt_img, settings.level, n_img))
                two_level[m] = union(two_level[m], interval(v.mean(), alt_two, settings.level, n_img))
            if any(m in few[i] for i in idx):  # as bootstrap_pq: the interval contains the estimate
                images[m], two_level[m] = containing_estimate(images[m]), containing_estimate(two_level[m])
        summaries.append(GroupSummary(name, tuple(r.label for r in rs), values, mean, sd, low, high, images,
                                      two_level))
        img_samples.append(img_s)
        two_samples.append(two_s)

    differences = []
    ref = summaries[0]
    for g in range(1, len(summaries)):
        s = summaries[g]
        images, two_level, welch = {}, {}, {}
        for m in metrics:
            est = None if s.mean[m] is None or ref.mean[m] is None else s.mean[m] - ref.mean[m]
            images[m] = difference(est, img_samples[g][m] - img_samples[0][m], settings, n_img)
            two_level[m] = difference(est, two_samples[g][m] - two_samples[0][m], settings, n_img)
            a = np.array([x for x in ref.values[m] if x is not None])
            c = np.array([x for x in s.values[m] if x is not None])
            p = None
            if len(a) > 1 and len(c) > 1 and (a.std() > 0 or c.std() > 0):
                p = _f(ttest_ind(c, a, equal_var=False).pvalue)
            welch[m] = p
        differences.append(GroupDifference(s.name, ref.name, images, two_level, welch))
    return SeedStudy(settings, n_img, ce_ids, tuple(summaries), tuple(differences))
