"""PQ intervals on small sets, where the class set of All / Things / Stuff matters.

Two models of equal quality on the same images; per class, GT segments per
image, match probability, IoU of a match and false positives per image are
drawn from known processes, with an FP-only class (a class the models
sometimes predict and the GT never has: PQ 0 wherever it appears). The truth
of a row is the mean, over the classes the study evaluated, of each class's
ratio of expected sums. Before issue 21 the class set changed across
resamples (an FP-only class seen in a few images dropped out of the
resamples that missed them and lifted the mean) and the paired Δ compared
means over different classes: p < 0.05 in 10-11% of studies of two equal models.
A class with one segment in a few images (``RARE``) has a PQ of 0 or its IoU
whatever images a resample draws; its PQ is drawn from the posterior of its
rates instead (the few-segment term), without which its rows covered 86-88%.
bench/interval_coverage.py runs the same worlds with more studies.
"""

from __future__ import annotations

import numpy as np
import pytest

from pss_bench.metrics.bootstrap import BootstrapSettings, bootstrap_pq
from pss_bench.metrics.pq import PQImageStats
from pss_bench.structures import Category

# class: (isthing, P(image has it), mean GT segments when present, P(match), false positives per image)
SPEC = [
    (False, 1.0, 1.0, 0.92, 0.05), (False, 0.95, 1.0, 0.85, 0.1), (False, 0.9, 1.0, 0.8, 0.1),
    (False, 0.7, 1.0, 0.7, 0.15),
    (True, 0.9, 4.0, 0.75, 0.6), (True, 0.6, 2.0, 0.6, 0.4), (True, 0.3, 1.5, 0.55, 0.2),
    (True, 0.0, 0.0, 0.0, 0.02),  # FP only: in 1 - exp(-0.02 n) of the studies of n images, per model
]
RARE = (True, 0.06, 1.0, 0.5, 0.02)  # one segment in 6% of images


def _draw(spec, rng, n):
    c = len(spec)
    pres = np.stack([rng.random(n) < x[1] for x in spec], 1)
    gt = np.where(pres, 1 + rng.poisson([max(x[2] - 1, 0) for x in spec], (n, c)), 0)
    out = []
    for _ in range(2):
        tp = rng.binomial(gt, [x[3] for x in spec])
        fp = rng.poisson([x[4] for x in spec], (n, c))
        iou = np.zeros((n, c))
        for j in range(1, int(tp.max(initial=0)) + 1):
            iou += np.where(tp >= j, 0.5 + 0.5 * rng.beta(8, 3, (n, c)), 0.0)
        out.append((iou, tp, fp, gt - tp))
    return out


