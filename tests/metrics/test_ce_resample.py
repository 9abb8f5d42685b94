"""The Context Error bootstrap: each resample of images is a new study with its own gallery.

``resample_class`` must give exactly what scoring the resampled set again
gives (brute force below: every copy of every drawn instance as a query,
retrieval among the copies by cosine similarity, the copies of the query's
own image left out), with the ranked lists built once and re-weighted,
including when a list is too short and the full list is computed on demand.
"""

from __future__ import annotations

import numpy as np
import pytest

from pss_bench.metrics.bootstrap import BootstrapSettings, bootstrap_context_error, expanded_alpha, percentile_interval
from pss_bench.metrics.ce_resample import build_ce_index, build_class_index, fixed_index, resample_class
from pss_bench.metrics.context_error import PairTerms, pair_context_error, score_category
from pss_bench.metrics.retrieval import search
from pss_bench.structures import Category

CATS = (Category(24, "person", True), Category(26, "car", True))
N_LABELS, C, D = 4, 6, 8
_BASE = np.random.default_rng(123).dirichlet(np.ones(C) * 0.5, size=(N_LABELS, 8))


def draw_images(rng, n):
    """``n`` images of 1 + Poisson(3) instances: class, image, hidden label, ``(8, C)`` context.

    An instance's context mixes its label's profile, its image's own look
    (shared by the image's instances: they are not independent) and noise.
    """
    m = 1 + rng.poisson(3.0, n)
    img = np.repeat(np.arange(n), m)
    scene = rng.integers(0, N_LABELS, n)[img]
    lab = np.where(rng.random(img.size) < 0.6, scene, rng.integers(0, N_LABELS, img.size))
    cls = (rng.random(img.size) < 0.35).astype(np.int64)
    shared = rng.dirichlet(np.ones(C), size=(n, 8))[img]
    own = rng.dirichlet(np.ones(C), size=(img.size, 8))
    dist = 0.6 * _BASE[lab] + 0.25 * shared + 0.15 * own
    dist = np.where(dist < 0.08, 0.0, dist)
    return cls, img, lab, dist / dist.sum(-1, keepdims=True)


def embed(rng, lab, noise=0.9):
    """An embedding that knows the hidden label, up to noise (two calls: two equally good models)."""
    e = np.eye(N_LABELS, D)[lab] + rng.normal(0, noise, (lab.size, D))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def index(k, n, cls, img, lab, dist, emb, depth=None):
    return build_ce_index(CATS, k, n, cls, img, np.arange(img.size), emb, dist,
                          labels=np.array([str(x) for x in lab], dtype=object), depth=depth)


def brute_force(w_img, img, dist, emb, lab, k):
    """Class means of CE, random, oracle, precision of the resampled set, scored from scratch."""
    w = w_img[img].astype(int)
    idx = np.repeat(np.arange(img.size), w)
    copy = np.concatenate([np.arange(x) for x in w])
    vals = []
    for a in range(idx.size):
        i = idx[a]
        gal = np.array([b for b in range(idx.size)
                        if b != a and not (img[idx[b]] == img[i] and copy[b] != copy[a])])
        if gal.size == 0:
            continue
        order = gal[np.argsort(-(emb[idx[gal]] @ emb[i]), kind="stable")]
        ke = min(k, gal.size)
        pce = pair_context_error(dist[i][None], dist[idx[order]])
        vals.append((pce[:ke].mean(), pce.mean(), np.sort(pce)[:ke].mean(), (lab[idx[order[:ke]]] == lab[i]).mean()))
    return np.mean(vals, axis=0)


