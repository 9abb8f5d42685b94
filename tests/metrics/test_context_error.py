"""Context Error: the fast path against a plain-loops reference, hand-computed cases, bounds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from context_error_helpers import (
    ref_context_error,
    ref_instances_of_gt,
    ref_pair_ce,
    write_embeddings,
    write_tiny_gt,
)
from pss_bench.evaluation.context_error import evaluate_context_error
from pss_bench.evaluation.instances import load_instances
from pss_bench.metrics.retrieval import search
from pss_bench.io.panoptic import load_panoptic_json, read_id_png
from pss_bench.metrics.context_error import (
    ContextErrorStats,
    PairTerms,
    image_context_descriptors,
    pair_ce_matrix,
    pair_context_error,
    region_boxes,
    run_lengths,
)
from pss_bench.structures import Category, Segments

ROAD, CAR = 1, 2
TINY_CATS = [{"id": ROAD, "name": "road", "isthing": 0}, {"id": CAR, "name": "car", "isthing": 1}]
LN10 = math.log(10)


# --------------------------------------------------------------------------- pure compute


def test_run_lengths_rebuild_the_map():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 4, size=(7, 9)).astype(np.uint32)
    r = run_lengths(ids)
    rebuilt = np.full(ids.shape, 99, np.uint32)
    for v, y, a, b in zip(r.values, r.rows, r.x0, r.x1):
        rebuilt[y, a:b] = v
    assert np.array_equal(rebuilt, ids)
    assert (r.x1 > r.x0).all()


def test_region_boxes_clip_and_order():
    regions = region_boxes(np.array([[2, 3, 4, 5]]), height=10, width=9)
    assert regions.shape == (1, 8, 4)
    # top-left region: x in [-2, 2) -> [0, 2), y in [-2, 3) -> [0, 3)
    assert regions[0, 0].tolist() == [0, 0, 2, 3]
    # bottom-right: x [6, 10) -> [6, 9), y [8, 13) -> [8, 10)
    assert regions[0, 7].tolist() == [6, 8, 9, 10]
    # right-middle region (i=1, j=0)
    assert regions[0, 4].tolist() == [6, 3, 9, 8]


def test_pair_context_error_matches_reference_and_is_symmetric():
    rng = np.random.default_rng(2)
    p = rng.random((6, 8, 4)) * (rng.random((6, 8, 4)) > 0.4)
    p[0, 3] = 0  # an all-zero (outside) region
    p /= np.maximum(p.sum(-1, keepdims=True), 1e-12) * rng.uniform(1, 1.3, size=(6, 8, 1))
    terms = PairTerms.from_distributions(p)
    m = pair_ce_matrix(terms, terms)
    for a in range(6):
        for b in range(6):
            assert m[a, b] == pytest.approx(ref_pair_ce(p[a].tolist(), p[b].tolist()), rel=1e-12, abs=1e-12)
            assert pair_context_error(p[a], p[b]) == pytest.approx(m[a, b], rel=1e-12, abs=1e-12)
    assert np.allclose(m, m.T)
    assert np.allclose(np.diag(m), 0)


def test_kl_uses_the_paper_floor_for_zero_probabilities():
    p = np.zeros((8, 2))
    q = np.zeros((8, 2))
    p[:, 0] = 1.0  # P = (1, 0); Q = 0 -> KL(P||Q) = ln(1 / 0.1), KL(Q||P) = 0
    assert pair_context_error(p, q) == pytest.approx(LN10)


def test_descriptors_of_a_hand_made_image():
    # 6 x 6: road everywhere, a 2x2 car at (2, 2), void (0) in the top row, a crowd car on the right.
    ids = np.full((6, 6), 1, np.uint32)
    ids[0, :] = 0
    ids[2:4, 2:4] = 5
    ids[2:4, 5] = 9
    segs = Segments(np.array([1, 5, 9]), np.array([ROAD, CAR, CAR]), np.array([False, False, True]))
    cats = [Category(ROAD, "road", False), Category(CAR, "car", True)]
    d = image_context_descriptors(ids, segs, cats)
    assert d.segment_ids.tolist() == [5]  # the crowd segment is no instance
    assert d.boxes.tolist() == [[2, 2, 2, 2]]
    assert d.areas.tolist() == [4]
    # top-left region: rows 0-1, cols 0-1: row 0 is void -> road 2 of 4
    assert d.counts[0, 0].tolist() == [2, 0]
    # right-middle region: rows 2-3, cols 4-5: col 5 is the crowd car (counts as car)
    assert d.counts[0, 4].tolist() == [2, 2]
    assert d.region_areas[0].tolist() == [4] * 8
    dist = d.distributions()
    assert dist[0, 4].tolist() == [0.5, 0.5]


# --------------------------------------------------------------------------- hand-computed end to end


def _three_cars(tmp_path):
    """Three 3x3 images: a 1-pixel car in road; B has a void top row; C's car sits in the corner."""
    a = np.full((3, 3), 1, np.uint32)
    a[1, 1] = 2
    b = a.copy()
    b[0, :] = 0
    c = np.full((3, 3), 1, np.uint32)
    c[0, 0] = 2
    segs = [{"id": 1, "category_id": ROAD, "iscrowd": 0}, {"id": 2, "category_id": CAR, "iscrowd": 0}]
    return write_tiny_gt(tmp_path, {"A": (a, segs), "B": (b, segs), "C": (c, segs)}, TINY_CATS)


