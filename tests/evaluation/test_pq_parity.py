"""PQ parity with cityscapesscripts' evaluator (panopticapi's algorithm) on real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pq_oracle import assert_same_as_oracle, oracle_pq
from prediction_helpers import perturbed_prediction
from pss_bench.evaluation.pq import evaluate_pq


@pytest.mark.parametrize("mode,seed", [("gt", 0), ("shift", 1), ("mix", 2), ("mix", 3)])
def test_cityscapes_train_frames_match_cityscapesscripts(cityscapes_train_gt, tmp_path, mode, seed):
    gt_json, gt_dir = cityscapes_train_gt
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path, seed, mode)
    ours = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, workers=2)
    assert_same_as_oracle(ours.to_dict(), oracle_pq(gt_json, gt_dir, pred_json, pred_dir))
    if mode == "gt":
        assert ours.all.pq == pytest.approx(1.0)


def test_cityscapes_val_frame_matches(cityscapes_val_gt, tmp_path):
    gt_json, gt_dir = cityscapes_val_gt
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path, 5, "mix")
    ours = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False)
    assert_same_as_oracle(ours.to_dict(), oracle_pq(gt_json, gt_dir, pred_json, pred_dir))


def _coco_gt(sample_data: Path, tmp_path: Path) -> list[tuple[Path, Path]]:
    """The panopticapi sample as is, and the mseg samples with the COCO category list."""
    base = sample_data / "coco_panoptic"
    out = [(base / "panopticapi_sample/sample_data/panoptic_examples.json",
            base / "panopticapi_sample/sample_data/panoptic_examples")]
    cats = json.loads((base / "panopticapi_sample/panoptic_coco_categories.json").read_text())
    for split in ("train2017", "val2017"):
        src = base / f"mseg_sample/tests/test_data/COCOPanoptic_test_data/annotations/panoptic_{split}.json"
        obj = json.loads(src.read_text())
        obj["categories"] = cats
        dst = tmp_path / f"mseg_{split}.json"
        dst.write_text(json.dumps(obj))
        out.append((dst, src.with_suffix("")))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_coco_samples_match_cityscapesscripts(sample_data, tmp_path, seed):
    for k, (gt_json, gt_dir) in enumerate(_coco_gt(sample_data, tmp_path)):
        pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path / f"p{k}", seed, "mix")
        ours = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False)
        assert_same_as_oracle(ours.to_dict(), oracle_pq(gt_json, gt_dir, pred_json, pred_dir))


def test_deeplab2_sample_with_crowd_matches(sample_data, tmp_path):
    """deeplab2's Cityscapes-format sample: train-id categories and a crowd segment."""
    from cityscapesscripts.helpers.labels import labels

    src = sample_data / "deeplab2/data/testdata/gtFine/cityscapes_panoptic_dummy_trainId.json"
    obj = json.loads(src.read_text())
    assert any(s["iscrowd"] for a in obj["annotations"] for s in a["segments_info"])
    obj["categories"] = [
        {"id": l.trainId, "name": l.name, "isthing": int(l.hasInstances)} for l in labels if not l.ignoreInEval
    ]
    gt_json = tmp_path / "dummy.json"
    gt_json.write_text(json.dumps(obj))
    gt_dir = src.with_suffix("")
    for seed in range(3):
        pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path / f"p{seed}", seed, "mix")
        ours = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False)
        assert_same_as_oracle(ours.to_dict(), oracle_pq(gt_json, gt_dir, pred_json, pred_dir))