def _truth(spec) -> np.ndarray:
    rng = np.random.default_rng(12345)
    iou, tp, fp, fn = (a.sum(0).astype(float) for a in _draw(spec, rng, 400_000)[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tp + fp + fn > 0, iou / (tp + 0.5 * fp + 0.5 * fn), 0.0)


def _studies(spec, n, studies, b, seed):
    cats = tuple(Category(i + 1, f"c{i}", x[0]) for i, x in enumerate(spec))
    isthing = np.array([x[0] for x in spec])
    truth = _truth(spec)
    rng = np.random.default_rng(seed)
    rows = {"All": np.ones_like(isthing), "Things": isthing, "Stuff": ~isthing}
    cov = {r: 0 for r in rows}
    sig = {r: 0 for r in rows}
    flagged = {r: 0 for r in rows}
    seen = {r: [0, 0] for r in rows}  # studies whose row has every class's GT, and those covered
    for s in range(studies):
        m = _draw(spec, rng, n)
        res = bootstrap_pq([PQImageStats(cats, tuple(range(n)), *x) for x in m],
                           settings=BootstrapSettings(b, 0.95, s))
        present = (m[0][1] + m[0][2] + m[0][3]).sum(0) > 0
        has_gt = (m[0][1] + m[0][3]).sum(0) > 0
        for r, sel in rows.items():
            iv = res.models[0].rows[r]["pq"]
            hit = iv.low <= truth[present & sel].mean() <= iv.high
            cov[r] += hit
            sig[r] += bool(res.differences[1].rows[r]["pq"].significant)
            flagged[r] += bool(getattr(res.models[0], "few_segments", {}).get(r))
            if not (present & sel & ~has_gt).any():
                seen[r][0] += 1
                seen[r][1] += hit
    return ({r: v / studies for r, v in cov.items()}, {r: v / studies for r, v in sig.items()},
            {r: v / studies for r, v in flagged.items()}, {r: (c / k if k else 1.0) for r, (k, c) in seen.items()})


def test_fp_only_class_keeps_pq_intervals_and_paired_tests_honest():
    """300 studies of 50 images: coverage >= 91% and p < 0.05 for equal models in <= 7% of studies, every row.

    (Before issue 21: p < 0.05 in 9.7% (PQ) and 11.3% (PQ-Th) of these studies.)
    """
    cov, sig, *_ = _studies(SPEC, 50, 300, 400, seed=3)
    for r in cov:
        assert cov[r] >= 0.91, (r, cov)
        assert sig[r] <= 0.07, (r, sig)


@pytest.mark.slow
def test_small_sets_with_more_studies():
    """1,000 studies each at n = 20 and 50: false positives <= 7%; coverage >= 92.5% at n = 50, >= 91% at n = 20.

    At n = 20 the few-segment classes' downward bias shows: PQ-Th covers about 92% here.
    """
    for n, least in ((20, 0.91), (50, 0.925)):
        cov, sig, *_ = _studies(SPEC, n, 1000, 500, seed=n)
        for r in cov:
            assert cov[r] >= least, (n, r, cov)
            assert sig[r] <= 0.07, (n, r, sig)


def test_rows_with_a_rare_class_cover():
    """A class with one segment in 6% of images, 300 studies of 50 images, two equal models.

    Coverage >= 90% overall and >= 94% in the studies whose row has the GT of every class it averages; p < 0.05
    in <= 7% of studies, for PQ, PQ-Th, PQ-St. Without the few-segment term (the code before it, run on these
    studies): PQ 86.3% and PQ-Th 82.3% overall, 91% and 89% where every class has GT (the rare class's PQ was 0
    or its IoU in every resample that drew its image); with it 91.7%, 92.3%; 96%, 98%. What stays under 95%
    overall are the studies in which a class shows up through false positives only (PQ 0; the rare class's true
    PQ is 0.47): no study without its GT can measure it (docs/statistics.md).
    """
    cov, sig, _, seen = _studies(SPEC + [RARE], 50, 300, 400, seed=21)
    for r in cov:
        assert cov[r] >= 0.90, (r, cov)
        assert seen[r] >= 0.94, (r, seen)
        assert sig[r] <= 0.07, (r, sig)


def test_rows_with_a_rare_class_cover_on_20_images():
    """600 studies of 20 images: every row covers >= 95% overall and where its classes all have GT in the
    study, p < 0.05 in <= 7%.

    Without the few-segment term: 93.4% (PQ, PQ-Th) where all have GT, overall 87.8%, 86.8%; with it for the
    classes with GT only (48943f2) 96.3%, 97.1% and overall 90.3%, 90.3%: the misses were the studies in which
    the rare class shows up through false positives only (PQ 0, truth 0.47), which the union interval of a
    class without GT now covers.
    """
    cov, sig, _, seen = _studies(SPEC + [RARE], 20, 600, 500, seed=22)
    for r in cov:
        assert cov[r] >= 0.95, (r, cov)
        assert seen[r] >= 0.95, (r, seen)
        assert sig[r] <= 0.07, (r, sig)


def test_a_mean_resting_on_a_rare_class_is_flagged():
    """A class with one segment in 6% of images: no bootstrap of the study can see its error; the row says so."""
    spec = SPEC + [RARE]
    cats = tuple(Category(i + 1, f"c{i}", x[0]) for i, x in enumerate(spec))
    rng = np.random.default_rng(5)
    seen = 0
    for s in range(40):
        m = _draw(spec, rng, 20)[0]
        res = bootstrap_pq([PQImageStats(cats, tuple(range(20)), *m)], settings=BootstrapSettings(50, 0.95, s))
        few = res.models[0].few_segments
        gt = (m[1] + m[3]).sum(0)
        want = tuple(c.id for c, g in zip(cats, gt) if 0 < g < 10)
        assert few["All"] == want
        assert few["Things"] == tuple(c for c in want if cats[c - 1].isthing)
        seen += len(cats) in few["Things"]
    assert seen >= 20  # the rare class (the last) was in most studies, and flagged each time