def test_hand_computed_context_error(tmp_path):
    gt_json, _ = _three_cars(tmp_path)
    # Pair CEs by hand (L = ln 10): AB = 3L/8, AC = 5L/8, BC = 2L/8.
    # Embeddings: A -> C, B -> C, C -> A are the nearest neighbours (K = 1).
    emb = {"A": ([2], [[1.0, 0.0]]), "B": ([2], [[0.0, 1.0]]), "C": ([2], [[1.0, 0.1]])}
    pred = write_embeddings(tmp_path / "pred", emb)
    res = evaluate_context_error(pred, gt_json, k=1, workers=1)
    car = res.per_class[CAR]
    assert car.queries == 3
    assert car.ce == pytest.approx((5 + 2 + 5) * LN10 / 24)
    assert car.random == pytest.approx((4 + 2.5 + 3.5) * LN10 / 24)
    assert car.oracle == pytest.approx((3 + 2 + 2) * LN10 / 24)
    assert car.score == pytest.approx(-2 / 3)
    assert res.mean.ce == pytest.approx(car.ce)
    d = res.to_dict()
    assert set(d) == {"k", "all_classes", "per_class", "mean", "mean_all_classes"}
    assert set(d["per_class"]) == {"2"}  # only thing categories
    assert d["per_class"]["2"]["informative"] is True  # K = 1 < 2 others
    assert d["per_class"]["2"]["queries"] == 3


def test_k_covering_everything_equals_random_and_oracle(tmp_path):
    gt_json, _ = _three_cars(tmp_path)
    emb = {"A": ([1, 2], [[0.3, 1.0], [1.0, 0.0]]), "B": ([2], [[0.0, 1.0]]), "C": ([2], [[1.0, 0.1]])}
    pred = write_embeddings(tmp_path / "pred", emb)
    res = evaluate_context_error(pred, gt_json, k=20, workers=1)
    car = res.per_class[CAR]
    assert car.ce == pytest.approx(car.random)
    assert car.oracle == pytest.approx(car.random)
    assert car.score is None  # random == oracle: no room to normalise


def _grouped_contexts(tmp_path, n_per_group=4):
    """Cars with two kinds of context (road below / road above), n_per_group each."""
    images, segs = {}, [{"id": 1, "category_id": ROAD, "iscrowd": 0}, {"id": 2, "category_id": CAR, "iscrowd": 0}]
    for g in range(2):
        for i in range(n_per_group):
            ids = np.zeros((9, 9), np.uint32)
            if g == 0:
                ids[5:, :] = 1
            else:
                ids[:4, :] = 1
            ids[3 + i % 2 : 6 + i % 2, 3:6] = 2
            images[f"g{g}_{i}"] = (ids, segs)
    return write_tiny_gt(tmp_path, images, TINY_CATS)


