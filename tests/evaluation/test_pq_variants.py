"""``evaluate_pq(metrics=...)`` on the real samples: every metric against its reference, one decode pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prediction_helpers import perturbed_prediction
from pss_bench.evaluation.pq import evaluate_pq
from pss_bench.io.panoptic import load_panoptic_json, read_id_png
from pss_bench.metrics.pq import PanopticQuality
from variant_references import (
    pq_scores,
    ref_boundary_pq,
    ref_parsing_covering,
    ref_pq_area,
    ref_pq_dagger,
)


def _images(gt_json, gt_dir, pred_json, pred_dir):
    """``(gt_map, gt_segs, pred_map, pred_segs)`` per GT image, and the categories as dicts."""
    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    pred = load_panoptic_json(pred_json, pred_dir, role="prediction", categories=gt.categories)
    by_id = {a.image_id: a for a in pred.annotations}
    out = []
    for g in gt.annotations:
        p = by_id[g.image_id]
        gsegs = [{"id": int(i), "category_id": int(c), "iscrowd": int(k)}
                 for i, c, k in zip(g.segments.ids, g.segments.category_ids, g.segments.iscrowd)]
        psegs = [{"id": int(i), "category_id": int(c)} for i, c in zip(p.segments.ids, p.segments.category_ids)]
        out.append((read_id_png(gt.png_path(g)).astype(np.int64), gsegs,
                    read_id_png(pred.png_path(p)).astype(np.int64), psegs))
    cats = {c.id: {"isthing": int(c.isthing)} for c in gt.categories.values()}
    return out, cats, gt


def _check_pq_like(ours: dict, ref_stat: dict, cats: dict, tol=1e-9):
    ref = pq_scores(ref_stat, cats)
    for name in ("All", "Things", "Stuff"):
        if ref[name] is None:
            assert ours[name] is None, name
        else:
            assert ours[name]["n"] == ref[name][1] and ours[name]["pq"] == pytest.approx(ref[name][0], abs=tol), name
    for cid in cats:
        r = ours["per_class"][str(cid)]
        s = ref_stat.get(cid)
        assert (r["tp"], r["fp"], r["fn"]) == ((s.tp, s.fp, s.fn) if s else (0, 0, 0)), cid


def _check_all(result: dict, images, cats, ratio=0.02, normalize=True):
    _check_pq_like(result["boundary_pq"], ref_boundary_pq(images, cats, ratio), cats)
    assert result["boundary_pq"]["dilation_ratio"] == ratio
    dag = ref_pq_dagger(images, cats)
    for name in ("All", "Things", "Stuff"):
        if dag[name] is None:
            assert result["pq_dagger"][name] is None
        else:
            assert result["pq_dagger"][name]["n"] == dag[name][1]
            assert result["pq_dagger"][name]["pq"] == pytest.approx(dag[name][0], abs=1e-9)
    for cid in cats:
        assert result["pq_dagger"]["per_class"][str(cid)]["pq"] == pytest.approx(dag["per_class"][cid], abs=1e-9)
    pc = ref_parsing_covering(images, cats, normalize)
    assert result["pc"]["normalize_by_image_size"] is normalize
    assert result["pc"]["All"]["pc"] == pytest.approx(pc["pc"], abs=1e-9)
    for cid in cats:
        assert result["pc"]["per_class"][str(cid)]["pc"] == pytest.approx(pc["per_class"][cid], abs=1e-9)
    for name, st in zip(("small", "medium", "large"), ref_pq_area(images, cats)):
        _check_pq_like(result["pq_area"][name], st, cats)


def _coco_gts(sample_data: Path, tmp_path: Path):
    base = sample_data / "coco_panoptic"
    out = [(base / "panopticapi_sample/sample_data/panoptic_examples.json",
            base / "panopticapi_sample/sample_data/panoptic_examples")]
    cats = json.loads((base / "panopticapi_sample/panoptic_coco_categories.json").read_text())
    src = base / "mseg_sample/tests/test_data/COCOPanoptic_test_data/annotations/panoptic_val2017.json"
    obj = json.loads(src.read_text())
    obj["categories"] = cats
    dst = tmp_path / "mseg_val2017.json"
    dst.write_text(json.dumps(obj))
    out.append((dst, src.with_suffix("")))
    return out


def test_coco_samples_match_references(sample_data, tmp_path):
    for k, (gt_json, gt_dir) in enumerate(_coco_gts(sample_data, tmp_path)):
        pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path / f"p{k}", k, "mix")
        res = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, workers=1,
                          metrics="all")
        images, cats, _ = _images(gt_json, gt_dir, pred_json, pred_dir)
        d = res.to_dict()
        _check_all(d, images, cats)
        plain = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, workers=1)
        assert {key: d[key] for key in ("All", "Things", "Stuff", "per_class")} == plain.to_dict()


def test_cityscapes_val_frame_and_deeplab2_crowd_match_references(cityscapes_val_gt, sample_data, tmp_path):
    from cityscapesscripts.helpers.labels import labels

    gt_json, gt_dir = cityscapes_val_gt
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path / "cs", 5, "mix")
    res = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, metrics="all",
                      dilation_ratio=0.03, pc_normalize=False)
    images, cats, _ = _images(gt_json, gt_dir, pred_json, pred_dir)
    _check_all(res.to_dict(), images, cats, ratio=0.03, normalize=False)

    src = sample_data / "deeplab2/data/testdata/gtFine/cityscapes_panoptic_dummy_trainId.json"
    obj = json.loads(src.read_text())
    obj["categories"] = [
        {"id": l.trainId, "name": l.name, "isthing": int(l.hasInstances)} for l in labels if not l.ignoreInEval
    ]
    gt_json = tmp_path / "dummy.json"
    gt_json.write_text(json.dumps(obj))
    gt_dir = src.with_suffix("")
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path / "dl", 1, "mix")
    res = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, metrics="all")
    images, cats, _ = _images(gt_json, gt_dir, pred_json, pred_dir)
    assert any(s.get("iscrowd") for im in images for s in im[1])
    _check_all(res.to_dict(), images, cats)


def test_cityscapes_frames_engine_equals_streaming_and_cache(cityscapes_train_gt, tmp_path):
    """Full-size frames: forked workers, cold and warm GT cache (boundaries cached) equal the in-memory metric."""
    gt_json, gt_dir = cityscapes_train_gt
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path, 2, "mix")
    cache = tmp_path / "cache"
    kw = dict(gt_dir=gt_dir, pred_dir=pred_dir, metrics="all", cache_dir=cache, workers=2, processes=True)
    cold = evaluate_pq(pred_json, gt_json, **kw)
    entries = sorted(p.name for p in cache.rglob("*.runs"))
    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    assert len(entries) == 2 * len(gt.annotations)  # the runs and the boundary runs of every GT image
    warm = evaluate_pq(pred_json, gt_json, **kw)
    assert warm.to_dict() == cold.to_dict()

    images, cats, gt = _images(gt_json, gt_dir, pred_json, pred_dir)
    metric = PanopticQuality(list(gt.categories.values()), metrics="all")
    for g, gs, p, ps in images:
        metric.update(g, gs, p, ps)
    stream = metric.compute().to_dict()
    got = cold.to_dict()
    assert set(got) == set(stream)
    for key in ("boundary_pq", "pq_dagger", "pc", "pq_area"):
        _close(got[key], stream[key])
    b = got["boundary_pq"]["All"]
    assert b["pq"] < got["All"]["pq"]  # boundaries are stricter on shifted predictions


def _close(a, b, tol=1e-12) -> None:
    """Equal structures, floats within ``tol`` (the two paths sum IoUs in another order)."""
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            _close(a[k], b[k], tol)
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=tol)
    else:
        assert a == b


def test_bad_metric_and_ratio_are_refused(cityscapes_val_gt):
    from pss_bench.errors import PssBenchError

    gt_json, gt_dir = cityscapes_val_gt
    with pytest.raises(PssBenchError, match="unknown metric 'bq'"):
        evaluate_pq(gt_json, gt_json, gt_dir=gt_dir, pred_dir=gt_dir, metrics="pq,bq")
    with pytest.raises(PssBenchError, match="dilation ratio"):
        evaluate_pq(gt_json, gt_json, gt_dir=gt_dir, pred_dir=gt_dir, metrics="boundary-pq", dilation_ratio=-1)
