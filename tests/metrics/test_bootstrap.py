"""Bootstrap intervals and paired p-values (pss_bench.metrics.bootstrap) on data with a known answer.

Simulated studies of per-image PQ statistics drawn from Poisson counts with
known rates: over 1,000 studies, a 95% interval must cover the truth 93-97%
of the time; two models of the same quality must get p-values spread
uniformly, and identical models a Δ of exactly 0 with p = 1. Worlds with
rare and FP-only classes, where the class set of a mean matters, are in
``test_interval_coverage.py``; the Context Error's bootstrap in
``test_ce_resample.py``.

The 1,000 studies run vectorised (all studies of a block at once) through
the module's primitives (``resample_counts``, ``percentile_interval``,
``expanded_alpha``, ``paired_p_value``, ``pq_scores``);
``test_pq_is_the_composition_of_the_primitives`` checks that ``bootstrap_pq``
computes exactly that composition, and the ``slow`` test repeats the 1,000
studies through it, one study per call.
"""

from __future__ import annotations

import numpy as np
import pytest

from pss_bench.metrics.bootstrap import (
    BootstrapSettings,
    bootstrap_pq,
    expanded_alpha,
    expanded_p_value,
    paired_p_value,
    percentile_interval,
    pq_scores,
    resample_counts,
)
from pss_bench.metrics.pq import PQImageStats
from pss_bench.structures import Category

STUDIES = 1000
B = 1000
BLOCK = 25  # studies resampled at once (memory: BLOCK x B x images)
FAST = BootstrapSettings(resamples=1000, level=0.95, seed=0)


