"""``pss-bench pq`` and ``validate`` end to end: exit codes, output, JSON schema."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from pq_oracle import assert_same_as_oracle, oracle_pq, write_dataset
from pss_bench.cli import main
from pss_bench.io.prediction import PredictionWriter

CATS = [{"id": 1, "name": "person", "isthing": 1}, {"id": 10, "name": "road", "isthing": 0},
        {"id": 11, "name": "sky", "isthing": 0}]


@pytest.fixture()
def ds(tmp_path):
    ids = np.full((10, 12), 10, np.int64)
    ids[:3] = 11
    ids[4:8, 2:6] = 1001
    segs = [{"id": 10, "category_id": 10}, {"id": 11, "category_id": 11}, {"id": 1001, "category_id": 1}]
    gt_json, gt_dir = write_dataset(tmp_path, "gt", [("a", ids, segs), ("b", ids, segs)],
                                    CATS, with_area=True)
    pred = np.roll(ids, 1, axis=0)
    pred_dir = tmp_path / "preddir"
    with PredictionWriter(pred_dir, model="test", gt_json=str(gt_json)) as w:
        for image_id in ("a", "b"):
            w.add_panoptic(image_id, f"{image_id}.png", pred, segs)
        w.commit()
    return tmp_path, gt_json, gt_dir, pred_dir


def test_table_on_stdout_and_json_schema(ds, capsys):
    tmp, gt_json, gt_dir, pred_dir = ds
    out = tmp / "r.json"
    assert main(["pq", str(pred_dir), "--gt", str(gt_json), "--json", str(out), "--no-cache"]) == 0
    cap = capsys.readouterr()
    assert "All" in cap.out and "Things" in cap.out and "person" in cap.out
    res = json.loads(out.read_text())
    assert set(res) == {"All", "Things", "Stuff", "per_class", "bootstrap"}
    assert res["bootstrap"] is None  # no --bootstrap
    for row in ("All", "Things", "Stuff"):
        assert set(res[row]) == {"pq", "sq", "rq", "n"}
    assert set(res["per_class"]) == {"1", "10", "11"}
    for v in res["per_class"].values():
        assert set(v) == {"pq", "sq", "rq", "tp", "fp", "fn", "iou"}
    assert_same_as_oracle(res, oracle_pq(gt_json, gt_dir, pred_dir / "panoptic.json", pred_dir / "panoptic"))
    # the table shows percentages with one decimal
    assert f"{100 * res['All']['pq']:.1f}" in cap.out


def test_json_dash_prints_only_json(ds, capsys):
    tmp, gt_json, gt_dir, pred_dir = ds
    assert main(["pq", str(pred_dir / "panoptic.json"), "--gt", str(gt_json),
                 "--pred-dir", str(pred_dir / "panoptic"), "--json", "-", "--no-cache"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["All"]["n"] == 3


def test_gt_defaults_to_manifest(ds, capsys):
    tmp, gt_json, gt_dir, pred_dir = ds
    assert main(["pq", str(pred_dir), "--json", "-", "--cache-dir", str(tmp / "c")]) == 0
    assert json.loads(capsys.readouterr().out)["All"]["n"] == 3
    assert list((tmp / "c").rglob("*.runs"))


def test_usage_errors_exit_2(ds, capsys):
    tmp, gt_json, gt_dir, pred_dir = ds
    (pred_dir / "manifest.json").unlink()
    assert main(["pq", str(pred_dir)]) == 2
    assert "--gt" in capsys.readouterr().err
    assert main(["pq", str(pred_dir), "--gt", str(gt_json), "--no-cache", "--cache-dir", str(tmp)]) == 2
    assert main(["pq", str(tmp / "nope.json"), "--gt", str(gt_json)]) == 2
    assert main(["pq", str(pred_dir), "--gt", str(gt_json), "--workers", "0"]) == 2


def test_empty_row_is_null_with_warning(tmp_path, capsys):
    ids = np.full((4, 4), 10, np.int64)
    segs = [{"id": 10, "category_id": 10}]
    gt_json, _ = write_dataset(tmp_path, "gt", [("a", ids, segs)], CATS, with_area=True)
    pred_json, _ = write_dataset(tmp_path, "pred", [("a", ids, segs)], None, with_area=False)
    out = tmp_path / "r.json"
    assert main(["pq", str(pred_json), "--gt", str(gt_json), "--json", str(out), "--no-cache"]) == 0
    res = json.loads(out.read_text())
    assert res["Things"] is None and res["Stuff"]["pq"] == 1.0
    assert "Things row is null" in capsys.readouterr().err


def test_validate_clean_and_broken(ds, capsys):
    tmp, gt_json, gt_dir, pred_dir = ds
    assert main(["validate", str(gt_json)]) == 0
    assert "OK" in capsys.readouterr().out
    obj = json.loads(gt_json.read_text())
    obj["annotations"][0]["segments_info"][2]["area"] = 3  # wrong area
    obj["annotations"][1]["segments_info"].append({"id": 0, "category_id": 10, "area": 1, "iscrowd": 0})
    obj["annotations"][1]["segments_info"].append({"id": 4242, "category_id": 10, "area": 1, "iscrowd": 0})
    gt_json.write_text(json.dumps(obj))
    assert main(["validate", str(gt_json)]) == 1
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    assert len(lines) == 3, cap.out
    assert any("segment 1001" in l and "area 3" in l for l in lines)
    assert "segment 0" in cap.out and "segment 4242" in cap.out and "in the JSON but not in the PNG" in cap.out
    assert "3 problem(s)" in cap.err


def _mseg_val(sample_data):
    root = sample_data / "coco_panoptic" / "mseg_sample" / "tests" / "test_data"
    return root / "COCOPanoptic_test_data" / "annotations" / "panoptic_val2017.json", root


@pytest.mark.parametrize("how", ["coco", "file"])
def test_gt_without_categories_scored_with_categories_option(sample_data, capsys, how):
    """Issue 23 item 5: mseg's COCO GT has no 'categories'; --categories coco|FILE scores it (GT vs itself: PQ 1)."""
    gt, root = _mseg_val(sample_data)
    cats = "coco" if how == "coco" else str(root / "coco_panoptic_categories.json")
    assert main(["pq", str(gt), "--gt", str(gt), "--categories", cats, "--json", "-", "--no-cache"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["All"]["pq"] == pytest.approx(1.0) and res["Things"]["n"] > 0 and res["Stuff"]["n"] > 0
    assert main(["validate", str(gt), "--categories", cats]) == 0
    assert capsys.readouterr().out.startswith("OK:")


def test_gt_without_categories_error_names_the_option(sample_data, capsys):
    gt, _ = _mseg_val(sample_data)
    for argv in (["pq", str(gt), "--gt", str(gt), "--no-cache"], ["validate", str(gt)]):
        assert main(argv) == 1
        cap = capsys.readouterr()
        assert "--categories FILE|cityscapes|coco" in cap.out + cap.err


def test_categories_option_bad_value_is_a_usage_error(ds, capsys):
    tmp, gt_json, _, pred_dir = ds
    assert main(["pq", str(pred_dir), "--gt", str(gt_json), "--categories", "nope"]) == 2
    assert "expected a JSON file, 'cityscapes' or 'coco'" in capsys.readouterr().err


def test_builtin_coco_categories_equal_panopticapi_sample(sample_data):
    from pss_bench.data.coco import coco_panoptic_categories

    sample = json.loads((sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"
                         / "panoptic_examples.json").read_text())["categories"]
    assert [(c.id, c.name, c.isthing) for c in coco_panoptic_categories().values()] == [
        (c["id"], c["name"], bool(c["isthing"])) for c in sample]


def test_builtin_cityscapes_categories_equal_the_converters(cityscapes_val_gt):
    from pss_bench.data.cityscapes import cityscapes_categories

    cats = json.loads(cityscapes_val_gt[0].read_text())["categories"]
    assert [(c.id, c.name, c.isthing) for c in cityscapes_categories().values()] == [
        (c["id"], c["name"], bool(c["isthing"])) for c in cats]


def test_pq_table_shows_present_classes_unless_all_classes(sample_data, capsys):
    """Issue 23 item 11: COCO's 133 classes for 2 images: only the present ones, --all-classes for the rest."""
    s = sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"
    gt = s / "panoptic_examples.json"
    args = ["pq", str(gt), "--gt", str(gt), "--pred-dir", str(s / "panoptic_examples"), "--no-cache"]
    present = {a_s["category_id"] for a in json.loads(gt.read_text())["annotations"] for a_s in a["segments_info"]}
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.search(r"\(\d+\)", line)]
    assert len(rows) == len(present) < 133
    assert f"{133 - len(present)} classes with no GT or predicted segment not shown" in " ".join(out.split())
    assert main([*args, "--all-classes"]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if re.search(r"\(\d+\)", line)]) == 133
    assert "not shown" not in out and " - " not in out