@pytest.mark.parametrize("depth", [None, 6])
def test_a_resample_is_scored_as_a_new_study(depth):
    rng = np.random.default_rng(0)
    n, k = 30, 4
    cls, img, lab, dist = draw_images(rng, n)
    emb = embed(rng, lab)
    rows = np.flatnonzero(cls == 0)
    ci = build_class_index(0, img[rows], np.stack([img[rows], rows], 1), emb[rows], dist[rows], k,
                           labels=np.array([str(x) for x in lab[rows]], dtype=object), depth=depth)
    assert ci.complete is (depth is None and rows.size - 1 <= max(4 * k, k + 40))
    for seed in range(3):
        w_img = np.random.default_rng(seed).multinomial(n, np.ones(n) / n).astype(float)
        got = resample_class(ci, w_img[img[rows]][None], k)[0]
        want = brute_force(w_img, img[rows], dist[rows], emb[rows], lab[rows], k)
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_all_ones_is_the_evaluation():
    """The point estimate: the evaluator's own retrieval and scores (score_category)."""
    rng = np.random.default_rng(1)
    cls, img, lab, dist = draw_images(rng, 40)
    emb = embed(rng, lab)
    labels = np.array([str(x) for x in lab], dtype=object)
    idx = index(5, 40, cls, img, lab, dist, emb)
    for c, ci in idx.classes.items():
        rows = np.flatnonzero(cls == c)
        t = PairTerms.from_distributions(dist[rows])
        nb = search(emb[rows], emb[rows], 5, np.arange(rows.size))
        sc = score_category(t, t, nb, np.arange(rows.size), 5, query_labels=labels[rows], gallery_labels=labels[rows])
        got = resample_class(ci, np.ones((1, rows.size)), 5)[0]
        np.testing.assert_allclose(got, [sc.ce.mean(), sc.random.mean(), sc.oracle.mean(), sc.precision.mean()],
                                   rtol=1e-12)


def test_point_estimates_identical_models_and_seeds():
    rng = np.random.default_rng(2)
    cls, img, lab, dist = draw_images(rng, 40)
    a = index(5, 40, cls, img, lab, dist, embed(rng, lab))
    b = index(5, 40, cls, img, lab, dist, embed(rng, lab))
    s = BootstrapSettings(300, 0.95, 0)
    res = bootstrap_context_error([a, a], settings=s)
    d = res.differences[1]
    assert (d.ce.estimate, d.ce.low, d.ce.high, d.ce.p_value, d.ce.significant) == (0.0, 0.0, 0.0, 1.0, False)
    assert d.paired
    means = [resample_class(ci, np.ones((1, len(ci))), 5)[0, 0] for ci in a.classes.values()]
    assert res.models[0].mean["ce"].estimate == pytest.approx(np.mean(means), rel=1e-12)
    alone = bootstrap_context_error([a], settings=s).models[0]
    assert bootstrap_context_error([a, b], settings=s).models[0] == alone  # independent of the other models
    other = bootstrap_context_error([a], settings=BootstrapSettings(300, 0.95, 1)).models[0]
    assert other.mean["ce"].estimate == alone.mean["ce"].estimate and other.mean["ce"].low != alone.mean["ce"].low


def test_uninformative_classes_and_classes_both_have():
    rng = np.random.default_rng(3)
    cls, img, lab, dist = draw_images(rng, 12)
    k = int(np.bincount(cls).min())  # the smaller class: K covers all its others
    a = index(k, 12, cls, img, lab, dist, embed(rng, lab))
    res = bootstrap_context_error([a], settings=BootstrapSettings(50))
    small = int(np.argmin(np.bincount(cls)))
    assert res.models[0].classes == (CATS[1 - small].id,)
    assert set(res.models[0].per_class) == {24, 26}
    every = bootstrap_context_error([a], settings=BootstrapSettings(50), all_classes=True)
    assert every.models[0].classes == (24, 26)
    # A model that embeds one class only: Δ over the class both have.
    keep = cls == 1 - small
    b = build_ce_index(CATS, k, 12, np.where(keep, cls, -1), img, np.arange(img.size), embed(rng, lab), dist)
    d = bootstrap_context_error([a, b], settings=BootstrapSettings(50)).differences[1]
    assert d.classes == (CATS[1 - small].id,) and set(d.per_class) == {CATS[1 - small].id}


def test_indexes_must_agree():
    rng = np.random.default_rng(4)
    cls, img, lab, dist = draw_images(rng, 10)
    a = index(5, 10, cls, img, lab, dist, embed(rng, lab))
    b = index(6, 10, cls, img, lab, dist, embed(rng, lab))
    with pytest.raises(ValueError, match="different categories, K or images"):
        bootstrap_context_error([a, b])


