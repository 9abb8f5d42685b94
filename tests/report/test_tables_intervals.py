"""Interval cells and the notes under the interval tables (pss_bench.report.tables)."""

from __future__ import annotations

import numpy as np

from pss_bench.metrics.bootstrap import BootstrapSettings, bootstrap_pq
from pss_bench.metrics.pq import PQImageStats
from pss_bench.metrics.results import Difference, Interval
from pss_bench.report.tables import _ci, pq_bootstrap_notes
from pss_bench.structures import Category


def test_a_small_nonzero_difference_is_not_printed_as_zero():
    d = Difference(-0.0044, -0.0123, 0.0035, 0.3, False)
    assert _ci(d, 1, 2, sign=True) == "-0.004 [-0.012, +0.004]"  # was "+0.00 [-0.01, +0.00]"
    assert _ci(Difference(0.0, -0.01, 0.01, 1.0, False), 1, 2, sign=True) == "+0.00 [-0.01, +0.01]"
    assert _ci(Interval(0.2831, 0.25, 0.31), 100) == "28.3 [25.0, 31.0]"


def test_pq_notes_name_few_segment_classes_and_classes_left_out_of_a_difference():
    cats = (Category(1, "road", False), Category(3, "car", True), Category(5, "bus", True),
            Category(6, "train", True))
    n = 30
    tp = np.zeros((n, 4), np.int64)
    tp[:, :2] = 1
    tp[:3, 2] = 1  # 3 buses
    zero = np.zeros_like(tp)
    fp_b = zero.copy()
    fp_b[4, 3] = 1  # model b alone predicts a train, a class without GT
    a = PQImageStats(cats, tuple(range(n)), tp * 0.8, tp, zero, zero)
    b = PQImageStats(cats, tuple(range(n)), tp * 0.7, tp, fp_b, zero)
    res = bootstrap_pq([a, b], settings=BootstrapSettings(50))
    notes = pq_bootstrap_notes(res, {c.id: c.name for c in cats}, ["a", "b"])
    assert len(notes) == 3
    assert notes[0].startswith("PQ, PQ-Th: the mean includes classes with fewer than 10 GT segments (bus 3)")
    assert "drawn from the posterior" in notes[0] and "too narrow" not in notes[0]
    assert notes[1].startswith("PQ, PQ-Th: train has false positives but no GT in these images: PQ 0")
    assert "cannot tell whether it never occurs" in notes[1] and "the interval joins both" in notes[1]
    assert notes[2].startswith("Δ of b averages the classes both models have (without train")
    assert pq_bootstrap_notes(bootstrap_pq([a], settings=BootstrapSettings(50)), {}, None)[0].startswith("PQ, PQ-Th")
    # Without the few-segment term (PQ†, PC) the interval is said to be too narrow.
    plain = bootstrap_pq([a, b], settings=BootstrapSettings(50), few_segment_term=False)
    plain_notes = pq_bootstrap_notes(plain, {c.id: c.name for c in cats}, ["a", "b"])
    assert "too narrow" in plain_notes[0]
    assert "the interval does not include one" in plain_notes[1]
