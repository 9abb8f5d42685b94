"""Converters: deeplab2 (semantic, instance) <-> COCO panoptic, COCO instances + semantic -> panoptic,
panoptic -> COCO detection / semantic PNGs, against panopticapi's and deeplab2's conventions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pq_oracle import assert_same_as_oracle, oracle_pq, write_dataset
from pss_bench.convert import files as cf
from pss_bench.convert.labels import (
    combine_instances_and_semantic,
    encode_rle,
    merge_panoptic_label,
    panoptic_to_detection,
    panoptic_to_semantic,
    panoptic_to_semantic_instance,
    semantic_instance_to_panoptic,
    split_panoptic_label,
)
from pss_bench.errors import FormatError, PssBenchError
from pss_bench.evaluation.pq import evaluate_pq
from pss_bench.io.panoptic import read_id_png


def _panopticapi(sample_data: Path) -> Path:
    return sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"


def _same_partition(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """The id bijection between two maps with the same segments (VOID to VOID); fails otherwise."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    assert len(set(pairs[0].tolist())) == pairs.shape[1] == len(set(pairs[1].tolist())), "partitions differ"
    mapping = dict(zip(pairs[0].tolist(), pairs[1].tolist()))
    assert mapping.get(0, 0) == 0
    return mapping


# --------------------------------------------------------------------------- deeplab2's own PQ test data

_CLASS_COLORS = {(0, 0, 0): 0, (0, 0, 255): 1, (255, 0, 0): 2, (0, 255, 0): 3, (255, 0, 255): 4,
                 (0, 255, 255): 5, (255, 255, 0): 6}
_DL2_CATEGORIES = [{"id": i, "name": n, "isthing": t} for i, n, t in
                   [(1, "person", 1), (2, "bear", 1), (3, "tree", 0), (4, "bird", 1), (5, "sky", 0), (6, "cat", 1)]]
_TEAM = {0: 0, 47: 1, 97: 1, 133: 1, 150: 1, 174: 1, 198: 2, 215: 1, 244: 1, 255: 1}
_BIRD = {92: 5, 176: 3, 255: 4}
_CAT = {0: 0, 255: 6}


