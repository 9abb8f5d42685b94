"""The few-segment term of the PQ bootstrap (pss_bench.metrics.bootstrap.few_segment_draws and its use).

A class with 1-9 GT segments is drawn from the posterior of its TP / FP / FN
rates in every resample; every other class, and every row without such a
class, keeps the plain image bootstrap.
"""

from __future__ import annotations

import numpy as np
import pytest

from pss_bench.metrics.bootstrap import (
    FEW_PAIR_STREAM,
    FEW_STREAM,
    JEFFREYS,
    PQ_STREAM,
    BootstrapSettings,
    bootstrap_pq,
    containing_estimate,
    few_segment_draws,
    interval,
    few_segment_pair_draws,
    pooled_sq,
    pq_scores,
)
from pss_bench.metrics.pq import PQImageStats
from pss_bench.metrics.results import Interval
from pss_bench.structures import Category

CATS = (Category(1, "road", False), Category(2, "sky", False), Category(3, "car", True), Category(4, "bus", True),
        Category(5, "train", True))
N = 40


def _stats(seed: int, bus=((0, 1, 0),), train_fp=(7,)) -> PQImageStats:
    """Road, sky, car in every image; ``bus``: (image, tp, fn) of a class with a few segments; train: FP only."""
    rng = np.random.default_rng(seed)
    tp = np.zeros((N, 5), np.int64)
    tp[:, :3] = rng.binomial(2, 0.8, size=(N, 3))
    fn = 2 - tp
    fn[:, 3:] = 0
    fp = rng.poisson(0.2, size=(N, 5))
    fp[:, 3:] = 0
    for i, t, f in bus:
        tp[i, 3], fn[i, 3] = t, f
    for i in train_fp:
        fp[i, 4] = 1
    iou = tp * rng.uniform(0.6, 0.95, size=(N, 5))
    return PQImageStats(CATS, tuple(range(N)), iou, tp, fp, fn)


def test_draws_are_gamma_posteriors_of_the_rates_with_the_class_sq():
    rng = np.random.default_rng(0)
    d = few_segment_draws(0.86, 1.0, 0.0, 0.0, 0.7, 200_000, rng)
    assert d.shape == (200_000, 4)
    # Gamma(x + 1/2) draws: their means are the counts + 1/2.
    assert d[:, 1:].mean(axis=0) == pytest.approx([1.5, 0.5, 0.5], rel=0.02)
    s = pq_scores(d[:, [0]], d[:, [1]], d[:, [2]], d[:, [3]], np.array([True]))
    rq = d[:, 1] / (d[:, 1] + 0.5 * d[:, 2] + 0.5 * d[:, 3])
    np.testing.assert_allclose(s["All/sq"], 0.86)  # the class's own SQ
    np.testing.assert_allclose(s["All/pq"], 0.86 * rq)
    # One matched segment: RQ below 0.5 in about a fifth of the draws (the coin flip a resample cannot show).
    assert 0.17 < np.mean(rq < 0.5) < 0.22
    # One missed segment: PQ = prior SQ x RQ, RQ above 0.5 in about a quarter of the draws.
    d = few_segment_draws(0.0, 0.0, 0.0, 1.0, 0.7, 200_000, np.random.default_rng(1))
    np.testing.assert_allclose(d[:, 0], 0.7 * d[:, 1])
    rq = d[:, 1] / (d[:, 1] + 0.5 * d[:, 2] + 0.5 * d[:, 3])
    assert 0.2 < np.mean(rq > 0.5) < 0.26
    assert JEFFREYS == 0.5


def test_pooled_sq():
    assert pooled_sq(np.array([1.6, 0.9]), np.array([2, 1])) == pytest.approx(2.5 / 3)
    assert pooled_sq(np.zeros(2), np.zeros(2)) == 0.5


