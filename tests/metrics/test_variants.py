"""Boundary PQ, PQ†, Parsing Covering and PQ by size against references written from their sources.

The references (``variant_references.py``) follow boundary-iou-api, Porzi et
al.'s definition and tf-models' ``parsing_covering.py`` step by step; PQ† is
also checked against torchmetrics' ``ModifiedPanopticQuality`` where no VOID
or crowd is involved.
"""

from __future__ import annotations

import numpy as np
import pytest

from pss_bench.errors import PssBenchError
from pss_bench.metrics.boundary import boundary_labels, dilation_pixels, interior_mask, sliding_all
from pss_bench.metrics.pq import ImageSegments, confusion_matrix, id_runs, thread_indexer
from pss_bench.metrics.variants import (
    METRIC_NAMES,
    VariantSettings,
    VariantStats,
    boundary_confusion,
    boundary_confusion_from_runs,
    boundary_runs,
    image_variant_stats,
    parse_metrics,
)
from pss_bench.structures import Category

from variant_references import (
    erode_3x3,
    mask_to_boundary,
    pq_scores,
    ref_boundary_pq,
    ref_parsing_covering,
    ref_pq_area,
    ref_pq_dagger,
)

THING, STUFF = 1, 2
CATS = {1: {"isthing": 1}, 2: {"isthing": 0}, 3: {"isthing": 1}, 4: {"isthing": 0}}


def categories(cats=CATS):
    return tuple(Category(cid, str(cid), bool(info["isthing"])) for cid, info in cats.items())


def ours(images, cats=CATS, metrics=("all",), **kw) -> VariantStats:
    settings = VariantSettings(metrics, **kw)
    cat_list = categories(cats)
    index = {c.id: i for i, c in enumerate(cat_list)}
    total = VariantStats.zeros(cat_list, settings)
    idx = thread_indexer()
    for gt_map, gt_segs, pred_map, pred_segs in images:
        gids = np.array([s["id"] for s in gt_segs], dtype=np.int64)
        pids = np.array([s["id"] for s in pred_segs], dtype=np.int64)
        gd, pd = idx(gt_map, gids), idx(pred_map, pids)
        conf = confusion_matrix(gd, pd, len(gids), len(pids))
        g = ImageSegments(np.array([index[s["category_id"]] for s in gt_segs], dtype=np.int64),
                          np.array([bool(s.get("iscrowd", 0)) for s in gt_segs], dtype=bool))
        p = ImageSegments(np.array([index[s["category_id"]] for s in pred_segs], dtype=np.int64),
                          np.zeros(len(pids), dtype=bool))
        d = dilation_pixels(*gt_map.shape, settings.dilation_ratio)
        bconf = boundary_confusion(gd, pd, len(gids), len(pids), d) if settings.wants("boundary-pq") else None
        total += image_variant_stats(settings, cat_list, conf, g, p, boundary_conf=bconf)
    return total


def assert_pq_like(res, ref_stat, cats=CATS, tol=1e-12):
    """``res``: a PQResult; ``ref_stat``: ``{cid: Stat}`` of a reference."""
    for cid in cats:
        r = res.per_class[cid]
        s = ref_stat.get(cid)
        tp, fp, fn, iou = (s.tp, s.fp, s.fn, s.iou) if s is not None else (0, 0, 0, 0.0)
        assert (r.tp, r.fp, r.fn) == (tp, fp, fn), (cid, r, (tp, fp, fn))
        assert abs(r.iou - iou) <= tol * max(1, tp)
    ref = pq_scores(ref_stat, cats)
    for name in ("All", "Things", "Stuff"):
        row = res.row(name)
        if ref[name] is None:
            assert row is None
        else:
            assert row is not None and row.n == ref[name][1]
            assert abs(row.pq - ref[name][0]) <= tol


# --------------------------------------------------------------------------- boundaries


def test_dilation_rounds_half_to_even():
    assert dilation_pixels(75, 100) == 2  # 0.02 * 125 = 2.5 -> 2
    assert dilation_pixels(1024, 2048) == 46
    assert dilation_pixels(10, 10) == 1  # 0.28 rounds to 0, then max(1, .)
    with pytest.raises(ValueError):
        dilation_pixels(10, 10, 0.0)


