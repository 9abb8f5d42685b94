"""UPSNet adapter: official-format outputs made from the real Cityscapes frames."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from pq_oracle import write_dataset
from pss_bench.baselines.upsnet.adapter import (
    cityscapes_category_map,
    coco_category_map,
    convert_upsnet_results,
    upsnet_png_name,
)
from pss_bench.cli import main
from pss_bench.errors import FormatError, PredictionFormatError
from pss_bench.evaluation.pq import evaluate_pq
from pss_bench.io.panoptic import load_panoptic_json, read_id_png
from upsnet_helpers import perturbed, write_official


@pytest.fixture()
def official(cityscapes_train_gt, tmp_path):
    full_json, gt_dir = cityscapes_train_gt
    obj = json.loads(full_json.read_text())  # 3 of the 8 real frames keep the tests quick
    obj["images"], obj["annotations"] = obj["images"][:3], obj["annotations"][:3]
    gt_json = tmp_path / "cityscapes_panoptic_sub.json"
    gt_json.write_text(json.dumps(obj))
    (tmp_path / "cityscapes_panoptic_sub").symlink_to(gt_dir, target_is_directory=True)
    gt_dir = tmp_path / "cityscapes_panoptic_sub"
    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    preds = perturbed(gt, 0)
    expected_json, _ = write_dataset(tmp_path / "expected", "pred", preds, None, with_area=False)
    expected = evaluate_pq(expected_json, gt_json, gt_dir=gt_dir, use_cache=False).to_dict()
    return gt_json, gt_dir, preds, expected, tmp_path


@pytest.mark.parametrize("variant", ["pan+pred.json", "pan_2ch only"])
def test_official_outputs_convert_to_the_expected_pq(official, variant):
    gt_json, gt_dir, preds, expected, tmp = official
    results = tmp / "results"
    write_official(results, gt_json, preds, with_pan=(variant == "pan+pred.json"))
    out = convert_upsnet_results(results, gt_json, "cityscapes", tmp / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "pss-bench-predictions"
    pan = json.loads((out / "panoptic.json").read_text())
    gt_ids = [a["image_id"] for a in json.loads(gt_json.read_text())["annotations"]]
    assert [a["image_id"] for a in pan["annotations"]] == gt_ids
    assert evaluate_pq(out, gt_json, gt_dir=gt_dir, use_cache=False).to_dict() == expected


def test_cli_end_to_end(official, capsys):
    gt_json, gt_dir, preds, expected, tmp = official
    write_official(tmp / "results", gt_json, preds)
    assert main(["import-upsnet", str(tmp / "results"), "--gt", str(gt_json), "--dataset", "cityscapes",
                 "--out", str(tmp / "out")]) == 0
    assert main(["pq", str(tmp / "out"), "--json", "-", "--no-cache"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["All"] == expected["All"]


def test_pickle_that_runs_code_is_refused(official):
    gt_json, gt_dir, preds, expected, tmp = official
    write_official(tmp / "results", gt_json, preds, with_pkl=False)
    marker = tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp / "results" / "results_list.pkl", "wb") as f:
        pickle.dump({"all_panos": [Evil()]}, f, protocol=2)
    with pytest.raises(FormatError, match="refused to load"):
        convert_upsnet_results(tmp / "results", gt_json, "cityscapes", tmp / "out")
    assert not marker.exists()
    assert not (tmp / "out").exists()


def test_wrong_order_or_count_is_caught(official):
    gt_json, gt_dir, preds, expected, tmp = official
    n = len(preds)
    write_official(tmp / "r1", gt_json, preds, order=list(range(n))[::-1], with_pkl=False)
    with pytest.raises(PredictionFormatError, match="GT JSON's image order"):
        convert_upsnet_results(tmp / "r1", gt_json, "cityscapes", tmp / "o1")
    write_official(tmp / "r2", gt_json, preds, order=list(range(n - 1)), with_pkl=False)
    with pytest.raises(PredictionFormatError, match=f"{n - 1} entries but the GT"):
        convert_upsnet_results(tmp / "r2", gt_json, "cityscapes", tmp / "o2")
    write_official(tmp / "r3", gt_json, preds, with_pan=False, order=list(range(n - 1)))
    with pytest.raises(FormatError, match=f"all_panos holds {n - 1} images"):
        convert_upsnet_results(tmp / "r3", gt_json, "cityscapes", tmp / "o3")
    for k in (1, 2, 3):
        assert not (tmp / f"o{k}").exists()


def test_missing_result_png_names_the_file(official):
    gt_json, gt_dir, preds, expected, tmp = official
    write_official(tmp / "results", gt_json, preds, with_pan=False, with_pkl=False)
    victim = sorted((tmp / "results" / "pans_unified" / "pan_2ch").iterdir())[1]
    victim.unlink()
    with pytest.raises(FormatError, match=victim.name):
        convert_upsnet_results(tmp / "results", gt_json, "cityscapes", tmp / "out")


def test_category_maps_come_from_the_label_tables(sample_data):
    from cityscapesscripts.helpers.labels import trainId2label

    cmap = cityscapes_category_map()
    assert sorted(cmap) == list(range(19))
    assert [cmap[t] for t in range(19)] == [trainId2label[t].id for t in range(19)]
    gt = load_panoptic_json(sample_data / "coco_panoptic/panopticapi_sample/sample_data/panoptic_examples.json",
                            role="gt")
    coco = coco_category_map(gt)
    assert len(coco) == 133
    assert all(not gt.categories[coco[i]].isthing for i in range(53))
    assert all(gt.categories[coco[i]].isthing for i in range(53, 133))
    assert coco[53] == 1  # the first thing: person


def test_features_are_pooled_into_gt_segment_embeddings(official):
    from pss_bench.io.embeddings import load_embeddings

    gt_json, gt_dir, preds, expected, tmp = official
    write_official(tmp / "results", gt_json, preds, with_pkl=False)
    feats_dir = tmp / "feats"
    feats_dir.mkdir()
    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    rng = np.random.default_rng(0)
    images = json.loads(gt_json.read_text())["images"]
    for im in images:
        stem = upsnet_png_name(im["file_name"])[:-4]
        np.save(feats_dir / f"{stem}.npy", rng.normal(size=(8, 256, 512)).astype(np.float32))  # stride 4
    out = convert_upsnet_results(tmp / "results", gt_json, "cityscapes", tmp / "out", features_dir=feats_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["embeddings"] == "gt-segments"
    _, embs = load_embeddings(out, [a.image_id for a in gt.annotations])
    first = gt.annotations[0]
    e = embs[first.image_id]
    assert set(e.segment_ids.tolist()) == set(first.segments.ids.tolist())
    # the pooled mean of a constant-per-channel map is that constant: check linearity on one segment
    f0 = np.load(feats_dir / f"{upsnet_png_name(images[0]['file_name'])[:-4]}.npy")
    import torch
    up = torch.nn.functional.interpolate(torch.from_numpy(f0)[None], size=(1024, 2048), mode="bilinear",
                                         align_corners=False)[0].numpy()
    ids = read_id_png(gt.png_path(first))
    sid = int(first.segments.ids[0])
    k = list(e.segment_ids).index(sid)
    np.testing.assert_allclose(e.embeddings[k], up[:, ids == sid].mean(axis=1), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- hostile inputs (issue 13)


@pytest.fixture()
def tiny_official(tmp_path):
    """A two-image GT with the Cityscapes categories and its official-format UPSNet outputs."""
    from cityscapesscripts.helpers.labels import labels

    from context_error_helpers import write_tiny_gt

    cats = [{"id": l.id, "name": l.name, "isthing": int(l.hasInstances)}
            for l in labels if not l.ignoreInEval and 0 <= l.trainId < 255]
    ids = np.full((12, 16), 7, np.uint32)
    ids[2:6, 2:6] = 26001
    segs = [{"id": 7, "category_id": 7, "iscrowd": 0}, {"id": 26001, "category_id": 26, "iscrowd": 0}]
    gt_json, _ = write_tiny_gt(tmp_path, {"a": (ids, segs), "b": (ids, segs)}, cats)
    preds = [(i, ids.astype(np.int64), [{"id": 7, "category_id": 7}, {"id": 26001, "category_id": 26}])
             for i in ("a", "b")]
    results = tmp_path / "results"
    write_official(results, gt_json, preds, with_pkl=False)
    return gt_json, results, tmp_path


def _edit(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


@pytest.mark.parametrize("category_map, needle", [
    ([7, 26], "expected an object"),
    ({"x": 7}, "not an internal category id"),
    ({"1" * 5000: 7}, "not an internal category id"),
    ({"0": [7]}, "not a GT category"),
    ({"0": {"id": 7}}, "not a GT category"),
])
def test_hostile_category_map_is_one_line(tiny_official, category_map, needle, capsys):
    gt_json, results, tmp = tiny_official
    cm = tmp / "map.json"
    cm.write_text(json.dumps(category_map))
    code = main(["import-upsnet", str(results), "--gt", str(gt_json), "--dataset", "cityscapes",
                 "--out", str(tmp / "out"), "--category-map", str(cm)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "map.json" in err and needle in err
    assert not (tmp / "out").exists()


def _entry_not_object(o):
    o["annotations"][0]["segments_info"][0] = [1]


def _segment_id_missing(o):
    o["annotations"][0]["segments_info"][0]["id"] = None


def _segment_id_text(o):
    o["annotations"][0]["segments_info"][0]["id"] = "x"


def _category_a_list(o):
    o["annotations"][0]["segments_info"][0]["category_id"] = [1]


@pytest.mark.parametrize("breaker, needle", [
    (_entry_not_object, "has no integer 'id'"),
    (_segment_id_missing, "has no integer 'id'"),
    (_segment_id_text, "has no integer 'id'"),
    (_category_a_list, "not an UPSNet category"),
])
def test_hostile_pred_json_entries_are_one_line(tiny_official, breaker, needle):
    gt_json, results, tmp = tiny_official
    _edit(results / "pans_unified" / "pred.json", breaker)
    with pytest.raises(PredictionFormatError, match=needle):
        convert_upsnet_results(results, gt_json, "cityscapes", tmp / "out")
    assert not (tmp / "out").exists()


@pytest.mark.parametrize("breaker, needle", [
    (lambda o: o["images"].__setitem__(0, [1]), r"images\[0\] has no 'id'"),
    (lambda o: o["images"][0].update(id=[1]), r"images\[0\] has no 'id'"),
    (lambda o: o["images"][0].update(file_name=5), "'file_name' must be a string"),
])
def test_hostile_gt_images_are_one_line(tiny_official, breaker, needle):
    gt_json, results, tmp = tiny_official
    _edit(gt_json, breaker)
    with pytest.raises(FormatError, match=needle):
        convert_upsnet_results(results, gt_json, "cityscapes", tmp / "out")


def test_a_fifo_named_pred_json_is_refused(tiny_official):
    gt_json, results, tmp = tiny_official
    (results / "pans_unified" / "pred.json").unlink()
    os.mkfifo(results / "pans_unified" / "pred.json")
    with pytest.raises(PredictionFormatError, match="FIFO"):
        convert_upsnet_results(results, gt_json, "cityscapes", tmp / "out")