def test_context_embeddings_reach_the_oracle(tmp_path):
    gt_json, _ = _grouped_contexts(tmp_path)
    base = write_embeddings(tmp_path / "base", {f"g{g}_{i}": ([2], [[1.0]]) for g in range(2) for i in range(4)})
    inst = load_instances(base, gt_json, workers=1)
    # Embedding = the context descriptor itself.
    emb = {}
    for n in range(len(inst)):
        emb[inst.image_id(n)] = ([int(inst.segment_ids[n])], [inst.distributions[n].ravel() + 1e-3])
    pred = write_embeddings(tmp_path / "pred", emb)
    res = evaluate_context_error(pred, gt_json, k=3, workers=1)
    car = res.per_class[CAR]
    assert car.queries == 8
    assert car.ce == pytest.approx(car.oracle)
    assert car.random > car.oracle
    assert car.score == pytest.approx(1.0)
    # Clusters that mix the two contexts retrieve 2 wrong contexts of 3: well above the oracle.
    mixed = {k: (s, [[1.0, 0.0] if k[-1] in "01" else [0.0, 1.0]]) for k, (s, _) in emb.items()}
    res2 = evaluate_context_error(write_embeddings(tmp_path / "pred2", mixed), gt_json, k=3, workers=1)
    assert res2.per_class[CAR].ce > res.per_class[CAR].ce + 0.5
    assert res2.per_class[CAR].score < 0.5


def test_stats_merge_is_a_sum():
    cats = (Category(2, "car", True), Category(3, "bus", True))
    from pss_bench.metrics.context_error import CategoryScores

    s1, s2, both = (ContextErrorStats(cats, 5) for _ in range(3))
    a = CategoryScores(np.array([1.0, 2.0]), np.array([3.0, 3.0]), np.array([0.5, 0.5]), np.array([np.nan, 1.0]), 2, 9)
    b = CategoryScores(np.array([4.0]), np.array([5.0]), np.array([1.0]), np.array([0.0]), 1, 6)
    s1.add(2, a)
    s2.add(3, b)
    both.add(2, a)
    both.add(3, b)
    s1 += s2
    assert s1.compute() == both.compute()
    r = both.compute()
    assert r.per_class[2].precision == 1.0 and r.per_class[3].precision == 0.0
    assert r.mean.ce == pytest.approx((1.5 + 4.0) / 2)
    assert r.per_class[2].informative and r.per_class[3].informative  # 9 and 6 others > K = 5


def test_search_excludes_the_query_even_with_ties():
    vecs = np.ones((5, 3), np.float32) / np.sqrt(3)
    nb = search(vecs, vecs, 10, np.arange(5))
    assert nb.shape == (5, 4)
    for i in range(5):
        assert i not in nb[i]
        assert sorted(nb[i]) == sorted(set(range(5)) - {i})


# --------------------------------------------------------------------------- real frames vs the reference


@pytest.fixture(scope="module")
def cs_reference(cityscapes_train_gt):
    gt_json, png_dir = cityscapes_train_gt
    insts, things = ref_instances_of_gt(gt_json, png_dir)
    return gt_json, png_dir, insts, things


def _embedding_sets(insts, rng):
    n = len(insts)
    ctx = np.array([np.ravel(i["regions"]) for i in insts])
    return {
        "gauss16": rng.normal(size=(n, 16)).astype(np.float32),
        "context+noise": (ctx + 0.05 * rng.normal(size=ctx.shape)).astype(np.float32),
        "float16-dim3": rng.normal(size=(n, 3)).astype(np.float16),
    }


def _dump(tmp_path, name, insts, vecs, extra_segments=None):
    per = {}
    for inst, v in zip(insts, vecs):
        image_id, sid = inst["key"]
        seg, emb = per.setdefault(image_id, ([], []))
        seg.append(sid)
        emb.append(v)
    for image_id, (sid, v) in (extra_segments or {}).items():
        per[image_id][0].append(sid)
        per[image_id][1].append(v)
    return write_embeddings(tmp_path / name, {k: (np.array(s), np.array(e)) for k, (s, e) in per.items()})