@pytest.mark.parametrize("seed", range(40))
def test_interior_equals_per_segment_erosion(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(x) for x in rng.integers(1, 40, 2))
    block = int(rng.integers(1, 7))
    lab = rng.integers(0, 4, (h // block + 1, w // block + 1)).repeat(block, 0).repeat(block, 1)[:h, :w]
    lab = np.where(rng.random((h, w)) < 0.01, 9, lab)
    d = int(rng.integers(1, 5))
    expected = np.zeros((h, w), dtype=bool)
    for v in np.unique(lab):
        m = np.pad((lab == v).astype(np.uint8), 1)
        expected |= erode_3x3(m, d)[1:h + 1, 1:w + 1].astype(bool)
    np.testing.assert_array_equal(interior_mask(lab, d), expected)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 13, 16, 31, 40])
def test_sliding_all_equals_brute_force(length):
    rng = np.random.default_rng(length)
    a = rng.random((40, 7)) < 0.93
    got = sliding_all(a, length, 0)
    want = np.array([a[i:i + length].all(axis=0) for i in range(40 - length + 1)])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(sliding_all(a.T, length, 1), want.T)


def test_border_segment_has_boundary_on_the_border():
    lab = np.ones((75, 100), dtype=np.int64)
    d = dilation_pixels(75, 100)
    b = boundary_labels(lab, d, 7)
    inside = b == 7
    assert inside[2:-2, 2:-2].all() and not inside[:2].any() and not inside[-2:].any()
    assert not inside[:, :2].any() and not inside[:, -2:].any()
    np.testing.assert_array_equal(b != 7, mask_to_boundary(lab == 1).astype(bool))
    # with d = 3 (the rounding up a naive round would give) the ring would be wider
    assert (boundary_labels(lab, 3, 7) != 7).sum() > (b != 7).sum()


def test_narrow_object_is_all_boundary():
    lab = np.zeros((60, 60), dtype=np.int64)
    lab[10:50, 20:24] = 5  # 4 wide < 2d + 1 = 5 for d = 2
    b = boundary_labels(lab, 2, 99)
    assert (b[lab == 5] == 5).all()


def test_boundary_runs_equal_pixel_maps():
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 4, (12, 20)).repeat(4, 0).repeat(4, 1)[:45, :77]
    ids = np.arange(1, 4)
    gr = id_runs(lab, ids)
    pr = id_runs(np.roll(lab, 3, axis=1), ids)
    d = 2
    got = boundary_confusion_from_runs(boundary_runs(gr, 45, 77, 3, d), boundary_runs(pr, 45, 77, 3, d), 3, 3)
    want = boundary_confusion(lab, np.roll(lab, 3, axis=1), 3, 3, d)
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- constructed cases


def _shifted_square(shift):
    gt = np.zeros((100, 100), np.int64)
    gt[20:70, 20:70] = 1000
    pred = np.zeros_like(gt)
    pred[20 + shift:70 + shift, 20 + shift:70 + shift] = 2000
    return (gt, [{"id": 1000, "category_id": THING}], pred, [{"id": 2000, "category_id": THING}])


def test_shift_keeps_mask_match_but_loses_boundary_match():
    img = _shifted_square(4)  # d = round(0.02 * 141.4) = 3, square 50 > 2d + 1
    res = ours([img]).compute()
    b = res.boundary_pq.pq.per_class[THING]
    assert (b.tp, b.fp, b.fn) == (0, 1, 1)
    area = res.pq_area.medium.per_class[THING]
    assert area.tp == 1 and area.iou > 0.5  # mask PQ still matches (2116 px: medium)
    assert_pq_like(res.boundary_pq.pq, ref_boundary_pq([img], CATS))


def test_narrow_shift_equals_mask_iou():
    gt = np.zeros((100, 100), np.int64)
    gt[10:90, 40:45] = 1000  # 5 wide < 2d + 1 = 7: all boundary
    pred = np.zeros_like(gt)
    pred[11:90, 40:45] = 2000
    img = (gt, [{"id": 1000, "category_id": THING}], pred, [{"id": 2000, "category_id": THING}])
    res = ours([img]).compute()
    b = res.boundary_pq.pq.per_class[THING]
    assert b.tp == 1 and b.iou == pytest.approx(395 / 400, abs=1e-15)
    assert_pq_like(res.boundary_pq.pq, ref_boundary_pq([img], CATS))