def test_pair_draws_share_the_outcomes_of_the_common_segments():
    # Image 0: both match; image 1: only a matches; image 2: neither; image 3: one FP each; b one more FP.
    a = (np.array([0.9, 0.8, 0.0, 0.0]), np.array([1, 1, 0, 0]), np.array([0, 0, 0, 1]), np.array([0, 0, 1, 0]))
    b = (np.array([0.7, 0.0, 0.0, 0.0]), np.array([1, 0, 0, 0]), np.array([0, 1, 0, 1]), np.array([0, 1, 1, 0]))
    d = few_segment_pair_draws(a, b, (0.6, 0.6), 100_000, np.random.default_rng(2))
    # Counts: both 1, a only 1, b only 0, neither 1; FPs shared 1, a only 0, b only 1.
    g = np.random.default_rng(2).gamma(np.array([1, 1, 0, 1, 1, 0, 1], float) + JEFFREYS, size=(100_000, 7))
    np.testing.assert_allclose(d[:, 0, 1], g[:, 0] + g[:, 1])  # a: TP = both + a only
    np.testing.assert_allclose(d[:, 1, 1], g[:, 0] + g[:, 2])  # b: TP = both + b only
    np.testing.assert_allclose(d[:, 0, 3], g[:, 2] + g[:, 3])
    np.testing.assert_allclose(d[:, 1, 3], g[:, 1] + g[:, 3])
    np.testing.assert_allclose(d[:, 0, 2], g[:, 4] + g[:, 5])
    np.testing.assert_allclose(d[:, 1, 2], g[:, 4] + g[:, 6])
    np.testing.assert_allclose(d[:, 0, 0], 0.85 * d[:, 0, 1])  # a's SQ (1.7 / 2)
    np.testing.assert_allclose(d[:, 1, 0], 0.7 * d[:, 1, 1])
    # The same counts in every image: one draw of the rates, each model its own SQ.
    a2 = (a[0] * 0.5, *a[1:])
    d = few_segment_pair_draws(a, a2, (0.6, 0.6), 1000, np.random.default_rng(3))
    np.testing.assert_array_equal(d[:, 0, 1:], d[:, 1, 1:])
    np.testing.assert_allclose(d[:, 1, 0], 0.5 * d[:, 0, 0])


def test_a_one_segment_class_widens_its_rows_only():
    st = _stats(4)
    with_term = bootstrap_pq([st], settings=BootstrapSettings(400, 0.95, 1))
    plain = bootstrap_pq([st], settings=BootstrapSettings(400, 0.95, 1), few_segment_term=False)
    m, p = with_term.models[0], plain.models[0]
    assert with_term.few_segment_term and not plain.few_segment_term
    assert m.few_segments == {"All": (4,), "Things": (4,), "Stuff": ()}
    assert m.no_gt == {"All": (5,), "Things": (5,), "Stuff": ()}
    # The Stuff row and every other class: exactly the image bootstrap.
    assert m.rows["Stuff"] == p.rows["Stuff"]
    assert all(m.per_class[c] == p.per_class[c] for c in (1, 2, 3))
    # The class with false positives and no GT: PQ 0 here, its population PQ drawn from the prior of its GT
    # rate (it may be a rare class that these images missed), so its interval reaches above 0.
    fp_only, fp_only_plain = m.per_class[5], p.per_class[5]
    assert fp_only_plain.low == fp_only_plain.high == fp_only.estimate == fp_only.low == 0
    assert fp_only.high > 0.05
    # The estimates do not change; the bus (one TP) was [PQ, PQ] in every resample that drew it.
    for r in ("All", "Things"):
        assert m.rows[r]["pq"].estimate == p.rows[r]["pq"].estimate
        assert m.rows[r]["sq"] == p.rows[r]["sq"]  # SQ keeps the image bootstrap
        assert m.rows[r]["pq"].high - m.rows[r]["pq"].low > p.rows[r]["pq"].high - p.rows[r]["pq"].low + 0.02
    bus, bus_plain = m.per_class[4], p.per_class[4]
    assert bus_plain.low == bus_plain.high == bus.estimate
    assert bus.low < 0.4 * bus.estimate and bus.high == pytest.approx(bus.estimate, abs=0.01)


def test_a_model_s_intervals_do_not_depend_on_the_other_models():
    a, b = _stats(5), _stats(6, bus=((0, 0, 1), (3, 1, 0)))
    alone = bootstrap_pq([b], settings=BootstrapSettings(300, 0.95, 2))
    paired = bootstrap_pq([a, b], settings=BootstrapSettings(300, 0.95, 2))
    assert paired.models[1] == alone.models[0]


