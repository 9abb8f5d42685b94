"""Run-length PQ compute (``id_runs``, ``confusion_from_runs``) against the per-pixel path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pss_bench.metrics.pq import (
    Runs,
    UnknownSegmentError,
    confusion_from_runs,
    confusion_matrix,
    dense_index,
    id_runs,
    thread_indexer,
)


def _pixel_confusion(g, gs, p, ps):
    idx = thread_indexer()
    return confusion_matrix(idx(g, gs), idx(p, ps), len(gs), len(ps))


@st.composite
def map_pairs(draw):
    h = draw(st.integers(1, 12))
    w = draw(st.integers(1, 12))
    pool = draw(st.lists(st.integers(1, 2**24 - 1), min_size=1, max_size=6, unique=True))
    g = np.array(draw(st.lists(st.sampled_from([0] + pool), min_size=h * w, max_size=h * w))).reshape(h, w)
    p = np.array(draw(st.lists(st.sampled_from([0] + pool), min_size=h * w, max_size=h * w))).reshape(h, w)
    return g, np.array(pool), p, np.array(pool[::-1])


@settings(max_examples=300, deadline=None)
@given(map_pairs())
def test_run_counts_equal_pixel_counts(case):
    g, gs, p, ps = case
    want = _pixel_confusion(g, gs, p, ps)
    gr, pr = id_runs(g, gs), id_runs(p, ps)
    assert np.array_equal(confusion_from_runs(gr, pr, len(gs), len(ps)), want)
    # starts as read from the GT cache (uint32) give the same counts
    gr32 = Runs(gr.starts.astype(np.uint32), gr.values, gr.size)
    assert np.array_equal(confusion_from_runs(gr32, pr, len(gs), len(ps)), want)
    # runs are maximal: neighbouring runs differ
    assert (np.diff(gr.values.astype(np.int64)) != 0).all()


def test_masked_words_give_the_runs_of_the_ids():
    rng = np.random.default_rng(0)
    ids = rng.choice(np.array([0, 7, 2**24 - 1, 65536]), size=(30, 40)).astype(np.uint32)
    ids[:, 10:20] = 7  # long runs
    segs = np.array([65536, 7, 2**24 - 1])
    words = ids | np.uint32(0xFF000000)  # the opaque alpha byte pyspng adds
    a, b = id_runs(ids, segs), id_runs(words, segs, id_mask=0xFFFFFF)
    assert np.array_equal(a.starts, b.starts) and np.array_equal(a.values, b.values)
    assert a.size == b.size == ids.size


def test_real_cityscapes_frames(cityscapes_train_gt):
    from pss_bench.io.panoptic import load_panoptic_json, read_id_png

    gt_json, gt_dir = cityscapes_train_gt
    gt = load_panoptic_json(gt_json, gt_dir)
    for ann in gt.annotations[:3]:
        ids = read_id_png(gt.png_path(ann))
        pred = np.roll(ids, (7, -11), axis=(0, 1))
        pred[:20] = 0
        s = ann.segments.ids
        want = _pixel_confusion(ids, s, pred, s)
        got = confusion_from_runs(id_runs(ids, s), id_runs(pred, s), len(s), len(s))
        assert np.array_equal(got, want)
        assert got.sum() == ids.size


def test_dense_index():
    segs = np.array([30, 10, 20])
    assert dense_index(np.array([0, 10, 20, 30, 0]), segs).tolist() == [0, 2, 3, 1, 0]
    assert dense_index(np.array([0, 10]), segs).dtype == np.uint8
    assert dense_index(np.array([0, 0]), np.array([], np.int64)).tolist() == [0, 0]
    with pytest.raises(UnknownSegmentError) as info:
        dense_index(np.array([10, 11, 5, 11]), segs)
    assert info.value.unknown_ids.tolist() == [5, 11]
    with pytest.raises(UnknownSegmentError):
        dense_index(np.array([3]), np.array([], np.int64))
    assert dense_index(np.array([300]), np.arange(1, 301)).dtype == np.uint16


def test_sizes_must_agree_and_empty_maps():
    r = id_runs(np.zeros((2, 3), np.int64), np.array([1]))
    with pytest.raises(ValueError, match="sizes differ"):
        confusion_from_runs(r, id_runs(np.zeros((3, 3), np.int64), np.array([1])), 1, 1)
    e = id_runs(np.zeros((0, 3), np.int64), np.array([1]))
    assert confusion_from_runs(e, e, 1, 1).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(TypeError):
        id_runs(np.zeros((2, 2), np.float32), np.array([1]))