def test_stuff_at_iou_0_3_counts_in_pq_dagger_only():
    gt = np.zeros((40, 40), np.int64)
    gt[:, :] = 1
    gt[:, 30:] = 0
    pred = np.full_like(gt, 0)
    pred[:, :9] = 1  # 360 of the 1200 GT pixels: IoU 0.3
    img = (gt, [{"id": 1, "category_id": STUFF}], pred, [{"id": 1, "category_id": STUFF}])
    res = ours([img]).compute()
    assert res.pq_dagger.per_class[STUFF] == pytest.approx(0.3, abs=1e-15)
    # PQ: no match; the GT of 1200 px is a medium FN, the 360-px prediction a small FP
    assert res.pq_area.medium.per_class[STUFF].fn == 1 and res.pq_area.small.per_class[STUFF].fp == 1
    assert res.pq_area.medium.per_class[STUFF].tp == 0
    ref = ref_pq_dagger([img], CATS)
    assert res.pq_dagger.per_class[STUFF] == pytest.approx(ref["per_class"][STUFF], abs=1e-15)


def test_stuff_split_in_two_predictions_is_merged():
    gt = np.full((30, 30), 1, np.int64)
    pred = np.full_like(gt, 7)
    pred[:, 15:] = 8
    pred[:2] = 0  # predicted VOID lowers the IoU
    img = (gt, [{"id": 1, "category_id": STUFF}], pred,
           [{"id": 7, "category_id": STUFF}, {"id": 8, "category_id": STUFF}])
    res = ours([img]).compute()
    assert res.pq_dagger.per_class[STUFF] == pytest.approx(840 / 900, abs=1e-15)
    b = res.pq_area.large.per_class[STUFF]
    assert b.tp == 0  # neither half alone has IoU > 0.5
    # PC: best single region covers half
    assert res.pc.per_class[STUFF] == pytest.approx(420 / 900, abs=1e-15)


def test_void_and_crowd_in_each_metric():
    gt = np.zeros((64, 64), np.int64)
    gt[:, :32] = 1          # stuff
    gt[10:40, 36:60] = 500  # crowd thing
    gt[45:60, 40:60] = 600  # thing
    gsegs = [{"id": 1, "category_id": STUFF}, {"id": 500, "category_id": THING, "iscrowd": 1},
             {"id": 600, "category_id": THING}]
    pred = np.zeros_like(gt)
    pred[:, :34] = 11
    pred[12:38, 38:58] = 12   # on the crowd: ignored, no FP
    pred[44:60, 40:61] = 13   # the thing, spilling on VOID
    pred[0:8, 40:60] = 14     # on VOID only: ignored
    pred[36:44, 40:50] = 13   # 13 also on the crowd (40 px) and on VOID
    psegs = [{"id": 11, "category_id": STUFF}, {"id": 12, "category_id": THING},
             {"id": 13, "category_id": THING}, {"id": 14, "category_id": THING}]
    img = (gt, gsegs, pred, psegs)
    res = ours([img]).compute()
    assert_pq_like(res.boundary_pq.pq, ref_boundary_pq([img], CATS))
    assert res.boundary_pq.pq.per_class[THING].fp == 0
    ref = ref_pq_dagger([img], CATS)
    for cid in CATS:
        assert res.pq_dagger.per_class[cid] == pytest.approx(ref["per_class"][cid], abs=1e-12)
    pc = ref_parsing_covering([img], CATS)
    for cid in CATS:
        assert res.pc.per_class[cid] == pytest.approx(pc["per_class"][cid], abs=1e-12)
    # PC leaves the crowd out of the prediction's area (PQ keeps it in the union): 13 covers 600 exactly
    assert res.pc.per_class[THING] == 1.0
    m = res.pq_area.small.per_class[THING]
    assert m.tp == 1 and m.iou == pytest.approx(300 / 340, abs=1e-15)
    for k, st in enumerate(ref_pq_area([img], CATS)):
        assert_pq_like((res.pq_area.small, res.pq_area.medium, res.pq_area.large)[k], st)