def test_a_fixed_gallery_resamples_query_images_as_clusters():
    """``--gallery``: per-query values stay; a resample weights each query by its image's draws."""
    rng = np.random.default_rng(5)
    n_img, n = 20, 90
    keys = np.stack([rng.integers(0, n_img, n), np.arange(n)], 1)
    vals = np.stack([rng.gamma(2, 1, n), np.full(n, 3.0), np.full(n, 0.5), np.full(n, np.nan)], 1)
    idx = fixed_index(CATS, 5, n_img, np.zeros(n, np.int64), keys, vals, np.array([n + 10, 0]))
    s = BootstrapSettings(400, 0.9, 7)
    res = bootstrap_context_error([idx], settings=s)
    from pss_bench.metrics.bootstrap import resample_counts

    w = resample_counts(np.random.default_rng([7, 1]), n_img, 400)[:, keys[:, 0]]
    boot = (w @ vals[:, 0]) / w.sum(1)
    lo, hi = percentile_interval(boot[:, None], 1 - expanded_alpha(0.1, n_img))
    iv = res.models[0].mean["ce"]
    assert iv.estimate == pytest.approx(vals[:, 0].mean())
    assert iv.low == pytest.approx(lo[0], rel=1e-9) and iv.high == pytest.approx(hi[0], rel=1e-9)


def test_a_better_embedding_is_found():
    rng = np.random.default_rng(6)
    cls, img, lab, dist = draw_images(rng, 80)
    a = index(5, 80, cls, img, lab, dist, embed(rng, lab, noise=1.5))
    b = index(5, 80, cls, img, lab, dist, embed(rng, lab, noise=0.2))
    d = bootstrap_context_error([a, b], settings=BootstrapSettings(400)).differences[1]
    assert d.ce.estimate < 0 and d.ce.high < 0 and d.ce.significant
    assert d.precision.estimate > 0 and d.precision.significant


# --------------------------------------------------------------------------- coverage, each study its own gallery


def _coverage(n, k, studies, extra, b, seed):
    """Coverage of the mean CE's interval and the rate of p < 0.05 between two equally good embeddings.

    The truth of a study (the estimand of docs/statistics.md) is the mean, over the classes of its mean, of
    each class's expected CE in a study of n images: that class's CE averaged over the studies, and ``extra``
    more, whose mean has it.
    """
    rng = np.random.default_rng(seed)
    class_ce, ivs, sig = [], [], 0
    for s in range(studies + extra):
        cls, img, lab, dist = draw_images(rng, n)
        a = index(k, n, cls, img, lab, dist, embed(rng, lab))
        if s >= studies:
            m = bootstrap_context_error([a], settings=BootstrapSettings(1, 0.95, s)).models[0]
        else:
            bb = index(k, n, cls, img, lab, dist, embed(rng, lab))
            res = bootstrap_context_error([a, bb], settings=BootstrapSettings(b, 0.95, s))
            m = res.models[0]
            ivs.append((m.mean["ce"].low, m.mean["ce"].high))
            sig += bool(res.differences[1].ce.significant)
        class_ce.append({c: m.per_class[c]["ce"].estimate for c in m.classes})
    expect = {c: np.mean([d[c] for d in class_ce if c in d]) for d0 in class_ce for c in d0}
    truth = np.array([np.mean([expect[c] for c in d]) for d in class_ce[:studies]])
    ivs = np.array(ivs)
    return float(np.mean((ivs[:, 0] <= truth) & (truth <= ivs[:, 1]))), sig / studies


def test_ce_interval_and_paired_test_hold_with_each_study_its_own_gallery():
    """80 studies of 40 images, K = 5: coverage >= 92%, p < 0.05 for equal models in <= 12%.

    (Measured 98.8%, 0%. The per-query bootstrap of before issue 21, which held each query's retrievals fixed,
    covered 84% of these studies, against a truth that did not yet condition on the class set, and said
    p < 0.05 in 25%.)
    """
    cov, fpr = _coverage(n=40, k=5, studies=80, extra=120, b=200, seed=11)
    assert cov >= 0.92, cov
    assert fpr <= 0.12, fpr


@pytest.mark.slow
def test_ce_coverage_and_false_positives_with_more_studies():
    """250 studies of 60 images, K = 10: coverage >= 92%, false positives <= 8% (about a minute).

    (Before issue 21: coverage 77%, false positives 25%.)
    """
    cov, fpr = _coverage(n=60, k=10, studies=250, extra=250, b=300, seed=12)
    assert cov >= 0.92, cov
    assert fpr <= 0.08, fpr