def _ks_uniform(ps: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of the p-values to the uniform distribution."""
    ps = np.sort(ps)
    return float(np.max(np.abs(ps - (np.arange(1, ps.size + 1) - 0.5) / ps.size)))


# --------------------------------------------------------------------------- primitives


def test_resample_counts_draw_n_of_n():
    w = resample_counts(np.random.default_rng(0), 7, 500)
    assert w.shape == (500, 7)
    assert np.all(w.sum(axis=1) == 7) and w.min() >= 0
    # Each unit is drawn once per resample on average.
    assert w.mean() == pytest.approx(1.0)
    assert resample_counts(np.random.default_rng(0), 0, 3).shape == (3, 0)


def test_percentile_interval_and_p_value_formula():
    samples = np.arange(1, 101, dtype=float)[:, None]  # 1..100
    lo, hi = percentile_interval(samples, 0.9)
    assert lo[0] == pytest.approx(np.quantile(samples, 0.05)) and hi[0] == pytest.approx(np.quantile(samples, 0.95))
    # 10 of 100 deltas <= 0: p = 2 (1 + 10) / 101.
    d = np.concatenate([-np.ones(10), np.ones(90)])[:, None]
    assert paired_p_value(d)[0] == pytest.approx(22 / 101)
    assert paired_p_value(np.zeros((50, 1)))[0] == 1.0  # all ties: no evidence
    assert paired_p_value(np.ones((999, 1)))[0] == pytest.approx(2 / 1000)  # the smallest p with B = 999
    assert np.isnan(paired_p_value(np.full((5, 1), np.nan))[0])


def test_expanded_percentile_level_and_its_p_value():
    """Hesterberg's expanded percentile: wider at small n, the plain one at large n; p inverts it."""
    from scipy.stats import norm

    for n, ratio in ((20, 1.096), (50, 1.036), (250, 1.006)):
        a = expanded_alpha(0.05, n)
        assert norm.ppf(1 - a / 2) / norm.ppf(0.975) == pytest.approx(ratio, abs=2e-3)
    assert expanded_alpha(0.05, 1) == 0.05 and expanded_alpha(0.05, 10**7) == pytest.approx(0.05, rel=1e-3)
    for n in (5, 20, 250):
        a = expanded_alpha(0.05, n)
        assert expanded_p_value(a, n) == pytest.approx(0.05, rel=1e-9)  # p < α exactly when p_raw < α'
        assert expanded_p_value(1.0, n) == 1.0 and expanded_p_value(0.2, n) > 0.2
    assert np.isnan(expanded_p_value(np.nan, 20))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="at least 1 resample"):
        BootstrapSettings(resamples=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        BootstrapSettings(level=1.0)


# --------------------------------------------------------------------------- PQ

PQ_CATS = (Category(1, "road", False), Category(2, "sky", False), Category(3, "car", True), Category(4, "person", True))
#: Per class: Poisson rates of TP, FP, FN per image, and the mean IoU of a match.
RATES = np.array([[1.0, 0.1, 0.1, 0.9], [0.9, 0.2, 0.2, 0.85], [3.0, 1.0, 1.5, 0.8], [2.0, 1.5, 2.0, 0.7]])
N_IMAGES = 150


def _pq_truth():
    tp, fp, fn, iou = RATES.T
    pq = iou * tp / (tp + fp / 2 + fn / 2)
    return {"All": pq.mean(), "Things": pq[2:].mean(), "Stuff": pq[:2].mean()}


def _draw_images(rng, n=N_IMAGES, image_ids=None) -> PQImageStats:
    tp = rng.poisson(RATES[:, 0], size=(n, 4))
    fp = rng.poisson(RATES[:, 1], size=(n, 4))
    fn = rng.poisson(RATES[:, 2], size=(n, 4))
    # Each match's IoU ~ U(2m - 1, 1) (mean m); the image's IoU sum has mean m * TP.
    lo = 2 * RATES[:, 3] - 1
    iou = tp * lo + (1 - lo) * rng.beta(np.maximum(tp, 1), np.maximum(tp, 1)) * tp
    return PQImageStats(PQ_CATS, tuple(image_ids or range(n)), iou, tp, fp, fn)


def test_pq_point_estimates_match_the_accumulator():
    imgs = _draw_images(np.random.default_rng(0))
    want = imgs.total().compute()
    res = bootstrap_pq([imgs], settings=BootstrapSettings(200))
    for row in ("All", "Things", "Stuff"):
        for s in ("pq", "sq", "rq"):
            assert res.models[0].rows[row][s].estimate == pytest.approx(getattr(want.row(row), s), rel=1e-12)
    for cid, r in want.per_class.items():
        assert res.models[0].per_class[cid].estimate == pytest.approx(r.pq, rel=1e-12)


def test_pq_scores_vectorised_rules():
    # A class with only FP counts with PQ 0; one with nothing is left out; SQ is 0 without TP.
    iou = np.array([[1.6, 0.0, 0.0]])
    tp, fp, fn = np.array([[2, 0, 0]]), np.array([[0, 3, 0]]), np.array([[1, 0, 0]])
    s = pq_scores(iou, tp, fp, fn, np.array([True, True, False]))
    assert s["class_pq"][0, 0] == pytest.approx(1.6 / 2.5) and s["class_pq"][0, 1] == 0.0
    assert np.isnan(s["class_pq"][0, 2])
    assert s["All/pq"][0] == pytest.approx(1.6 / 2.5 / 2) and np.isnan(s["Stuff/pq"][0])
    assert s["All/sq"][0] == pytest.approx(0.8 / 2)


def test_pq_scores_with_a_fixed_class_set():
    """A class of the set absent from the statistics takes its fill values instead of leaving the mean."""
    iou = np.array([[1.6, 0.0, 0.0]])
    tp, fp, fn = np.array([[2, 0, 0]]), np.array([[0, 0, 0]]), np.array([[1, 0, 0]])
    isthing = np.array([True, True, False])
    fill = {"pq": np.array([0.9, 0.0, 0.5]), "sq": np.array([0.9, 0.0, 0.8]), "rq": np.array([1.0, 0.0, 0.6])}
    s = pq_scores(iou, tp, fp, fn, isthing, keep=np.array([True, True, True]), fill=fill)
    assert s["All/pq"][0] == pytest.approx((1.6 / 2.5 + 0.0 + 0.5) / 3)
    assert s["Things/pq"][0] == pytest.approx(1.6 / 2.5 / 2)  # the FP-only class counts, with PQ 0
    assert s["Stuff/sq"][0] == pytest.approx(0.8)
    assert np.isnan(s["class_pq"][0, 1])  # the class's own PQ stays undefined in such a resample


def test_pq_class_set_is_fixed_and_rare_classes_flagged():
    """An FP-only class seen in one image stays in every resample's mean: PQ 0 in the estimate, and its
    population PQ drawn from the prior of its unseen GT (the images may have missed a rare class)."""
    cats = (Category(1, "road", False), Category(3, "car", True), Category(5, "train", True))
    n = 40
    tp = np.zeros((n, 3), np.int64)
    tp[:, 0], tp[:, 1] = 1, 2
    fp = np.zeros((n, 3), np.int64)
    fp[7, 2] = 1  # one false positive of a class without GT
    fn = np.zeros((n, 3), np.int64)
    fn[3, 1] = 1
    iou = tp * 0.8
    res = bootstrap_pq([PQImageStats(cats, tuple(range(n)), iou, tp, fp, fn)], settings=BootstrapSettings(300))
    things = res.models[0].rows["Things"]["pq"]
    # car PQ = 64 / 80.5 (0.795...), train PQ = 0 here: Things PQ = car / 2.
    assert things.estimate == pytest.approx(0.8 * 80 / 80.5 / 2)
    # The interval joins two answers a study cannot tell apart: the train never occurs (PQ 0 in every
    # resample: no resample lifts the mean by dropping it), or it is a rare class these images missed (its
    # PQ drawn, SQ 0.8 x an RQ from the prior of its unseen GT), which lifts the top.
    without = bootstrap_pq([PQImageStats(cats, tuple(range(n)), iou, tp, fp, fn)], settings=BootstrapSettings(300),
                           few_segment_term=False).models[0].rows["Things"]["pq"]
    assert without.high <= 0.8 / 2 + 1e-12  # the image bootstrap alone: PQ 0 in every resample
    assert things.low == without.low
    assert 0.8 / 2 + 0.05 < things.high < (0.8 + 0.8) / 2
    assert res.models[0].classes == {"All": 3, "Things": 2, "Stuff": 1}
    assert res.models[0].few_segments == {"All": (), "Things": (), "Stuff": ()}
    tp[:, 1] = 0
    tp[:3, 1] = 1  # cars in three images only: 3 GT segments + 1 missed
    res = bootstrap_pq([PQImageStats(cats, tuple(range(n)), tp * 0.8, tp, fp, fn)], settings=BootstrapSettings(50))
    assert res.models[0].few_segments["Things"] == (3,) and res.models[0].few_segments["Stuff"] == ()
    assert res.models[0].gt_segments == {1: 40, 3: 4, 5: 0}


def test_pq_difference_over_the_classes_both_models_have():
    cats = (Category(1, "road", False), Category(3, "car", True), Category(5, "train", True))
    n = 30
    tp = np.ones((n, 3), np.int64)
    tp[:, 2] = 0
    zero = np.zeros((n, 3), np.int64)
    fp_b = zero.copy()
    fp_b[0, 2] = 1  # b alone has a train (a false positive): left out of Δ
    a = PQImageStats(cats, tuple(range(n)), tp * 0.8, tp, zero, zero)
    b = PQImageStats(cats, tuple(range(n)), tp * 0.8, tp, fp_b, zero)
    res = bootstrap_pq([a, b], settings=BootstrapSettings(100))
    d = res.differences[1]
    assert d.left_out == (5,)
    assert (d.rows["All"]["pq"].estimate, d.rows["All"]["pq"].p_value) == (0.0, 1.0)
    assert res.models[1].rows["All"]["pq"].estimate == pytest.approx(0.8 * 2 / 3)  # its own mean keeps it


def test_pq_is_the_composition_of_the_primitives():
    a, b = _draw_images(np.random.default_rng(22)), _draw_images(np.random.default_rng(23))
    res = bootstrap_pq([a, b], settings=BootstrapSettings(B, 0.95, 5))
    w = resample_counts(np.random.default_rng([5, 0]), N_IMAGES, B)  # stream 0: images
    scores = [pq_scores(*(w @ getattr(m, f) for f in ("iou", "tp", "fp", "fn")),
                        np.array([c.isthing for c in PQ_CATS])) for m in (a, b)]
    level = 1 - expanded_alpha(0.05, N_IMAGES)
    lo, hi = percentile_interval(scores[1]["All/pq"][:, None], level)
    iv = res.models[1].rows["All"]["pq"]
    assert iv.low == pytest.approx(lo[0], rel=1e-12) and iv.high == pytest.approx(hi[0], rel=1e-12)
    delta = (scores[1]["Things/pq"] - scores[0]["Things/pq"])[:, None]
    d = res.differences[1].rows["Things"]["pq"]
    assert d.p_value == pytest.approx(expanded_p_value(paired_p_value(delta)[0], N_IMAGES))
    assert d.low == pytest.approx(percentile_interval(delta, level)[0][0], rel=1e-12)


def _images_block(rng, s: int) -> dict[str, np.ndarray]:
    studies = [_draw_images(rng) for _ in range(s)]
    return {f: np.stack([getattr(m, f) for m in studies]).astype(np.float64) for f in ("iou", "tp", "fp", "fn")}


def _resampled_pq(rng, stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``(S, B)`` scores of S independent studies, images resampled as bootstrap_pq does."""
    s = stats["tp"].shape[0]
    w = resample_counts(rng, N_IMAGES, s * B).reshape(s, B, N_IMAGES)
    sums = np.split(w @ np.concatenate([stats[f] for f in ("iou", "tp", "fp", "fn")], axis=-1), 4, axis=-1)
    isthing = np.array([c.isthing for c in PQ_CATS])
    return pq_scores(*sums, np.tile(isthing, stats["tp"].shape[-1] // isthing.size))


def test_pq_interval_covers_the_truth_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    truth = _pq_truth()
    covered = {r: 0 for r in truth}
    for _ in range(STUDIES // BLOCK):
        scores = _resampled_pq(rng, _images_block(rng, BLOCK))
        for r, t in truth.items():
            lo, hi = percentile_interval(scores[f"{r}/pq"].T, 1 - expanded_alpha(0.05, N_IMAGES))
            covered[r] += int(np.sum((lo <= t) & (t <= hi)))
    for r, c in covered.items():
        assert 0.93 <= c / STUDIES <= 0.97, (r, c / STUDIES)


def test_pq_models_of_equal_quality_get_uniform_p_values():
    rng = np.random.default_rng(12)
    ps = []
    for _ in range(STUDIES // BLOCK):
        a, b = _images_block(rng, BLOCK), _images_block(rng, BLOCK)
        both = {f: np.concatenate([a[f], b[f]], axis=-1) for f in a}  # two models side by side: same draws
        s = _resampled_pq(rng, both)["class_pq"]  # (S, B, 2C)
        n = len(PQ_CATS)
        delta = (np.nanmean(s[..., n:], axis=-1) - np.nanmean(s[..., :n], axis=-1)).T
        ps.append(expanded_p_value(paired_p_value(delta), N_IMAGES))
    ps = np.concatenate(ps)
    assert 0.03 <= np.mean(ps < 0.05) <= 0.07
    assert _ks_uniform(ps) < 0.052


@pytest.mark.slow
def test_pq_coverage_and_uniform_p_through_the_public_function():
    rng = np.random.default_rng(41)
    truth = _pq_truth()["All"]
    covered, ps = 0, []
    for s in range(STUDIES):
        res = bootstrap_pq([_draw_images(rng), _draw_images(rng)], settings=BootstrapSettings(B, 0.95, s))
        iv = res.models[0].rows["All"]["pq"]
        covered += iv.low <= truth <= iv.high
        ps.append(res.differences[1].rows["All"]["pq"].p_value)
    ps = np.array(ps)
    assert 0.93 <= covered / STUDIES <= 0.97
    assert 0.03 <= np.mean(ps < 0.05) <= 0.07
    assert _ks_uniform(ps) < 0.052


def test_pq_identical_models_and_pairing_checks():
    imgs = _draw_images(np.random.default_rng(13))
    res = bootstrap_pq([imgs, imgs], settings=FAST)
    d = res.differences[1].rows["All"]["pq"]
    assert (d.estimate, d.low, d.high, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    alone = bootstrap_pq([imgs], settings=FAST)
    assert alone.models[0] == res.models[0]
    other = _draw_images(np.random.default_rng(14), image_ids=[f"x{i}" for i in range(N_IMAGES)])
    with pytest.raises(ValueError, match="different images"):
        bootstrap_pq([imgs, other])
