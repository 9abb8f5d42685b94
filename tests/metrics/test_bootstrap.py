"""Bootstrap intervals and paired p-values (pss_bench.metrics.bootstrap) on data with a known answer.

Simulated studies: per-query Context Errors drawn from skewed (gamma)
distributions with known class means, and per-image PQ statistics drawn from
Poisson counts with known rates. Over 1,000 studies, a 95% interval must
cover the truth 93-97% of the time; two models of the same quality must get
p-values spread uniformly, and identical models a Δ of exactly 0 with p = 1.

The 1,000 studies run vectorised (all studies of a block at once) through
the module's primitives (``resample_counts``, ``percentile_interval``,
``paired_p_value``, ``pq_scores``); ``test_*_is_the_composition_of_the_primitives``
check that ``bootstrap_context_error`` and ``bootstrap_pq`` compute exactly
that composition, and the ``slow`` tests repeat the 1,000 studies through
those two functions, one study per call.
"""

from __future__ import annotations

import numpy as np
import pytest

from pss_bench.metrics.bootstrap import (
    BootstrapSettings,
    bootstrap_context_error,
    bootstrap_pq,
    paired_p_value,
    percentile_interval,
    pq_scores,
    resample_counts,
)
from pss_bench.metrics.context_error import QueryScores
from pss_bench.metrics.pq import PQImageStats
from pss_bench.structures import Category

K = 20
CATS = (Category(24, "person", True), Category(25, "rider", True), Category(26, "car", True))
#: Per class: queries, gamma shape, true mean CE.
CLASSES = ((100, 2.0, 1.6), (80, 3.0, 1.2), (150, 4.0, 0.9))
TRUE_MEAN = float(np.mean([m for _, _, m in CLASSES]))
STUDIES = 1000
B = 1000
BLOCK = 25  # studies resampled at once (memory: BLOCK x B x queries)
FAST = BootstrapSettings(resamples=1000, level=0.95, seed=0)