def test_descriptors_match_the_reference_on_real_frames(cs_reference):
    gt_json, png_dir, insts, _ = cs_reference
    gt = load_panoptic_json(gt_json, png_dir)
    cats = list(gt.categories.values())
    by_key = {i["key"]: i for i in insts}
    n = 0
    for ann in gt.annotations:
        d = image_context_descriptors(read_id_png(gt.png_path(ann)), ann.segments, cats)
        dist = d.distributions()
        for m in range(len(d)):
            ref = by_key[(ann.image_id, int(d.segment_ids[m]))]
            assert tuple(d.boxes[m]) == ref["box"]
            assert d.areas[m] == ref["area"]
            assert np.array_equal(dist[m], np.array(ref["regions"]))
            n += 1
    assert n == len(insts) > 50


@pytest.mark.parametrize("k", [1, 5, 20])
def test_fast_matches_reference_on_real_frames(cs_reference, tmp_path, k):
    gt_json, png_dir, insts, things = cs_reference
    rng = np.random.default_rng(k)
    for name, vecs in _embedding_sets(insts, rng).items():
        # A stuff segment's embedding is allowed and ignored.
        pred = _dump(tmp_path, name, insts, vecs, extra_segments={insts[0]["key"][0]: (7, vecs[0])})
        res = evaluate_context_error(pred, gt_json, gt_dir=png_dir, k=k, workers=2)
        per, mean = ref_context_error(insts, list(vecs.astype(np.float64)), k, cats=things)
        assert {c for c, r in res.per_class.items() if r.queries} == set(per), name
        for c, ref in per.items():
            got = res.per_class[c]
            assert got.queries == ref["queries"], (name, c)
            for key in ("ce", "random", "oracle"):
                assert getattr(got, key) == pytest.approx(ref[key], rel=1e-9, abs=1e-12), (name, c, key)
        _check_means(res, per, mean, k, name)


def test_min_area_and_gallery_match_reference(cs_reference, tmp_path):
    gt_json, png_dir, insts, things = cs_reference
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(len(insts), 8)).astype(np.float32)
    gvecs = rng.normal(size=(len(insts), 8)).astype(np.float32)
    pred = _dump(tmp_path, "q", insts, vecs)
    gal = _dump(tmp_path, "g", insts, gvecs)
    min_area = 2000
    keep = [i for i, x in enumerate(insts) if x["area"] >= min_area]
    assert 0 < len(keep) < len(insts)
    res = evaluate_context_error(pred, gt_json, gt_dir=png_dir, k=4, min_area=min_area,
                                 gallery=gal, gallery_gt=gt_json, gallery_gt_dir=png_dir, workers=1)
    sub = [insts[i] for i in keep]
    per, mean = ref_context_error(sub, list(vecs[keep].astype(np.float64)), 4, gallery=sub,
                                  gallery_embeddings=list(gvecs[keep].astype(np.float64)), cats=things)
    for c, ref in per.items():
        got = res.per_class[c]
        assert got.queries == ref["queries"]
        for key in ("ce", "random", "oracle"):
            assert getattr(got, key) == pytest.approx(ref[key], rel=1e-9), (c, key)
    _check_means(res, per, mean, 4, "gallery")


def _check_means(res, per, mean, k, name):
    """The paper's plain mean over every class, and the default mean over the informative ones."""
    for key in ("ce", "random", "oracle"):
        assert getattr(res.mean_all_classes, key) == pytest.approx(mean[key], rel=1e-9), (name, key)
    informative = [c for c, r in per.items() if r["others"] > k]
    for c, r in per.items():
        assert res.per_class[c].informative == (r["others"] > k), (name, c)
        if r["others"] <= k:  # K covers every other instance: the CE says nothing about the embedding
            assert res.per_class[c].ce == pytest.approx(res.per_class[c].random, rel=1e-9)
            assert res.per_class[c].oracle == pytest.approx(res.per_class[c].random, rel=1e-9)
    assert res.mean.classes == len(informative)
    if informative:
        for key in ("ce", "random", "oracle"):
            want = float(np.mean([per[c][key] for c in informative]))
            assert getattr(res.mean, key) == pytest.approx(want, rel=1e-9), (name, key)
    else:
        assert res.mean.ce is None