@pytest.mark.parametrize("seed", range(25))
def test_random_images_match_references(seed):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(2):
        h, w = (int(x) for x in rng.integers(20, 90, 2))
        images.append(_random_pair(rng, h, w, void=True, crowd=True))
    for normalize in (True, False):
        res = ours(images, pc_normalize=normalize).compute()
        pc = ref_parsing_covering(images, CATS, normalize)
        assert (res.pc.pc is None) == (pc["pc"] is None)
        if pc["pc"] is not None:
            assert res.pc.pc == pytest.approx(pc["pc"], abs=1e-12)
        for cid in CATS:
            assert res.pc.per_class[cid] == pytest.approx(pc["per_class"][cid], abs=1e-12)
    assert_pq_like(res.boundary_pq.pq, ref_boundary_pq(images, CATS))
    ref = ref_pq_dagger(images, CATS)
    for name in ("All", "Things", "Stuff"):
        row = res.pq_dagger.row(name)
        assert (row is None) == (ref[name] is None)
        if row is not None:
            assert (row.pq, row.n) == (pytest.approx(ref[name][0], abs=1e-12), ref[name][1])
    for k, st in enumerate(ref_pq_area(images, CATS)):
        assert_pq_like((res.pq_area.small, res.pq_area.medium, res.pq_area.large)[k], st)