def _ks_uniform(ps: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of the p-values to the uniform distribution."""
    ps = np.sort(ps)
    return float(np.max(np.abs(ps - (np.arange(1, ps.size + 1) - 0.5) / ps.size)))


def _class_stratified_means(rng, x: np.ndarray) -> np.ndarray:
    """``(S, B, ...)`` resampled mean over classes of the per-class means, for S independent studies.

    ``x``: ``(S, n, ...)`` per-query values of S studies (queries in class order, SIZES).
    Each study and each class gets its own draws, as :func:`bootstrap_context_error` makes them.
    """
    s, trailing = x.shape[0], x.shape[2:]
    x = x.reshape(s, x.shape[1], -1)
    out = 0.0
    start = 0
    for n in SIZES:
        w = resample_counts(rng, n, s * B).reshape(s, B, n)
        out = out + (w @ x[:, start : start + n]) / n  # (S, B, q)
        start += n
    return (out / len(SIZES)).reshape(s, B, *trailing)


def _table(ce: np.ndarray, sizes, *, others=None, precision=None, keys=None) -> QueryScores:
    cls = np.repeat(np.arange(len(sizes)), sizes)
    n = cls.size
    if keys is None:
        keys = np.stack([np.arange(n) // 7, np.arange(n)], axis=1)
    return QueryScores(
        categories=CATS, k=K, class_index=cls, keys=keys, ce=ce, random=ce + 0.5, oracle=ce - 0.3,
        precision=np.full(n, np.nan) if precision is None else precision,
        others=np.array([s - 1 + 50 for s in sizes] if others is None else others, np.int64),
    )


def _draw_ce(rng) -> np.ndarray:
    return np.concatenate([rng.gamma(shape, mean / shape, size=n) for n, shape, mean in CLASSES])


SIZES = [n for n, _, _ in CLASSES]


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


def test_settings_are_checked():
    with pytest.raises(ValueError, match="at least 1 resample"):
        BootstrapSettings(resamples=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        BootstrapSettings(level=1.0)


# --------------------------------------------------------------------------- Context Error


def test_point_estimates_are_the_plain_means():
    rng = np.random.default_rng(1)
    ce = _draw_ce(rng)
    prec = np.where(rng.random(ce.size) < 0.3, np.nan, rng.random(ce.size))
    res = bootstrap_context_error([_table(ce, SIZES, precision=prec)], settings=BootstrapSettings(200))
    m = res.models[0]
    starts = np.cumsum([0, *SIZES])
    class_means = [ce[a:b].mean() for a, b in zip(starts[:-1], starts[1:])]
    for cat, want in zip(CATS, class_means):
        assert m.per_class[cat.id]["ce"].estimate == pytest.approx(want)
        assert m.per_class[cat.id]["ce"].low < want < m.per_class[cat.id]["ce"].high
    assert m.mean["ce"].estimate == pytest.approx(np.mean(class_means))
    assert m.mean["random"].estimate == pytest.approx(np.mean(class_means) + 0.5)
    assert m.mean["score"].estimate == pytest.approx(0.5 / 0.8)
    prec_means = [np.nanmean(prec[a:b]) for a, b in zip(starts[:-1], starts[1:])]
    assert m.mean["precision"].estimate == pytest.approx(np.mean(prec_means))
    assert m.classes == (24, 25, 26)


def test_ce_is_the_composition_of_the_primitives():
    """One model, every class informative: per-class resampled means, their mean, percentiles."""
    ce = _draw_ce(np.random.default_rng(21))
    res = bootstrap_context_error([_table(ce, SIZES)], settings=BootstrapSettings(B, 0.9, 17))
    start, means = 0, 0.0
    for c, n in enumerate(SIZES):
        w = resample_counts(np.random.default_rng([17, 1, c]), n, B)  # the generator of stream 1, class c
        means = means + w @ ce[start : start + n] / n
        start += n
    lo, hi = percentile_interval((means / len(SIZES))[:, None], 0.9)
    iv = res.models[0].mean["ce"]
    assert iv.low == pytest.approx(lo[0], rel=1e-12) and iv.high == pytest.approx(hi[0], rel=1e-12)


def test_ce_interval_covers_the_truth_95_percent_of_the_time():
    """1,000 simulated studies, each bootstrapped with 1,000 resamples: coverage 93-97%."""
    rng = np.random.default_rng(2024)
    covered = 0
    for _ in range(STUDIES // BLOCK):
        x = np.stack([_draw_ce(rng) for _ in range(BLOCK)])
        lo, hi = percentile_interval(_class_stratified_means(rng, x).T, 0.95)
        covered += int(np.sum((lo <= TRUE_MEAN) & (TRUE_MEAN <= hi)))
    assert 0.93 <= covered / STUDIES <= 0.97, covered / STUDIES


def _equal_quality_pair(rng):
    base = _draw_ce(rng)  # the query's difficulty, shared by both models (paired)
    return base + rng.normal(0, 0.3, base.size), base + rng.normal(0, 0.3, base.size)


def test_models_of_equal_quality_get_uniform_p_values():
    """Paired models with the same expected CE: Δ's interval covers 0 95% of the time, p is uniform."""
    rng = np.random.default_rng(7)
    ps, covers = [], 0
    for _ in range(STUDIES // BLOCK):
        pairs = np.stack([np.stack(_equal_quality_pair(rng), axis=-1) for _ in range(BLOCK)])  # (S, n, 2)
        m = _class_stratified_means(rng, pairs)  # (S, B, 2): the same draws for both models
        delta = (m[..., 1] - m[..., 0]).T  # (B, S)
        lo, hi = percentile_interval(delta, 0.95)
        covers += int(np.sum((lo <= 0) & (0 <= hi)))
        ps.append(paired_p_value(delta))
    ps = np.concatenate(ps)
    assert 0.93 <= covers / STUDIES <= 0.97
    assert 0.03 <= np.mean(ps < 0.05) <= 0.07
    assert _ks_uniform(ps) < 0.052  # the 1% critical value for n = 1000


@pytest.mark.slow
def test_ce_coverage_and_uniform_p_through_the_public_function():
    """The two properties above, one bootstrap_context_error call per study (1,000 studies)."""
    rng = np.random.default_rng(31)
    covered, ps = 0, []
    for s in range(STUDIES):
        a, b = _equal_quality_pair(rng)
        res = bootstrap_context_error([_table(a, SIZES), _table(b, SIZES)], settings=BootstrapSettings(B, 0.95, s))
        # Model a's CE is the query difficulty plus zero-mean noise: its expected mean CE is TRUE_MEAN.
        iv = res.models[0].mean["ce"]
        covered += iv.low <= TRUE_MEAN <= iv.high
        assert res.differences[1].paired and res.differences[1].classes == (24, 25, 26)
        ps.append(res.differences[1].ce.p_value)
    ps = np.array(ps)
    assert 0.93 <= covered / STUDIES <= 0.97
    assert 0.03 <= np.mean(ps < 0.05) <= 0.07
    assert _ks_uniform(ps) < 0.052


def test_a_real_difference_is_found():
    rng = np.random.default_rng(3)
    base = _draw_ce(rng)
    res = bootstrap_context_error([_table(base, SIZES), _table(base * 0.9, SIZES)], settings=FAST)
    d = res.differences[1]
    assert d.ce.estimate < 0 and d.ce.high < 0 and d.ce.significant and d.ce.p_value == pytest.approx(2 / 1001)
    assert d.relative.estimate == pytest.approx(-0.1)
    assert d.relative.high < 0


def test_identical_models_have_zero_difference_and_p_one():
    ce = _draw_ce(np.random.default_rng(4))
    res = bootstrap_context_error([_table(ce, SIZES), _table(ce.copy(), SIZES)], settings=FAST)
    d = res.differences[1]
    assert (d.ce.estimate, d.ce.low, d.ce.high, d.ce.p_value, d.ce.significant) == (0.0, 0.0, 0.0, 1.0, False)
    assert all(x.p_value == 1.0 for x in d.per_class.values())
    assert res.models[0].to_dict() == res.models[1].to_dict()


def test_seeded_and_independent_of_the_other_models():
    rng = np.random.default_rng(5)
    a, b = _table(_draw_ce(rng), SIZES), _table(_draw_ce(rng), SIZES)
    alone = bootstrap_context_error([a], settings=FAST).models[0]
    together = bootstrap_context_error([a, b], settings=FAST).models[0]
    assert alone == together
    other_seed = bootstrap_context_error([a], settings=BootstrapSettings(1000, 0.95, 1)).models[0]
    assert other_seed.mean["ce"].low != alone.mean["ce"].low
    assert other_seed.mean["ce"].estimate == alone.mean["ce"].estimate


def test_uninformative_classes_are_left_out_of_the_mean():
    rng = np.random.default_rng(6)
    ce = _draw_ce(rng)
    others = [59, 15, 119]  # rider: K = 20 covers its 15 others
    res = bootstrap_context_error([_table(ce, SIZES, others=others)], settings=FAST)
    starts = np.cumsum([0, *SIZES])
    means = [ce[a:b].mean() for a, b in zip(starts[:-1], starts[1:])]
    assert res.models[0].classes == (24, 26)
    assert res.models[0].mean["ce"].estimate == pytest.approx((means[0] + means[2]) / 2)
    assert 25 in res.models[0].per_class  # still has its own interval
    every = bootstrap_context_error([_table(ce, SIZES, others=others)], settings=FAST, all_classes=True)
    assert every.models[0].classes == (24, 25, 26)
    assert every.models[0].mean["ce"].estimate == pytest.approx(np.mean(means))


def test_difference_over_the_classes_both_models_have():
    """A model without cars: Δ compares person and rider only, and says so in ``classes``."""
    rng = np.random.default_rng(8)
    ce_a = _draw_ce(rng)
    a = _table(ce_a, SIZES)
    n_b = SIZES[0] + SIZES[1]
    b = QueryScores(CATS, K, a.class_index[:n_b], a.keys[:n_b], ce_a[:n_b] + 0.1, ce_a[:n_b] + 0.6,
                    ce_a[:n_b] - 0.2, np.full(n_b, np.nan), np.array([109, 89, 0]))
    res = bootstrap_context_error([a, b], settings=FAST)
    d = res.differences[1]
    assert d.classes == (24, 25)
    assert d.ce.estimate == pytest.approx(0.1)
    assert d.ce.low == pytest.approx(0.1) and d.ce.high == pytest.approx(0.1)  # a constant shift, paired
    assert set(d.per_class) == {24, 25}
    starts = np.cumsum([0, *SIZES])
    ref_common = np.mean([ce_a[s:e].mean() for s, e in zip(starts[:2], starts[1:3])])
    assert d.relative.estimate == pytest.approx(0.1 / ref_common)
    assert res.models[1].classes == (24, 25)


def test_partly_different_queries_are_resampled_from_their_union():
    rng = np.random.default_rng(9)
    ce = _draw_ce(rng)
    a = _table(ce, SIZES)
    keep = np.ones(ce.size, bool)
    keep[::10] = False  # b lacks every tenth query
    b = QueryScores(CATS, K, a.class_index[keep], a.keys[keep], ce[keep], ce[keep] + 0.5, ce[keep] - 0.3,
                    np.full(keep.sum(), np.nan), a.others)
    res = bootstrap_context_error([a, b], settings=FAST)
    d = res.differences[1]
    assert not d.paired
    starts = np.cumsum([0, *SIZES])
    want = np.mean([ce[s:e][keep[s:e]].mean() for s, e in zip(starts[:-1], starts[1:])]) - \
        np.mean([ce[s:e].mean() for s, e in zip(starts[:-1], starts[1:])])
    assert d.ce.estimate == pytest.approx(want)
    assert d.ce.low <= d.ce.estimate <= d.ce.high


def test_tables_must_agree():
    a = _table(_draw_ce(np.random.default_rng(0)), SIZES)
    b = QueryScores(CATS[:2], K, a.class_index, a.keys, a.ce, a.random, a.oracle, a.precision, a.others[:2])
    with pytest.raises(ValueError, match="different categories or K"):
        bootstrap_context_error([a, b])


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


def test_pq_is_the_composition_of_the_primitives():
    a, b = _draw_images(np.random.default_rng(22)), _draw_images(np.random.default_rng(23))
    res = bootstrap_pq([a, b], settings=BootstrapSettings(B, 0.95, 5))
    w = resample_counts(np.random.default_rng([5, 0]), N_IMAGES, B)  # stream 0: images
    scores = [pq_scores(*(w @ getattr(m, f) for f in ("iou", "tp", "fp", "fn")),
                        np.array([c.isthing for c in PQ_CATS])) for m in (a, b)]
    lo, hi = percentile_interval(scores[1]["All/pq"][:, None], 0.95)
    iv = res.models[1].rows["All"]["pq"]
    assert iv.low == pytest.approx(lo[0], rel=1e-12) and iv.high == pytest.approx(hi[0], rel=1e-12)
    delta = (scores[1]["Things/pq"] - scores[0]["Things/pq"])[:, None]
    d = res.differences[1].rows["Things"]["pq"]
    assert d.p_value == pytest.approx(paired_p_value(delta)[0])
    assert d.low == pytest.approx(percentile_interval(delta, 0.95)[0][0], rel=1e-12)


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
            lo, hi = percentile_interval(scores[f"{r}/pq"].T, 0.95)
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
        ps.append(paired_p_value(delta))
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