def test_context_precision_with_constructed_labels(cs_reference, tmp_path):
    gt_json, png_dir, insts, things = cs_reference
    # A copy of the GT with SynthStreets' context.json next to it.
    root = tmp_path / "synth"
    (root / "gt").mkdir(parents=True)
    new_json = root / "gt" / "panoptic.json"
    new_json.write_text(gt_json.read_text())
    rng = np.random.default_rng(3)
    names = ["crossing", "parked", "sidewalk"]
    labels, lab_list = {}, []
    for inst in insts:
        image_id, sid = inst["key"]
        lab = None if rng.random() < 0.2 else names[int(rng.integers(0, 3))]
        if lab is not None:
            labels.setdefault(str(image_id), {})[str(sid)] = lab
        lab_list.append(lab)
    (root / "context.json").write_text(json.dumps(labels))  # in the GT JSON folder's parent
    vecs = rng.normal(size=(len(insts), 6)).astype(np.float32)
    pred = _dump(tmp_path, "p", insts, vecs)
    res = evaluate_context_error(pred, new_json, gt_dir=png_dir, k=5, workers=1)
    per, _ = ref_context_error(insts, list(vecs.astype(np.float64)), 5, cats=things, labels=lab_list)
    for c, ref in per.items():
        if ref["precision"] is None:
            assert res.per_class[c].precision is None
        else:
            assert res.per_class[c].precision == pytest.approx(ref["precision"])
    assert res.mean.precision is not None
    # Without context.json there is no precision.
    res2 = evaluate_context_error(pred, gt_json, gt_dir=png_dir, k=5, workers=1)
    assert res2.mean.precision is None and res2.mean.ce == pytest.approx(res.mean.ce)


def _cached_evaluation(cs_reference, tmp_path):
    """``(evaluate, first result, cache entries)``: one evaluation that filled a descriptor cache."""
    gt_json, png_dir, insts, _ = cs_reference
    vecs = np.random.default_rng(0).normal(size=(len(insts), 4)).astype(np.float32)
    pred = _dump(tmp_path, "p", insts, vecs)
    cache = tmp_path / "cache"

    def evaluate():
        return evaluate_context_error(pred, gt_json, gt_dir=png_dir, k=3, cache_dir=cache, workers=1)

    r1 = evaluate()
    return evaluate, r1, sorted(p for p in cache.rglob("*") if p.is_file())


def test_descriptor_cache_is_used_and_invalidated(cs_reference, tmp_path):
    evaluate, r1, files = _cached_evaluation(cs_reference, tmp_path)
    assert len(files) == 8 and all(f.suffix == ".desc" for f in files)
    good = {f: f.read_bytes() for f in files}
    # Corrupt every entry: they are ignored, recomputed and rewritten.
    for f in files:
        f.write_bytes(b"not a zip")
    assert evaluate() == r1
    assert {f: f.read_bytes() for f in files} == good
    assert evaluate() == r1