def _dl2_class_png(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    out = np.full(rgb.shape[:2], -1, np.int64)
    for color, label in _CLASS_COLORS.items():
        out[(rgb == color).all(-1)] = label
    assert (out >= 0).all()
    return out


def _dl2_gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")).astype(np.int64)


def _dl2_pq(testdata: Path, tmp_path: Path, items) -> tuple:
    gts, preds = [], []
    for k, (gt_name, class_of_instance, pred_inst, pred_cls) in enumerate(items):
        gi = _dl2_gray(testdata / gt_name)
        gs = np.vectorize(class_of_instance.__getitem__)(gi)
        ids, segs = semantic_instance_to_panoptic(gs, gi, thing_ids=[1, 2, 4, 6], void_label=0, crowd_instance=None)
        gts.append((k, ids, segs))
        ids, segs = semantic_instance_to_panoptic(
            _dl2_class_png(testdata / pred_cls), _dl2_gray(testdata / pred_inst),
            thing_ids=[1, 2, 4, 6], void_label=0, crowd_instance=None,
        )
        preds.append((k, ids, [{"id": s["id"], "category_id": s["category_id"]} for s in segs]))
    gj, gd = write_dataset(tmp_path, "gt", gts, _DL2_CATEGORIES, with_area=True)
    pj, pd = write_dataset(tmp_path, "pred", preds, None, with_area=False)
    result = evaluate_pq(pj, gj, gt_dir=gd, pred_dir=pd, use_cache=False, workers=1)
    assert_same_as_oracle(result.to_dict(), oracle_pq(gj, gd, pj, pd))
    present = [c for c in result.per_class.values() if c.present]
    means = [float(np.mean([getattr(c, f) for c in present])) for f in ("tp", "fn", "fp")]
    return result.all, means


def test_deeplab2_single_image_numbers(sample_data, tmp_path):
    """deeplab2's panoptic_quality_test.test_streaming_metric_on_single_image, through our converter and pq."""
    testdata = sample_data / "deeplab2" / "evaluation" / "testdata"
    row, (tp, fn, fp) = _dl2_pq(testdata, tmp_path, [("team_gt_instance.png", _TEAM, "team_pred_instance.png",
                                                      "team_pred_class.png")])
    assert row.pq == pytest.approx(0.62156284, abs=1e-6)
    assert row.sq == pytest.approx(0.64664984, abs=1e-6)
    assert row.rq == pytest.approx(0.9666667, abs=1e-6)
    assert (tp, fn, fp) == (4.0, 0.5, 0.0)


def test_deeplab2_multiple_images_numbers(sample_data, tmp_path):
    """deeplab2's test_streaming_metric_on_multiple_images (all three label-map pairs)."""
    testdata = sample_data / "deeplab2" / "evaluation" / "testdata"
    row, (tp, fn, fp) = _dl2_pq(testdata, tmp_path, [
        ("bird_gt.png", _BIRD, "bird_pred_instance.png", "bird_pred_class.png"),
        ("cat_gt.png", _CAT, "cat_pred_instance.png", "cat_pred_class.png"),
        ("team_gt_instance.png", _TEAM, "team_pred_instance.png", "team_pred_class.png"),
    ])
    assert row.pq == pytest.approx(0.76855499, abs=1e-6)
    assert row.sq == pytest.approx(0.7769174, abs=1e-6)
    assert row.rq == pytest.approx(0.98888892, abs=1e-6)
    assert (tp, fp) == (2.0, 0.0)
    assert fn == pytest.approx(1 / 6)


def test_deeplab2_non_contiguous_ignore_label(tmp_path):
    """deeplab2's test_predicted_non_contiguous_ignore_label: VOID label 9, label divisor 256.

    deeplab2 expects PQ 2/9, SQ 1/3, RQ 2/9 because it treats GT label
    ``9 * 256 + 2`` as a *crowd instance of the ignored class* (not VOID: the
    prediction's pixels on it are not forgiven). COCO panoptic has no such
    segment; our converter makes every pixel of the VOID label VOID, so the
    class-0 prediction covering it matches (IoU 1) and the numbers are those
    of panopticapi on the converted maps: PQ 5/9, SQ 2/3, RQ 5/9 (docs/integrations/deeplab2.md).
    """
    gt = merge_panoptic_label([[0, 9, 9], [1, 2, 2], [1, 9, 9]], [[0, 2, 2], [1, 0, 0], [1, 0, 0]], 256)
    pred = merge_panoptic_label([[0, 0, 9], [1, 1, 1], [1, 9, 9]], [[0, 0, 0], [0, 1, 1], [0, 1, 1]], 256)
    cats = [{"id": i, "name": str(i), "isthing": 1} for i in (0, 1, 2)]
    g_ids, g_segs = semantic_instance_to_panoptic(*split_panoptic_label(gt, 256), thing_ids=[0, 1, 2], void_label=9,
                                                  crowd_instance=None)
    p_ids, p_segs = semantic_instance_to_panoptic(*split_panoptic_label(pred, 256), thing_ids=[0, 1, 2], void_label=9,
                                                  crowd_instance=None)
    gj, gd = write_dataset(tmp_path, "gt", [(1, g_ids, g_segs)], cats, with_area=True)
    pj, pd = write_dataset(tmp_path, "pred", [(1, p_ids, [{"id": s["id"], "category_id": s["category_id"]}
                                                          for s in p_segs])], None, with_area=False)
    r = evaluate_pq(pj, gj, gt_dir=gd, pred_dir=pd, use_cache=False, workers=1)
    assert_same_as_oracle(r.to_dict(), oracle_pq(gj, gd, pj, pd))
    assert (r.all.pq, r.all.sq, r.all.rq) == pytest.approx((5 / 9, 2 / 3, 5 / 9))
    assert [(c.tp, c.fp, c.fn) for c in r.per_class.values()] == [(1, 0, 0), (1, 1, 0), (0, 0, 1)]


# --------------------------------------------------------------------------- deeplab2 <-> COCO panoptic


def test_deeplab2_dummy_gt_to_semantic_instance_and_back(sample_data):
    """deeplab2's Cityscapes train-id panoptic sample (a crowd car): its label rules, then the round trip."""
    root = sample_data / "deeplab2" / "data" / "testdata" / "gtFine"
    ann = json.loads((root / "cityscapes_panoptic_dummy_trainId.json").read_text())["annotations"][0]
    ids = read_id_png(root / "cityscapes_panoptic_dummy_trainId" / ann["file_name"])
    segs = ann["segments_info"]
    things = list(range(11, 19))  # Cityscapes train ids of person .. bicycle
    sem, inst = panoptic_to_semantic_instance(ids, segs, thing_ids=things, void_label=255)
    for s in segs:
        m = ids == s["id"]
        assert (sem[m] == s["category_id"]).all()
        assert m.sum() == s["area"]
    cars = [s for s in segs if s["category_id"] == 13 and not s["iscrowd"]]
    assert [int(inst[ids == s["id"]][0]) for s in cars] == list(range(1, len(cars) + 1))  # 1, 2, ... in JSON order
    crowd = next(s for s in segs if s["iscrowd"])
    assert (inst[ids == crowd["id"]] == 0).all()
    assert (sem[ids == 0] == 255).all()
    # deeplab2's treat_crowd_as_ignore
    sem_void, _ = panoptic_to_semantic_instance(ids, segs, thing_ids=things, void_label=255, crowd_as_void=True)
    assert (sem_void[ids == crowd["id"]] == 255).all()
    # back to COCO: the same segments, crowd flag and areas
    back, back_segs = semantic_instance_to_panoptic(sem, inst, thing_ids=things, void_label=255, crowd_instance=0)
    mapping = _same_partition(ids, back)
    by_id = {s["id"]: s for s in back_segs}
    for s in segs:
        b = by_id[mapping[s["id"]]]
        assert (b["category_id"], b["iscrowd"], b["area"]) == (s["category_id"], s["iscrowd"], s["area"])


def test_panopticapi_two_channel_pngs_to_coco(sample_data, tmp_path):
    """panopticapi's 2-channel sample PNGs give its COCO panoptic sample: same segments, categories, areas."""
    s = _panopticapi(sample_data)
    n = cf.deeplab2_to_coco(s / "panoptic_examples_2ch_format", tmp_path / "pred.json", s / "panoptic_examples.json",
                            fmt="2ch", void_label=0, crowd_instance=None, images_json=s / "panoptic_examples.json")
    assert n == 2
    pred = json.loads((tmp_path / "pred.json").read_text())
    gt = json.loads((s / "panoptic_examples.json").read_text())
    gt_by_image = {a["image_id"]: a for a in gt["annotations"]}
    assert sorted(a["image_id"] for a in pred["annotations"]) == sorted(gt_by_image)  # integer ids from --images
    for pa in pred["annotations"]:
        ga = gt_by_image[pa["image_id"]]
        mapping = _same_partition(read_id_png(s / "panoptic_examples" / ga["file_name"]),
                                  read_id_png(tmp_path / "pred" / pa["file_name"]))
        ps = {x["id"]: x for x in pa["segments_info"]}
        for g in ga["segments_info"]:
            p = ps[mapping[g["id"]]]
            assert (p["category_id"], p["area"]) == (g["category_id"], g["area"])
    # and pq scores it as the GT itself
    r = evaluate_pq(tmp_path / "pred.json", s / "panoptic_examples.json", gt_dir=s / "panoptic_examples",
                    use_cache=False, workers=1)
    assert r.all.pq == pytest.approx(1.0)


@pytest.mark.parametrize("fmt", ["2ch", "3ch", "npy", "label"])
def test_coco_to_deeplab2_round_trip(sample_data, tmp_path, fmt):
    """COCO GT -> deeplab2 files -> COCO: identical segments, crowd flags and areas (every format)."""
    s = _panopticapi(sample_data)
    gt_json = s / "panoptic_examples.json"
    n = cf.coco_to_deeplab2(gt_json, tmp_path / "dl2", png_dir=s / "panoptic_examples", fmt=fmt,
                            label_divisor=256, void_label=0)
    assert n == 2 and len(list((tmp_path / "dl2").iterdir())) == 2
    cf.deeplab2_to_coco(tmp_path / "dl2", tmp_path / "back.json", gt_json, fmt=fmt, label_divisor=256, void_label=0,
                        crowd_instance=0, images_json=gt_json)
    back = {a["image_id"]: a for a in json.loads((tmp_path / "back.json").read_text())["annotations"]}
    for ga in json.loads(gt_json.read_text())["annotations"]:
        ba = back[ga["image_id"]]
        mapping = _same_partition(read_id_png(s / "panoptic_examples" / ga["file_name"]),
                                  read_id_png(tmp_path / "back" / ba["file_name"]))
        bs = {x["id"]: x for x in ba["segments_info"]}
        for g in ga["segments_info"]:
            b = bs[mapping[g["id"]]]
            assert (b["category_id"], b["iscrowd"], b["area"]) == (g["category_id"], g["iscrowd"], g["area"])


def test_deeplab2_label_map_round_trip():
    """Cityscapes-style train ids <-> label ids through a label map; instance ids come back renumbered 1..k."""
    rng = np.random.default_rng(0)
    sem = rng.choice([0, 1, 11, 13, 255], size=(40, 50))
    inst = np.where(np.isin(sem, [11, 13]), rng.choice([3, 7, 9], size=sem.shape), 0)
    to_cat = {0: 7, 1: 8, 11: 24, 13: 26}
    ids, segs = semantic_instance_to_panoptic(sem, inst, thing_ids=[24, 26], void_label=255, label_to_category=to_cat,
                                              category_ids=[7, 8, 24, 26])
    assert sorted({s["category_id"] for s in segs}) == [7, 8, 24, 26]
    assert (ids == 0).sum() == (sem == 255).sum()
    sem2, inst2 = panoptic_to_semantic_instance(ids, segs, thing_ids=[24, 26], void_label=255,
                                                category_to_label={v: k for k, v in to_cat.items()})
    assert (sem2 == sem).all()
    for cls in (11, 13):  # instances 3, 7, 9 -> 1, 2, 3 (ascending, as segments are ordered)
        m = sem == cls
        assert np.array_equal(np.unique(inst2[m]), [1, 2, 3])
        assert (np.searchsorted([3, 7, 9], inst[m]) + 1 == inst2[m]).all()
    assert (inst2[~np.isin(sem, [11, 13])] == 0).all()


def test_semantic_instance_errors():
    with pytest.raises(FormatError, match="unknown category ids \\[5\\]"):
        semantic_instance_to_panoptic(np.array([[1, 5]]), np.zeros((1, 2)), thing_ids=[1], category_ids=[1])
    with pytest.raises(FormatError, match="instance ids must lie"):
        semantic_instance_to_panoptic(np.array([[1, 1]]), np.array([[0, -1]]), thing_ids=[1])
    with pytest.raises(FormatError, match="stuff category 2 cannot be crowd"):
        panoptic_to_semantic_instance(np.array([[1]]), [{"id": 1, "category_id": 2, "iscrowd": 1}], thing_ids=[1],
                                      void_label=255)
    with pytest.raises(FormatError, match="segment 7: in the id map"):
        panoptic_to_semantic_instance(np.array([[7]]), [], thing_ids=[1], void_label=255)
    with pytest.raises(FormatError, match="does not fit a 16-bit PNG"):
        cf.write_deeplab2(Path("unused.png"), np.array([[70]]), np.array([[0]]), "label", 1000)


# --------------------------------------------------------------------------- panoptic -> detection / semantic


def test_panoptic_to_detection_equals_panopticapi_sample(sample_data, tmp_path):
    """Our RLE detection JSON equals the one panopticapi's converter wrote for its sample, field by field."""
    s = _panopticapi(sample_data)
    n = cf.coco_to_detection(s / "panoptic_examples.json", tmp_path / "det.json", png_dir=s / "panoptic_examples")
    ours = json.loads((tmp_path / "det.json").read_text())
    ref = json.loads((s / "panoptic_coco_detection_format.json").read_text())
    assert n == len(ref["annotations"]) == 50
    assert ours == ref


def test_panoptic_to_detection_things_only(sample_data, tmp_path):
    s = _panopticapi(sample_data)
    cf.coco_to_detection(s / "panoptic_examples.json", tmp_path / "det.json", png_dir=s / "panoptic_examples",
                         things_only=True)
    ours = json.loads((tmp_path / "det.json").read_text())
    things = {c["id"] for c in json.loads((s / "panoptic_examples.json").read_text())["categories"] if c["isthing"]}
    assert ours["annotations"] and {a["category_id"] for a in ours["annotations"]} <= things
    assert {c["id"] for c in ours["categories"]} == things
    assert [a["id"] for a in ours["annotations"]] == list(range(len(ours["annotations"])))


def test_semantic_pngs(sample_data, tmp_path):
    s = _panopticapi(sample_data)
    cf.coco_to_semantic_pngs(s / "panoptic_examples.json", tmp_path / "sem", png_dir=s / "panoptic_examples")
    cf.coco_to_semantic_pngs(s / "panoptic_examples.json", tmp_path / "other", png_dir=s / "panoptic_examples",
                             things_other=True)
    gt = json.loads((s / "panoptic_examples.json").read_text())
    things = {c["id"] for c in gt["categories"] if c["isthing"]}
    for ann in gt["annotations"]:
        ids = read_id_png(s / "panoptic_examples" / ann["file_name"])
        sem = np.asarray(Image.open(tmp_path / "sem" / ann["file_name"]))
        other = np.asarray(Image.open(tmp_path / "other" / ann["file_name"]))
        assert sem.dtype == np.uint8
        assert (sem[ids == 0] == 0).all()
        for seg in ann["segments_info"]:
            m = ids == seg["id"]
            assert (sem[m] == seg["category_id"]).all()
            assert (other[m] == (183 if seg["category_id"] in things else seg["category_id"])).all()


# --------------------------------------------------------------------------- combine


def _mask_rle(mask):
    return encode_rle(np.asarray(mask, bool))


def test_combine_rules_on_constructed_masks():
    """Score threshold, score order, overlap threshold, free pixels only, stuff area limit, thing regions ignored."""
    h, w = 10, 10
    big = np.zeros((h, w), bool); big[:, :6] = True                 # 60 px, score 0.9
    over = np.zeros((h, w), bool); over[:, 2:8] = True              # 60 px, 40 on big: 0.67 > 0.5 -> dropped
    side = np.zeros((h, w), bool); side[:, 5:9] = True              # 40 px, 10 on big: 0.25 -> kept, 30 free
    low = np.zeros((h, w), bool); low[:, 9:] = True                 # score 0.3 < 0.5 -> dropped
    instances = [
        {"category_id": 2, "score": 0.8, "segmentation": _mask_rle(side)},
        {"category_id": 1, "score": 0.9, "segmentation": _mask_rle(big)},
        {"category_id": 1, "score": 0.85, "segmentation": _mask_rle(over)},
        {"category_id": 1, "score": 0.3, "segmentation": _mask_rle(low)},
        {"category_id": 1, "score": 0.95, "segmentation": _mask_rle(np.zeros((h, w), bool))},  # empty: skipped
    ]
    sky = np.zeros((h, w), bool); sky[:, 8:] = True                  # 20 px, 10 free after side
    road = np.ones((h, w), bool)                                     # 0 free px left? no: col 9 is free (10 px)
    ids, segs = combine_instances_and_semantic(
        h, w, instances, [(1, road), (50, sky), (51, road)], stuff_ids=[50, 51], stuff_area_limit=10,
    )
    assert [(s["category_id"], s["area"]) for s in segs] == [(1, 60), (2, 30), (50, 10)]
    assert (ids[:, :6] == 1).all() and (ids[:, 6:9] == 2).all() and (ids[:, 9] == 3).all()
    # the limit drops a stuff region with fewer free pixels; a lower confidence threshold keeps "low"
    _, segs = combine_instances_and_semantic(h, w, instances, [(50, sky)], stuff_ids=[50], stuff_area_limit=11)
    assert [s["category_id"] for s in segs] == [1, 2]
    _, segs = combine_instances_and_semantic(h, w, instances, [], stuff_ids=[], confidence_thr=0.2)
    assert [(s["category_id"], s["area"]) for s in segs] == [(1, 60), (2, 30), (1, 10)]
    # a looser overlap threshold keeps "over" (its free pixels only), which then covers 30 of side's 40 px
    _, segs = combine_instances_and_semantic(h, w, instances, [], stuff_ids=[], overlap_thr=0.7)
    assert [(s["category_id"], s["area"]) for s in segs] == [(1, 60), (1, 20)]


def test_combine_round_trip_on_coco_sample(sample_data, tmp_path):
    """GT things as instance results (RLE) + GT stuff as semantic PNGs -> combine -> the GT again (PQ 1)."""
    s = _panopticapi(sample_data)
    gt_json = s / "panoptic_examples.json"
    cf.coco_to_detection(gt_json, tmp_path / "things.json", png_dir=s / "panoptic_examples", things_only=True)
    cf.coco_to_semantic_pngs(gt_json, tmp_path / "sem", png_dir=s / "panoptic_examples")
    dets = json.loads((tmp_path / "things.json").read_text())["annotations"]
    for i, d in enumerate(dets):  # distinct scores, larger segments first
        d["score"] = 0.5 + d["area"] / 1e6
    (tmp_path / "results.json").write_text(json.dumps(dets))
    n = cf.combine_to_coco(tmp_path / "results.json", tmp_path / "sem", gt_json, gt_json, tmp_path / "pan.json",
                           stuff_area_limit=0)
    assert n == 2
    gt = {a["image_id"]: a for a in json.loads(gt_json.read_text())["annotations"]}
    for pa in json.loads((tmp_path / "pan.json").read_text())["annotations"]:
        ga = gt[pa["image_id"]]
        mapping = _same_partition(read_id_png(s / "panoptic_examples" / ga["file_name"]),
                                  read_id_png(tmp_path / "pan" / pa["file_name"]))
        ps = {x["id"]: x for x in pa["segments_info"]}
        assert all(ps[mapping[g["id"]]]["category_id"] == g["category_id"] for g in ga["segments_info"])
    r = evaluate_pq(tmp_path / "pan.json", gt_json, gt_dir=s / "panoptic_examples", use_cache=False, workers=1)
    assert r.all.pq == pytest.approx(1.0)
    # the semantic input as panopticapi's RLE JSON gives the same PNGs
    sem_regions = [a for a in json.loads((tmp_path / "things.json").read_text())["annotations"]]
    cf.coco_to_detection(gt_json, tmp_path / "all.json", png_dir=s / "panoptic_examples")
    stuff = [a for a in json.loads((tmp_path / "all.json").read_text())["annotations"] if a not in sem_regions]
    (tmp_path / "sem.json").write_text(json.dumps(stuff))
    cf.combine_to_coco(tmp_path / "results.json", tmp_path / "sem.json", gt_json, gt_json, tmp_path / "pan2.json",
                       stuff_area_limit=0)
    for f in (tmp_path / "pan").iterdir():
        assert np.array_equal(read_id_png(f), read_id_png(tmp_path / "pan2" / f.name))


def test_combine_combined_prediction_scores_like_pq_oracle(sample_data, tmp_path):
    """A noisy Mask R-CNN-like input (shifted masks, a spurious low-score box) is scored by pq as the oracle does."""
    s = _panopticapi(sample_data)
    gt_json = s / "panoptic_examples.json"
    cf.coco_to_detection(gt_json, tmp_path / "things.json", png_dir=s / "panoptic_examples", things_only=True)
    cf.coco_to_semantic_pngs(gt_json, tmp_path / "sem", png_dir=s / "panoptic_examples")
    from pss_bench.convert.labels import decode_rle

    images = {im["id"]: im for im in json.loads(gt_json.read_text())["images"]}
    dets = []
    for i, d in enumerate(json.loads((tmp_path / "things.json").read_text())["annotations"]):
        im = images[d["image_id"]]
        m = decode_rle(d["segmentation"], im["height"], im["width"], "test")
        m = np.roll(m, (i % 5) - 2, axis=1)
        dets.append({"image_id": d["image_id"], "category_id": d["category_id"], "score": 0.3 + 0.01 * i,
                     "segmentation": encode_rle(m)})
    (tmp_path / "results.json").write_text(json.dumps(dets))
    cf.combine_to_coco(tmp_path / "results.json", tmp_path / "sem", gt_json, gt_json, tmp_path / "pan.json")
    ours = evaluate_pq(tmp_path / "pan.json", gt_json, gt_dir=s / "panoptic_examples", use_cache=False, workers=1)
    assert_same_as_oracle(ours.to_dict(), oracle_pq(gt_json, s / "panoptic_examples", tmp_path / "pan.json",
                                                    tmp_path / "pan"))
    assert 0 < ours.all.pq < 1


def test_panoptic_to_detection_and_semantic_functions():
    ids = np.array([[1, 1, 2], [0, 2, 2]])
    segs = [{"id": 1, "category_id": 5, "iscrowd": 0}, {"id": 2, "category_id": 9, "iscrowd": 1, "area": 3}]
    det = panoptic_to_detection(ids, segs, image_id=7)
    assert [(d["image_id"], d["category_id"], d["iscrowd"]) for d in det] == [(7, 5, 0), (7, 9, 1)]
    assert det[1]["segmentation"]["size"] == [2, 3] and "id" not in det[0]
    assert panoptic_to_semantic(ids, segs).tolist() == [[5, 5, 9], [0, 9, 9]]
    assert panoptic_to_semantic(ids, segs, things_other=[9]).tolist() == [[5, 5, 183], [0, 183, 183]]
    with pytest.raises(FormatError, match="8-bit"):
        panoptic_to_semantic(ids, [{"id": 1, "category_id": 300}, {"id": 2, "category_id": 1}])


def test_outputs_are_not_left_half_written(sample_data, tmp_path):
    """A bad input file in the middle leaves neither the PNG folder nor the JSON behind."""
    s = _panopticapi(sample_data)
    src = tmp_path / "src"
    src.mkdir()
    for f in (s / "panoptic_examples_2ch_format").iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    Image.fromarray(np.full((4, 4, 3), 250, np.uint8)).save(src / "zzz_bad.png")  # semantic 250: unknown category
    with pytest.raises(FormatError, match="zzz_bad.png: unknown category ids \\[250\\]"):
        cf.deeplab2_to_coco(src, tmp_path / "out.json", s / "panoptic_examples.json", fmt="2ch", void_label=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    cf.deeplab2_to_coco(s / "panoptic_examples_2ch_format", tmp_path / "out.json", s / "panoptic_examples.json",
                        void_label=0)
    with pytest.raises(PssBenchError, match="already exists"):
        cf.deeplab2_to_coco(s / "panoptic_examples_2ch_format", tmp_path / "out.json", s / "panoptic_examples.json",
                            void_label=0)


@pytest.mark.usefixtures("no_hang")  # a FIFO read would block forever
def test_inputs_are_read_through_the_safe_readers(tmp_path):
    """A FIFO input is refused, a pickled .npy is refused, an absurd declared shape is refused before allocating."""
    import os

    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(FormatError, match="fifo.png: .*FIFO"):
        cf.read_deeplab2_prediction(tmp_path / "fifo.png", "2ch", 1000)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match="objects.npy"):
        cf.read_deeplab2_prediction(tmp_path / "objects.npy", "npy", 1000)
    header = np.lib.format
    with open(tmp_path / "huge.npy", "wb") as f:
        header.write_array_header_1_0(f, {"descr": "<i4", "fortran_order": False, "shape": (10**6, 10**6, 2)})
    with pytest.raises(FormatError, match="huge.npy"):
        cf.read_deeplab2_prediction(tmp_path / "huge.npy", "npy", 1000)
    with pytest.raises(FormatError, match="missing.npy: file not found"):
        cf.read_deeplab2_prediction(tmp_path / "missing.npy", "npy", 1000)


def test_output_folders_follow_the_umask_and_replace_atomically(sample_data, tmp_path):
    """PNG folders are staged and published by io.atomic: the umask's mode (not mkdtemp's 0o700), no leftovers."""
    import os
    import stat

    s = _panopticapi(sample_data)
    old = os.umask(0o022)
    try:
        cf.deeplab2_to_coco(s / "panoptic_examples_2ch_format", tmp_path / "out.json", s / "panoptic_examples.json",
                            void_label=0)
        first = {p.name for p in (tmp_path / "out").iterdir()}
        cf.deeplab2_to_coco(s / "panoptic_examples_2ch_format", tmp_path / "out.json", s / "panoptic_examples.json",
                            void_label=0, overwrite=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert {p.name for p in (tmp_path / "out").iterdir()} == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.json"]