def _random_pair(rng, h, w, void: bool, crowd: bool, one_stuff_segment: bool = False,
                 cat_map=(1, 2, 3, 4, 1, 2, 3, 4)):
    """A GT and a prediction built from blocky random labels, things and stuff, big and small.

    Label ``v`` of the random maps becomes a segment of category ``cat_map[v]``
    (the default gives some images two GT segments of one stuff class).
    """
    def draw(n_blocks):
        bh, bw = max(1, h // n_blocks), max(1, w // n_blocks)
        lab = rng.integers(0, 8, (h // bh + 1, w // bw + 1)).repeat(bh, 0).repeat(bw, 1)[:h, :w]
        return lab
    gt_lab = draw(int(rng.integers(2, 6)))
    pred_lab = np.where(rng.random((h, w)) < 0.85, np.roll(gt_lab, int(rng.integers(-3, 4)), axis=1), draw(4))
    pred_lab = np.where(rng.random((h, w)) < 0.03, 7, pred_lab)

    def segments(lab, is_gt):
        ids = np.zeros((h, w), np.int64)
        segs = []
        for v in np.unique(lab):
            if v == 0 and void:
                continue
            cid = cat_map[int(v)]
            sid = 1000 + 10 * int(v) + (0 if is_gt else 5)
            if not is_gt and not CATS[cid]["isthing"] and not one_stuff_segment:
                # split stuff predictions in two segments sometimes
                m = lab == v
                half = np.zeros_like(m)
                half[:, : w // 2] = True
                if rng.random() < 0.5 and (m & half).any() and (m & ~half).any():
                    ids[m & half] = sid
                    ids[m & ~half] = sid + 1
                    segs += [{"id": sid, "category_id": cid}, {"id": sid + 1, "category_id": cid}]
                    continue
            ids[lab == v] = sid
            seg = {"id": sid, "category_id": cid}
            if is_gt and crowd and CATS[cid]["isthing"] and rng.random() < 0.3:
                seg["iscrowd"] = 1
            segs.append(seg)
        return ids, segs

    g, gs = segments(gt_lab, True)
    p, ps = segments(pred_lab, False)
    return g, gs, p, ps


# --------------------------------------------------------------------------- torchmetrics


@pytest.mark.parametrize("seed", range(10))
def test_pq_dagger_equals_torchmetrics_without_void_or_crowd(seed):
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.detection")
    rng = np.random.default_rng(100 + seed)
    h, w = 48, 64
    # torchmetrics merges the GT segments of a stuff class too: one GT segment per stuff class here
    images = [_random_pair(rng, h, w, void=False, crowd=False, cat_map=(1, 2, 3, 4, 1, 3, 1, 3)) for _ in range(3)]
    # torchmetrics divides integer areas in torch's default dtype: float64 for an exact comparison
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        want = _torchmetrics_pq_dagger(torch, tm, images)
    finally:
        torch.set_default_dtype(previous)
    got = ours(images, metrics=("pq-dagger",)).compute().pq_dagger.all.pq
    assert got == pytest.approx(want, abs=1e-12)


def _torchmetrics_pq_dagger(torch, tm, images) -> float:
    metric = tm.ModifiedPanopticQuality(things={1, 3}, stuffs={2, 4})
    for g, gs, p, ps in images:
        def pairs(ids, segs):
            cat = np.zeros(ids.shape, np.int64)
            inst = np.zeros(ids.shape, np.int64)
            for k, s in enumerate(segs, 1):
                m = ids == s["id"]
                cat[m] = s["category_id"]
                inst[m] = k
            return torch.from_numpy(np.stack([cat, inst], -1)[None])
        metric.update(pairs(p, ps), pairs(g, gs))
    return float(metric.compute())


# --------------------------------------------------------------------------- states


def test_stats_add_and_array_round_trip():
    rng = np.random.default_rng(7)
    images = [_random_pair(rng, 50, 60, void=True, crowd=True) for _ in range(3)]
    whole = ours(images)
    parts = [ours([im]) for im in images]
    total = VariantStats.zeros(whole.categories, whole.settings)
    for p in parts:
        total += p
    assert total.compute() == whole.compute()
    again = VariantStats.from_array(whole.categories, whole.settings, whole.to_array())
    assert again.compute() == whole.compute()


def test_parse_metrics():
    assert parse_metrics("all") == METRIC_NAMES
    assert parse_metrics("pc, pq") == ("pq", "pc")
    with pytest.raises(PssBenchError, match="unknown metric 'bpq'"):
        parse_metrics("pq,bpq")
    with pytest.raises(PssBenchError, match="no metric"):
        parse_metrics(" , ")


def test_json_layout():
    rng = np.random.default_rng(1)
    d = ours([_random_pair(rng, 40, 40, void=True, crowd=True)]).compute().to_dict()
    assert set(d) == {"boundary_pq", "pq_dagger", "pc", "pq_area"}
    assert set(d["boundary_pq"]) == {"All", "Things", "Stuff", "per_class", "dilation_ratio"}
    assert set(d["boundary_pq"]["per_class"]["1"]) == {"pq", "sq", "rq", "tp", "fp", "fn", "iou"}
    assert set(d["pq_dagger"]) == {"All", "Things", "Stuff", "per_class"}
    assert set(d["pq_dagger"]["All"]) == {"pq", "n"} and set(d["pq_dagger"]["per_class"]["2"]) == {"pq"}
    assert set(d["pc"]) == {"All", "per_class", "normalize_by_image_size"} and set(d["pc"]["All"]) == {"pc"}
    assert d["pq_area"]["ranges"] == [[0, 1024], [1024, 9216], [9216, None]]
    assert set(d["pq_area"]) == {"small", "medium", "large", "ranges"}
    only = ours([_random_pair(rng, 40, 40, void=True, crowd=True)], metrics=("pc",)).compute().to_dict()
    assert set(only) == {"pc"}


# --------------------------------------------------------------------------- streaming accumulator


def test_streaming_metric_equals_pure_compute_merges_and_reduces(tmp_path):
    import torch
    import torch.distributed as dist

    from pss_bench.metrics.pq import PanopticQuality

    rng = np.random.default_rng(11)
    images = [_random_pair(rng, 40, 56, void=True, crowd=True) for _ in range(4)]
    want = ours(images).compute()
    cats = [{"id": cid, "name": str(cid), "isthing": info["isthing"]} for cid, info in CATS.items()]
    a = PanopticQuality(cats, metrics="all")
    b = PanopticQuality(cats, metrics="all")
    for im in images[:2]:
        a.update(*im)
    g = np.stack([im[0] for im in images[2:]])
    p = torch.from_numpy(np.stack([im[2] for im in images[2:]]))
    b.update(g, [im[1] for im in images[2:]], p, [im[3] for im in images[2:]])  # a batch
    a += b
    got = a.compute()
    assert got.variants == want
    assert set(got.to_dict()) == {"All", "Things", "Stuff", "per_class", "boundary_pq", "pq_dagger", "pc", "pq_area"}
    with pytest.raises(PssBenchError, match="different metrics"):
        a += PanopticQuality(cats)
    assert PanopticQuality(cats).compute().variants is None

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        a.all_reduce()
        a.all_reduce()  # sums what this rank added, not the earlier sum
        assert a.compute().variants == want
    finally:
        dist.destroy_process_group()


def test_docs_worked_example():
    """The numbers of docs/metrics.md's worked example."""
    from pss_bench.metrics.pq import PanopticQuality

    gt = np.zeros((100, 100), np.int64)
    gt[:20] = 1
    gt[20:95] = 2
    gt[40:90, 10:60] = 1001
    gt[50:70, 70:90] = 1002
    pred = gt.copy()
    pred[(gt == 1001) | (gt == 1002)] = 2
    pred[41:91, 11:61] = 2001
    pred[53:73, 73:93] = 2002
    pred[16:20] = 3
    gsegs = [{"id": 1, "category_id": 23}, {"id": 2, "category_id": 7}, {"id": 1001, "category_id": 26},
             {"id": 1002, "category_id": 26}]
    psegs = [{"id": 1, "category_id": 23}, {"id": 3, "category_id": 23}, {"id": 2, "category_id": 7},
             {"id": 2001, "category_id": 26}, {"id": 2002, "category_id": 26}]
    cats = [{"id": 7, "name": "road", "isthing": 0}, {"id": 23, "name": "sky", "isthing": 0},
            {"id": 26, "name": "car", "isthing": 1}]
    m = PanopticQuality(cats, metrics="all")
    m.update(gt, gsegs, pred, psegs)
    r = m.compute()
    v = r.variants

    def pct(x):
        return round(100 * x, 1)

    assert [pct(r.per_class[c].pq) for c in (23, 7, 26)] + [pct(r.all.pq)] == [53.3, 91.3, 74.5, 73.0]
    b = v.boundary_pq.pq
    assert (b.per_class[23].tp, b.per_class[23].fp, b.per_class[23].fn) == (0, 2, 1)
    assert [pct(b.per_class[c].pq) for c in (23, 7, 26)] + [pct(b.all.pq)] == [0.0, 61.5, 25.2, 28.9]
    assert [pct(v.pq_dagger.per_class[c]) for c in (23, 7, 26)] + [pct(v.pq_dagger.all.pq)] == [100.0, 91.3, 74.5, 88.6]
    assert [pct(v.pc.per_class[c]) for c in (23, 7, 26)] + [pct(v.pc.pc)] == [80.0, 91.3, 87.4, 86.2]
    assert [pct(v.pq_area.small.per_class[c].pq) for c in (23, 26)] + [pct(v.pq_area.small.all.pq)] == [0.0, 56.6, 28.3]
    assert [pct(v.pq_area.medium.per_class[c].pq) for c in (23, 7, 26)] + [pct(v.pq_area.medium.all.pq)] == \
        [80.0, 91.3, 92.4, 87.9]


def test_packed_per_image_statistics_equal_the_images_own():
    """evaluate_pq keeps the per-image statistics packed: the same sums, items and bootstrap input as a tuple."""
    from pss_bench.metrics.variants import PackedVariantImages, VariantSettings, VariantStats, parse_metrics, \
        variant_image_stats

    rng = np.random.default_rng(3)
    cats = tuple(Category(i + 1, f"c{i}", i % 2 == 0) for i in range(5))
    settings = VariantSettings(parse_metrics("all"), 0.02, True)
    rows = len(VariantStats.zeros(cats, settings).to_array())
    images = []
    for _ in range(7):
        a = rng.random((rows, len(cats)))
        st = VariantStats.zeros(cats, settings).to_array()
        # counts rows hold integers, as the evaluator's do; iou and covering rows floats
        counts = np.ones(rows, bool)
        counts[[0, 4, 8, 12, 16, rows - 2, rows - 1]] = False
        st[:] = np.where(counts[:, None], np.floor(a * 9), a)
        images.append(VariantStats.from_array(cats, settings, st))
    packed = PackedVariantImages(cats, settings, np.stack([v.to_array() for v in images]))
    total = VariantStats.zeros(cats, settings)
    for v in images:
        total += v
    assert np.array_equal(packed.total().to_array(), total.to_array())  # bit for bit, in image order
    assert len(packed) == 7 and np.array_equal(packed[3].to_array(), images[3].to_array())
    assert [v.to_array().tolist() for v in packed[1:3]] == [v.to_array().tolist() for v in images[1:3]]
    ids = list(range(7))
    want, got = variant_image_stats(images, ids), variant_image_stats(packed, ids)
    assert list(got) == list(want)
    for key in want:
        for f in ("iou", "tp", "fp", "fn"):
            a, b = getattr(want[key], f), getattr(got[key], f)
            assert a.dtype == b.dtype and np.array_equal(a, b), (key, f)