def _npy(header: str, payload: bytes = b"") -> bytes:
    h = header.encode("latin1")
    h += b" " * (-(10 + len(h) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + payload


def _npz(**members: bytes) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)
    return buf.getvalue()


def _swap_pairs(entries):
    data = [e.read_bytes() for e in entries]
    for e, d in zip(entries, data[1:] + data[:1]):
        e.write_bytes(d)


def _consistent_but_wrong_shapes(entries):
    from pss_bench.io.cache_entry import pack

    for e in entries:
        key = e.read_bytes()[40:72]
        e.write_bytes(pack(key, {"segment_ids": np.arange(3), "category_ids": np.zeros(3, np.int64),
                                 "areas": np.ones(3, np.int64), "boxes": np.zeros((3, 4), np.int64),
                                 "counts": np.zeros((2, 8, 5), np.int64), "region_areas": np.zeros((3, 8), np.int64)}))


@pytest.mark.parametrize("attack", [
    "swapped", "wrong shapes", "npz with a bad npy header", "npz with an absurd shape", "npz of the wrong shapes",
])
def test_bad_descriptor_cache_entries_are_dropped(cs_reference, tmp_path, caplog, attack):
    """Shuffled, malformed or inconsistent entries: a warning, the right numbers, valid entries again."""
    import logging

    evaluate, r1, entries = _cached_evaluation(cs_reference, tmp_path)
    good = {f: f.read_bytes() for f in entries}
    if attack == "swapped":
        _swap_pairs(entries)
    elif attack == "wrong shapes":
        _consistent_but_wrong_shapes(entries)
    else:
        header = {"npz with a bad npy header": "{'descr': '<i8', 'fortran_order': False, 'shape': (3, 8",
                  "npz with an absurd shape": "{'descr': '<i8', 'fortran_order': False, 'shape': (10000000, 8, 100000), }",
                  "npz of the wrong shapes": "{'descr': '<i8', 'fortran_order': False, 'shape': (7,), }"}[attack]
        blob = _npz(**{f: _npy(header, bytes(56)) for f in
                       ("segment_ids", "category_ids", "areas", "boxes", "counts", "region_areas")})
        for e in entries:
            e.write_bytes(blob)
    with caplog.at_level(logging.WARNING):
        assert evaluate() == r1
    assert caplog.text.count("ignoring Context Error cache entry") == len(entries)
    assert {f: f.read_bytes() for f in entries} == good


def test_pred_segments_are_matched_to_gt_instances(tmp_path):
    """pred-segments embeddings move to the GT instance they match (same class, IoU > 0.5)."""
    from pss_bench.io.prediction import PredictionWriter

    gt_json, _ = _grouped_contexts(tmp_path / "gt")
    gt = load_panoptic_json(gt_json)
    rng = np.random.default_rng(5)
    vec = {a.image_id: rng.normal(size=3) for a in gt.annotations}
    gt_dump = write_embeddings(tmp_path / "gtseg", {k: ([2], [v]) for k, v in vec.items()})
    with PredictionWriter(tmp_path / "predseg", "m") as w:
        w.manifest["embeddings"] = "pred-segments"
        for n, ann in enumerate(gt.annotations):
            ids = read_id_png(gt.png_path(ann)).astype(np.int64)
            pred = np.where(ids == 2, 50, np.where(ids == 1, 60, 0))
            if n == 0:  # this car is predicted far off: IoU 0, no match, not scored
                pred = np.where(pred == 50, 60, pred)
                pred[0:2, 0:2] = 50
            w.add_panoptic(ann.image_id, f"{ann.image_id}.png", pred,
                           [{"id": 50, "category_id": CAR}, {"id": 60, "category_id": ROAD}])
            w.add_embeddings(ann.image_id, np.array([50, 60]), np.stack([vec[ann.image_id], rng.normal(size=3)]))
        w.commit()
    res = evaluate_context_error(tmp_path / "predseg", gt_json, k=2, workers=1)
    assert res.per_class[CAR].queries == 7
    first = gt.annotations[0].image_id
    ref = write_embeddings(tmp_path / "gtseg7", {k: ([2], [v]) for k, v in vec.items() if k != first})
    expected = evaluate_context_error(ref, gt_json, k=2, workers=1)
    assert res == expected
    assert evaluate_context_error(gt_dump, gt_json, k=2, workers=1).per_class[CAR].queries == 8
    # An embedded id that is not a predicted segment is refused, naming the file.
    from pss_bench.errors import PredictionFormatError

    with open(tmp_path / "predseg" / "embeddings" / f"{first}.npz", "wb") as f:
        np.savez(f, segment_ids=np.array([99]), embeddings=np.ones((1, 3), np.float32))
    with pytest.raises(PredictionFormatError, match=rf"{first}\.npz: image '{first}', segment 99: not a segment of the predicted image"):
        evaluate_context_error(tmp_path / "predseg", gt_json, k=2, workers=1)