def test_identical_models_differ_by_zero_with_few_segment_classes():
    a = _stats(7, bus=((0, 1, 0), (1, 0, 1)))
    res = bootstrap_pq([a, a], settings=BootstrapSettings(300, 0.95, 3))
    for r in ("All", "Things", "Stuff"):
        d = res.differences[1].rows[r]["pq"]
        assert (d.estimate, d.low, d.high, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert res.differences[1].per_class[4].p_value == 1.0


def test_a_difference_on_a_one_segment_class_is_not_significant():
    # a matches the bus's only segment, b misses it; everything else equal.
    a = _stats(8)
    b = _stats(8, bus=((0, 0, 1),))
    res = bootstrap_pq([a, b], settings=BootstrapSettings(500, 0.95, 4))
    plain = bootstrap_pq([a, b], settings=BootstrapSettings(500, 0.95, 4), few_segment_term=False)
    d, dp = res.differences[1], plain.differences[1]
    assert d.per_class[4].estimate == dp.per_class[4].estimate < -0.5
    # The image bootstrap draws the bus's image or not: Δ is the same whenever drawn, p ~ 0.
    assert dp.per_class[4].significant
    assert not d.per_class[4].significant and not d.rows["Things"]["pq"].significant
    assert d.rows["Stuff"] == dp.rows["Stuff"]


def test_the_streams_are_per_class():
    # The generators: [seed, PQ_STREAM, FEW_STREAM, category id] for a model, FEW_PAIR_STREAM for a Δ.
    st = _stats(9)
    res = bootstrap_pq([st], settings=BootstrapSettings(200, 0.95, 11))
    t = tuple(float(x[:, 3].sum()) for x in (st.iou, st.tp, st.fp, st.fn))
    d = few_segment_draws(*t, pooled_sq(st.iou.sum(0), st.tp.sum(0)), 200,
                          np.random.default_rng([11, PQ_STREAM, FEW_STREAM, 4]))
    s = pq_scores(d[:, [0]], d[:, [1]], d[:, [2]], d[:, [3]], np.array([True]))
    want = interval(t[0] / (t[1] + t[2] / 2 + t[3] / 2), s["class_pq"][:, 0], 0.95, N)
    assert res.models[0].per_class[4] == containing_estimate(want)
    assert containing_estimate(Interval(0.5, 0.6, 0.7)) == Interval(0.5, 0.5, 0.7)
    assert containing_estimate(Interval(0.8, 0.6, 0.7)) == Interval(0.8, 0.6, 0.8)
    assert containing_estimate(Interval(None, None, None)) == Interval(None, None, None)
    assert FEW_PAIR_STREAM != FEW_STREAM


def test_a_seed_study_of_one_run_draws_few_segment_classes_as_bootstrap_pq_does():
    from pss_bench.metrics.seeds import RunStats, seed_study

    a, b = _stats(10), _stats(11, bus=((2, 0, 1),))
    settings = BootstrapSettings(300, 0.95, 6)
    study = seed_study({"a": [RunStats("s0", a, None)], "b": [RunStats("s0", b, None)]}, settings=settings)
    pq = bootstrap_pq([a, b], settings=settings)
    for g in range(2):
        assert study.groups[g].images["pq"] == pq.models[g].rows["All"]["pq"]
        assert study.groups[g].images["pq_th"] == pq.models[g].rows["Things"]["pq"]
        assert study.groups[g].images["sq"] == pq.models[g].rows["All"]["sq"]
    # Its difference combines each run's own draws (bootstrap_pq draws both models' outcomes together).
    d, dp = study.differences[0].images["pq"], pq.differences[1].rows["All"]["pq"]
    assert d.estimate == pytest.approx(dp.estimate) and not d.significant


def test_an_interval_with_few_segment_classes_contains_its_estimate():
    # Four images, every class missed once: each posterior lies above its estimate of 0.
    cats = CATS[:4]
    z = np.zeros((4, 4), np.int64)
    fn = np.eye(4, dtype=np.int64)
    st = PQImageStats(cats, tuple(range(4)), z.astype(float), z, z, fn)
    res = bootstrap_pq([st], settings=BootstrapSettings(200, 0.95, 0))
    for r in ("All", "Things", "Stuff"):
        iv = res.models[0].rows[r]["pq"]
        assert iv.estimate == 0.0 and iv.low == 0.0 < iv.high
    assert all(iv.low == 0.0 < iv.high for iv in res.models[0].per_class.values())
    from pss_bench.metrics.seeds import RunStats, seed_study

    study = seed_study({"a": [RunStats("s0", st, None)]}, settings=BootstrapSettings(200, 0.95, 0))
    assert study.groups[0].images["pq"] == res.models[0].rows["All"]["pq"]
