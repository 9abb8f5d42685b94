"""``pss-bench prepare cityscapes|voc``: same output as the official converter, clear errors on bad input."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pss_bench.cli import main
from pss_bench.evaluation.pq import evaluate_pq
from pss_bench.io.panoptic import read_id_png


def _converter(gtfine, split, out):
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    out.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        convert2panoptic(cityscapesPath=str(gtfine), outputFolder=str(out), setNames=[split])


@pytest.mark.parametrize("split", ["val", "train"])
def test_prepare_cityscapes_equals_cityscapesscripts(sample_data, tmp_path, capsys, split):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    root = sample_data / "cityscapes"
    assert main(["prepare", "cityscapes", str(root), "--split", split, "--out", str(ours)]) == 0
    out = capsys.readouterr().out
    assert f"cityscapes_panoptic_{split}.json" in out
    _converter(root / "gtFine", split, theirs)
    name = f"cityscapes_panoptic_{split}"
    assert (ours / f"{name}.json").read_bytes() == (theirs / f"{name}.json").read_bytes()
    pngs = sorted(p.name for p in (theirs / name).iterdir())
    assert pngs and pngs == sorted(p.name for p in (ours / name).iterdir())
    for p in pngs:
        assert np.array_equal(read_id_png(ours / name / p), read_id_png(theirs / name / p))


def _tiny_cityscapes(root, split="train", ids=("town_000000_000001",), size=(16, 8), inst_mode="I;16"):
    """A minimal Cityscapes layout: one road + one car per frame."""
    for image_id in ids:
        city = image_id.split("_")[0]
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(
            root / "leftImg8bit" / split / city / f"{image_id}_leftImg8bit.png")
        inst = np.full((size[1], size[0]), 7, np.int32)
        inst[2:5, 3:9] = 26000
        p = root / "gtFine" / split / city / f"{image_id}_gtFine_instanceIds.png"
        if inst_mode == "I;16":
            Image.fromarray(inst.astype(np.uint16)).save(p)
        else:
            Image.fromarray(np.stack([inst.astype(np.uint8)] * 3, -1)).save(p)
    return root


def test_tiny_layout_converts_and_scores_pq_one(tmp_path):
    root = _tiny_cityscapes(tmp_path / "cs")
    assert main(["prepare", "cityscapes", str(root), "--split", "train"]) == 0
    j = root / "gtFine" / "cityscapes_panoptic_train.json"
    segs = json.loads(j.read_text())["annotations"][0]["segments_info"]
    assert {s["id"] for s in segs} == {7, 26000}
    res = evaluate_pq(j, j, pred_dir=root / "gtFine" / "cityscapes_panoptic_train", use_cache=False)
    assert res.row("All").pq == 1.0


def _break_missing_split(root):
    shutil.rmtree(root / "gtFine" / "train")
    return str(root / "gtFine" / "train")


def _break_empty_folder(root):
    for p in (root / "gtFine" / "train" / "town").iterdir():
        p.unlink()
    return str(root / "gtFine" / "train")


def _break_mismatched_names(root):
    src = root / "gtFine" / "train" / "town" / "town_000000_000001_gtFine_instanceIds.png"
    dst = src.with_name("town_000000_000002_gtFine_instanceIds.png")
    src.rename(dst)
    return "town_000000_000001_leftImg8bit.png"


def _break_wrong_size(root):
    p = root / "gtFine" / "train" / "town" / "town_000000_000001_gtFine_instanceIds.png"
    Image.fromarray(np.full((4, 4), 7, np.uint16)).save(p)
    return str(p)


def _break_wrong_mode(root):
    p = root / "gtFine" / "train" / "town" / "town_000000_000001_gtFine_instanceIds.png"
    Image.fromarray(np.full((8, 16, 3), 7, np.uint8)).save(p)
    return str(p)


def _break_unknown_label(root):
    p = root / "gtFine" / "train" / "town" / "town_000000_000001_gtFine_instanceIds.png"
    Image.fromarray(np.full((8, 16), 60000, np.uint16)).save(p)
    return str(p)


def _break_fifo_image(root):
    import os

    p = root / "leftImg8bit" / "train" / "town" / "town_000000_000001_leftImg8bit.png"
    p.unlink()
    os.mkfifo(p)  # would block a plain open() forever
    return "FIFO"


def _break_fifo_label(root):
    import os

    p = root / "gtFine" / "train" / "town" / "town_000000_000001_gtFine_instanceIds.png"
    p.unlink()
    os.mkfifo(p)
    return "FIFO"


@pytest.mark.parametrize("breaker", [_break_missing_split, _break_empty_folder, _break_mismatched_names,
                                     _break_wrong_size, _break_wrong_mode, _break_unknown_label,
                                     _break_fifo_image, _break_fifo_label])
def test_prepare_cityscapes_bad_input_one_line_naming_the_file(tmp_path, capsys, breaker):
    root = _tiny_cityscapes(tmp_path / "cs")
    needle = breaker(root)
    code = main(["prepare", "cityscapes", str(root), "--split", "train"])
    cap = capsys.readouterr()
    assert code == 1
    lines = [l for l in cap.err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), cap.err
    assert needle in lines[0]
    assert not (root / "gtFine" / "cityscapes_panoptic_train.json").exists()


def test_prepare_voc_writes_coco_panoptic_that_validates(sample_data, tmp_path, capsys):
    root = tmp_path / "voc"
    shutil.copytree(sample_data / "voc", root)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000063\n")
    assert main(["prepare", "voc", str(root), "--split", "val"]) == 0
    j = root / "panoptic_val.json"
    assert main(["validate", str(j)]) == 0
    d = json.loads(j.read_text())
    (ann,) = d["annotations"]
    obj = np.array(Image.open(root / "SegmentationObject" / "2007_000063.png"))
    pan = read_id_png(root / "panoptic_val" / ann["file_name"])
    assert len([s for s in ann["segments_info"] if s["category_id"] > 0]) == len(set(np.unique(obj).tolist()) - {0, 255})
    assert np.array_equal(pan == 0, obj == 255)
    assert d["images"][0]["file_name"] == "2007_000063.jpg"
    res = evaluate_pq(j, j, pred_dir=root / "panoptic_val", use_cache=False)
    assert res.row("All").pq == 1.0


def test_prepare_voc_missing_split_exit_1(sample_data, capsys):
    assert main(["prepare", "voc", str(sample_data / "voc"), "--split", "train"]) == 1
    assert "train.txt" in capsys.readouterr().err


def test_prepare_cityscapes_replaces_old_gt_and_leaves_no_temp_files(tmp_path):
    root = _tiny_cityscapes(tmp_path / "cs", ids=("town_000000_000001", "town_000000_000002"))
    stale = root / "gtFine" / "cityscapes_panoptic_train"
    stale.mkdir(parents=True)
    (stale / "old_gtFine_panoptic.png").write_bytes(b"x")
    assert main(["prepare", "cityscapes", str(root), "--split", "train"]) == 0
    assert sorted(p.name for p in stale.iterdir()) == [
        "town_000000_000001_gtFine_panoptic.png", "town_000000_000002_gtFine_panoptic.png"]
    assert sorted(p.name for p in (root / "gtFine").iterdir()) == [
        "cityscapes_panoptic_train", "cityscapes_panoptic_train.json", "train"]


def test_prepare_voc_bad_label_exit_1_and_no_output(sample_data, tmp_path, capsys):
    root = tmp_path / "voc"
    shutil.copytree(sample_data / "voc", root)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000063\n")
    p = root / "SegmentationObject" / "2007_000063.png"
    Image.open(p).crop((0, 0, 50, 40)).save(p)
    assert main(["prepare", "voc", str(root), "--split", "val"]) == 1
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(lines) == 1 and str(p) in lines[0]
    assert not (root / "panoptic_val.json").exists() and not (root / "panoptic_val").exists()
    assert not list(root.glob(".panoptic_val.*"))
