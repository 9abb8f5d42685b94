"""Randomised and constructed label maps against the cityscapesscripts oracle, and accumulator properties."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pq_oracle import assert_same_as_oracle, oracle_pq, write_dataset
from pss_bench.evaluation.pq import evaluate_pq
from pss_bench.metrics.pq import PanopticQuality, PQStats
from pss_bench.structures import Category

CATS = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 2, "name": "car", "isthing": 1},
    {"id": 3, "name": "bike", "isthing": 1},
    {"id": 10, "name": "road", "isthing": 0},
    {"id": 11, "name": "sky", "isthing": 0},
]
CATEGORIES = [Category(c["id"], c["name"], bool(c["isthing"])) for c in CATS]


def _random_map(rng, h, w, n_segments, id_pool, block):
    """A blocky random map over ``n_segments`` ids drawn from ``id_pool`` (0 allowed = VOID)."""
    ids = rng.choice(id_pool, size=n_segments, replace=False)
    coarse = rng.integers(0, n_segments, size=(-(-h // block), -(-w // block)))
    full = np.kron(coarse, np.ones((block, block), dtype=np.int64))[:h, :w]
    return ids[full]


def random_case(seed: int, h: int, w: int, max_id: int):
    """One random GT/prediction pair with crowd, VOID, shared and distinct ids."""
    rng = np.random.default_rng(seed)
    pool = np.unique(np.concatenate([[0], rng.integers(1, max_id + 1, size=40)]))
    gt = _random_map(rng, h, w, min(len(pool), int(rng.integers(2, 8))), pool, int(rng.integers(1, 4)))
    gt_ids = [int(s) for s in np.unique(gt) if s != 0]
    gt_segs = []
    for s in gt_ids:
        c = CATS[int(rng.integers(len(CATS)))]
        crowd = int(c["isthing"] and rng.random() < 0.25)
        gt_segs.append({"id": s, "category_id": c["id"], "iscrowd": crowd})
    if rng.random() < 0.5:
        # prediction = GT perturbed: some pixels re-drawn, so IoUs spread around 0.5
        pred = gt.copy()
        noise = rng.random(gt.shape) < rng.uniform(0.05, 0.6)
        pred[noise] = rng.choice(pool, size=int(noise.sum()))
    else:
        pred = _random_map(rng, h, w, min(len(pool), int(rng.integers(1, 8))), pool, int(rng.integers(1, 4)))
    pred_segs = []
    gt_cat = {s["id"]: s["category_id"] for s in gt_segs}
    for s in np.unique(pred):
        s = int(s)
        if s == 0:
            continue
        cid = gt_cat.get(s) if (s in gt_cat and rng.random() < 0.8) else CATS[int(rng.integers(len(CATS)))]["id"]
        pred_segs.append({"id": s, "category_id": cid})
    return gt, gt_segs, pred, pred_segs


def _check_against_oracle(images_gt, images_pred):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gt_json, gt_dir = write_dataset(tmp, "gt", images_gt, CATS, with_area=True)
        pred_json, pred_dir = write_dataset(tmp, "pred", images_pred, None, with_area=False)
        oracle = oracle_pq(gt_json, gt_dir, pred_json, pred_dir)
        files = evaluate_pq(pred_json, gt_json, use_cache=False, workers=2).to_dict()
    assert_same_as_oracle(files, oracle)
    metric = PanopticQuality(CATEGORIES)
    for (_, g, gs), (_, p, ps) in zip(images_gt, images_pred):
        metric.update(torch.from_numpy(g), gs, p, ps)
    assert_same_as_oracle(metric.compute().to_dict(), oracle)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seeds=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3),
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    max_id=st.sampled_from([5, 300, 2**24 - 1]),
)
def test_random_maps_match_oracle(seeds, h, w, max_id):
    images_gt, images_pred = [], []
    for k, seed in enumerate(seeds):
        gt, gs, pred, ps = random_case(seed, h, w, max_id)
        images_gt.append((f"im{k}", gt, gs))
        images_pred.append((f"im{k}", pred, ps))
    _check_against_oracle(images_gt, images_pred)


def _one(gt, gs, pred, ps):
    _check_against_oracle([("x", np.asarray(gt), gs)], [("x", np.asarray(pred), ps)])
    metric = PanopticQuality(CATEGORIES)
    metric.update(np.asarray(gt), gs, np.asarray(pred), ps)
    return metric.stats


def test_iou_exactly_half_is_not_a_match():
    gt = np.array([[5, 5, 5, 5, 9, 9, 9, 9]])
    pred = np.array([[5, 5, 7, 7, 7, 7, 9, 9]])  # GT 5 vs pred 5: I=2, U=4
    s = _one(gt, [{"id": 5, "category_id": 10}, {"id": 9, "category_id": 11}],
             pred, [{"id": 5, "category_id": 10}, {"id": 7, "category_id": 10}, {"id": 9, "category_id": 11}])
    k = [c.id for c in CATEGORIES].index(10)
    assert s.tp[k] == 0 and s.fn[k] == 1


def test_prediction_exactly_half_on_void_is_a_false_positive_more_is_ignored():
    gt = np.array([[0, 0, 9, 9, 9, 9, 9, 9]])
    half = np.array([[4, 4, 4, 4, 9, 9, 9, 9]])  # 2 of 4 pixels on VOID: counted
    s = _one(gt, [{"id": 9, "category_id": 11}], half, [{"id": 4, "category_id": 1}, {"id": 9, "category_id": 11}])
    assert s.fp[0] == 1
    more = np.array([[4, 4, 4, 9, 9, 9, 9, 9]])  # 2 of 3 on VOID: ignored
    s = _one(gt, [{"id": 9, "category_id": 11}], more, [{"id": 4, "category_id": 1}, {"id": 9, "category_id": 11}])
    assert s.fp[0] == 0


@pytest.mark.parametrize("crowd_cat,expect_fp", [(1, 0), (2, 1)])
def test_crowd_region_excuses_only_predictions_of_its_category(crowd_cat, expect_fp):
    gt = np.array([[3, 3, 3, 3, 9, 9, 9, 9]])
    pred = np.array([[4, 4, 4, 9, 9, 9, 9, 9]])
    s = _one(gt, [{"id": 3, "category_id": crowd_cat, "iscrowd": 1}, {"id": 9, "category_id": 11}],
             pred, [{"id": 4, "category_id": 1}, {"id": 9, "category_id": 11}])
    assert s.fp[0] == expect_fp
    assert s.fn.sum() == 0  # crowd segments are never false negatives


def test_last_crowd_segment_of_a_category_is_the_one_used():
    gt = np.array([[3, 3, 3, 8, 8, 8, 9, 9]])
    pred = np.array([[4, 4, 4, 4, 9, 9, 9, 9]])  # 3/4 on the first crowd, 1/4 on the second
    segs = [{"id": 3, "category_id": 1, "iscrowd": 1}, {"id": 8, "category_id": 1, "iscrowd": 1},
            {"id": 9, "category_id": 11}]
    s = _one(gt, segs, pred, [{"id": 4, "category_id": 1}, {"id": 9, "category_id": 11}])
    assert s.fp[0] == 1  # panopticapi looks at crowd 8 only


def test_predicted_void_inside_a_gt_segment_lowers_its_iou():
    gt = np.array([[5, 5, 5, 5, 5, 5, 5, 5]])
    pred = np.array([[5, 5, 5, 5, 5, 0, 0, 0]])
    s = _one(gt, [{"id": 5, "category_id": 10}], pred, [{"id": 5, "category_id": 10}])
    k = [c.id for c in CATEGORIES].index(10)
    assert s.tp[k] == 1 and s.iou[k] == pytest.approx(5 / 8)


def test_largest_rgb_id():
    big = 2**24 - 1
    gt = np.array([[big, big, 0, 1]])
    s = _one(gt, [{"id": big, "category_id": 2}, {"id": 1, "category_id": 11}],
             gt, [{"id": big, "category_id": 2}, {"id": 1, "category_id": 11}])
    assert s.tp.sum() == 2


def test_perfect_prediction_scores_one_and_disjoint_scores_zero():
    rng = np.random.default_rng(0)
    gt, gs, _, _ = random_case(3, 16, 16, 300)
    gs = [dict(s, iscrowd=0) for s in gs]
    m = PanopticQuality(CATEGORIES)
    m.update(gt, gs, gt, [{"id": s["id"], "category_id": s["category_id"]} for s in gs])
    r = m.compute()
    assert r.all.pq == pytest.approx(1.0) and r.all.sq == pytest.approx(1.0) and r.all.rq == 1.0
    shifted = {s["id"]: s["id"] + 1000 for s in gs}
    other = np.vectorize(lambda v: shifted.get(int(v), 0))(gt)
    wrong_cat = [{"id": shifted[s["id"]], "category_id": 3 if s["category_id"] != 3 else 1} for s in gs]
    m = PanopticQuality(CATEGORIES)
    m.update(gt, gs, other, wrong_cat)
    assert m.compute().all.pq == 0.0
    del rng


def test_merging_accumulators_is_associative_and_matches_one_pass():
    cases = [random_case(s, 12, 12, 300) for s in range(6)]
    parts = []
    for chunk in (cases[:2], cases[2:3], cases[3:]):
        m = PanopticQuality(CATEGORIES)
        for gt, gs, pred, ps in chunk:
            m.update(gt, gs, pred, ps)
        parts.append(m.stats)
    whole = PanopticQuality(CATEGORIES)
    for gt, gs, pred, ps in cases:
        whole.update(gt, gs, pred, ps)
    left = (parts[0] + parts[1]) + parts[2]
    right = parts[0] + (parts[1] + parts[2])
    for a in (left, right):
        assert np.array_equal(a.tp, whole.stats.tp) and np.array_equal(a.fp, whole.stats.fp)
        assert np.array_equal(a.fn, whole.stats.fn) and np.allclose(a.iou, whole.stats.iou, rtol=0, atol=1e-12)
    packed = PQStats.from_array(CATEGORIES, whole.stats.to_array())
    assert packed.compute().to_dict() == whole.compute().to_dict()


def test_accumulator_refuses_bad_input():
    from pss_bench.errors import PssBenchError

    m = PanopticQuality(CATEGORIES)
    gt = np.array([[5, 5]])
    with pytest.raises(PssBenchError, match="size"):
        m.update(gt, [{"id": 5, "category_id": 10}], np.array([[5, 5, 5]]), [{"id": 5, "category_id": 10}])
    with pytest.raises(PssBenchError, match="prediction segment 6: in the id map but not in the segment list"):
        m.update(gt, [{"id": 5, "category_id": 10}], np.array([[5, 6]]), [{"id": 5, "category_id": 10}])
    with pytest.raises(PssBenchError, match="unknown category_id 77"):
        m.update(gt, [{"id": 5, "category_id": 10}], gt, [{"id": 5, "category_id": 77}])
    with pytest.raises(PssBenchError, match="segment 0"):
        m.update(gt, [{"id": 5, "category_id": 10}, {"id": 0, "category_id": 10}], gt, [{"id": 5, "category_id": 10}])
    big = np.array([[2**40, 5]], dtype=np.int64)  # ids beyond 24 bits take the search path
    m.update(big, [{"id": 2**40, "category_id": 1}, {"id": 5, "category_id": 10}],
             big, [{"id": 2**40, "category_id": 1}, {"id": 5, "category_id": 10}])
    assert m.compute().all.pq == 1.0


def _ddp_worker(rank, world, port, cases, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    m = PanopticQuality(CATEGORIES)
    for gt, gs, pred, ps in cases[rank::world]:
        m.update(gt, gs, pred, ps)
    m.all_reduce()
    first = m.stats.to_array().copy()
    m.all_reduce()  # a second reduce must not sum the already-summed statistics again
    if rank == 0:
        out.put((first, m.stats.to_array()))
    dist.destroy_process_group()


def test_all_reduce_over_two_gloo_ranks_equals_single_process():
    import socket

    import torch.multiprocessing as mp

    cases = [random_case(s, 10, 10, 300) for s in range(5)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, cases, q)) for r in range(2)]
    for p in procs:
        p.start()
    reduced, reduced_twice = q.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    single = PanopticQuality(CATEGORIES)
    for gt, gs, pred, ps in cases:
        single.update(gt, gs, pred, ps)
    np.testing.assert_allclose(reduced, single.stats.to_array(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(reduced_twice, single.stats.to_array(), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- issue 13: batches, categories, reduce


def _two_images_same_ids():
    """Two images whose segment ids coincide: merging them as one image changes the PQ."""
    a = np.zeros((4, 4), np.int64)
    a[:, :2] = 1
    a[:, 2:] = 2
    b = np.zeros((4, 4), np.int64)
    b[:2] = 1
    b[2:] = 2
    gs = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}]
    ps_a = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2}]
    ps_b = [{"id": 1, "category_id": 2}, {"id": 2, "category_id": 1}]  # both wrong
    return (a, gs, a, ps_a), (b, gs, b, ps_b)


def test_batched_update_scores_each_image_separately():
    one, two = _two_images_same_ids()
    single = PanopticQuality(CATEGORIES)
    single.update(*one)
    single.update(*two)
    batched = PanopticQuality(CATEGORIES)
    batched.update(np.stack([one[0], two[0]]), [one[1], two[1]], torch.from_numpy(np.stack([one[2], two[2]])),
                   [one[3], two[3]])
    assert batched.compute().to_dict() == single.compute().to_dict()
    assert single.compute().all.pq == pytest.approx(0.5)


def test_batched_update_without_one_segment_list_per_image_is_refused():
    from pss_bench.errors import PssBenchError

    one, two = _two_images_same_ids()
    m = PanopticQuality(CATEGORIES)
    gt = np.stack([one[0], two[0]])
    with pytest.raises(PssBenchError, match=r"batch of 2 id maps .* one segment list per image"):
        m.update(gt, one[1], gt, one[3])  # one flat list for two images: would merge them
    with pytest.raises(PssBenchError, match=r"2 id maps but 3 gt segment lists"):
        m.update(gt, [one[1]] * 3, gt, [one[3]] * 2)
    with pytest.raises(PssBenchError, match=r"a single \(H, W\) id map takes one segment list"):
        m.update(one[0], [one[1]], one[2], [one[3]])
    with pytest.raises(PssBenchError, match=r"\(H, W\) or \(B, H, W\)"):
        m.update(gt[None], [[one[1]]], gt[None], [[one[3]]])
    assert m.stats.tp.sum() == 0  # nothing was added by a refused call


def test_categories_may_be_raw_coco_dicts():
    m = PanopticQuality(CATS)
    assert m.categories == tuple(CATEGORIES)
    by_id = PanopticQuality({c["id"]: c for c in CATS})
    assert by_id.categories == tuple(CATEGORIES)
    from pss_bench.errors import PssBenchError

    with pytest.raises(PssBenchError, match=r"categories\[1\].*'id'"):
        PanopticQuality([CATS[0], {"name": "x"}])


def test_all_reduce_needs_an_initialised_process_group():
    from pss_bench.errors import PssBenchError

    m = PanopticQuality(CATEGORIES)
    with pytest.raises(PssBenchError, match="torch.distributed is not initialised"):
        m.all_reduce()


def test_updates_after_all_reduce_are_counted_once(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cases = [random_case(s, 10, 10, 300) for s in range(3)]
        m = PanopticQuality(CATEGORIES)
        for gt, gs, pred, ps in cases[:2]:
            m.update(gt, gs, pred, ps)
        local = m.stats.to_array().copy()
        m.all_reduce()
        m.all_reduce()
        np.testing.assert_array_equal(m.stats.to_array(), local)
        # updates after a reduce are kept; the next reduce covers them once
        m.update(*cases[2])
        m.all_reduce()
        ref = PanopticQuality(CATEGORIES)
        for c in cases:
            ref.update(*c)
        np.testing.assert_array_equal(m.stats.to_array(), ref.stats.to_array())
    finally:
        dist.destroy_process_group()
