"""``pss-bench convert``: exit codes, one-line errors, outputs that pq reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pss_bench.cli import main


def _panopticapi(sample_data):
    return sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"


def test_from_deeplab2_then_pq(sample_data, tmp_path, capsys):
    s = _panopticapi(sample_data)
    out = tmp_path / "pred.json"
    rc = main(["convert", "from-deeplab2", str(s / "panoptic_examples_2ch_format"), str(out),
               "--categories", str(s / "panoptic_examples.json"), "--void-label", "0", "--crowd-instance", "none",
               "--images", str(s / "panoptic_examples.json")])
    assert rc == 0
    assert capsys.readouterr().out == ""  # stdout carries results only
    rc = main(["pq", str(out), "--gt", str(s / "panoptic_examples.json"), "--gt-dir", str(s / "panoptic_examples"),
               "--json", "-", "--no-cache"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["All"]["pq"] == pytest.approx(1.0)


def test_to_deeplab2_to_detection_to_semantic_and_combine(sample_data, tmp_path):
    s = _panopticapi(sample_data)
    gt, gt_dir = s / "panoptic_examples.json", s / "panoptic_examples"
    assert main(["convert", "to-deeplab2", str(gt), str(tmp_path / "dl2"), "--png-dir", str(gt_dir),
                 "--format", "label", "--label-divisor", "256", "--void-label", "0"]) == 0
    assert len(list((tmp_path / "dl2").glob("*.png"))) == 2
    assert main(["convert", "to-detection", str(gt), str(tmp_path / "det.json"), "--png-dir", str(gt_dir),
                 "--things-only"]) == 0
    assert main(["convert", "to-semantic", str(gt), str(tmp_path / "sem"), "--png-dir", str(gt_dir)]) == 0
    dets = json.loads((tmp_path / "det.json").read_text())["annotations"]
    (tmp_path / "res.json").write_text(json.dumps([dict(d, score=1.0) for d in dets]))
    assert main(["convert", "combine", str(tmp_path / "pan.json"), "--instances", str(tmp_path / "res.json"),
                 "--semantic", str(tmp_path / "sem"), "--images", str(gt), "--categories", str(gt),
                 "--stuff-area-limit", "0"]) == 0
    assert len(json.loads((tmp_path / "pan.json").read_text())["annotations"]) == 2


def test_data_error_is_one_line_exit_1(sample_data, tmp_path, capsys):
    s = _panopticapi(sample_data)
    rc = main(["convert", "from-deeplab2", str(s / "panoptic_examples_2ch_format"), str(tmp_path / "p.json"),
               "--categories", str(s / "panoptic_examples.json"), "--void-label", "255"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "unknown category ids [0]" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_usage_errors_exit_2(tmp_path):
    assert main(["convert", "from-deeplab2", str(tmp_path), str(tmp_path / "p.json")]) == 2  # --categories missing
    assert main(["convert", "to-deeplab2", str(tmp_path / "missing.json"), str(tmp_path / "out")]) == 2
    assert main(["convert", "from-deeplab2", str(tmp_path), str(tmp_path / "p.json"), "--categories",
                 str(tmp_path), "--crowd-instance", "x"]) == 2


def test_convert_help_imports_nothing_heavy():
    """The convert command module loads its converters lazily (``pss-bench --help`` stays light)."""
    code = ("import sys, pss_bench.cli.convert; "
            "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'pycocotools', 'matplotlib', 'sklearn', 'faiss') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("fmt", ["2ch", "3ch", "npy", "label"])
def test_deeplab2_round_trip_on_cityscapes_with_the_defaults(cityscapes_val_gt, tmp_path, capsys, fmt):
    """Issue 23 items 3-4: GT -> raw -> back with default options scores PQ 1 (files are named *_gtFine_panoptic)."""
    gt_json, gt_dir = cityscapes_val_gt
    raw, back = tmp_path / "raw", tmp_path / "back.json"
    assert main(["convert", "to-deeplab2", str(gt_json), str(raw), "--png-dir", str(gt_dir), "--format", fmt]) == 0
    assert main(["convert", "from-deeplab2", str(raw), str(back), "--categories", str(gt_json),
                 "--images", str(gt_json), "--format", fmt]) == 0, capsys.readouterr().err
    gt = json.loads(gt_json.read_text())
    assert sorted(a["image_id"] for a in json.loads(back.read_text())["annotations"]) == sorted(
        im["id"] for im in gt["images"])
    capsys.readouterr()
    assert main(["pq", str(back), "--gt", str(gt_json), "--gt-dir", str(gt_dir), "--json", "-", "--no-cache"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["All"]["pq"] == pytest.approx(1.0) and res["Things"]["n"] > 0


def test_to_deeplab2_label_overflow_names_the_output_file_and_the_options(cityscapes_val_gt, tmp_path, capsys):
    gt_json, gt_dir = cityscapes_val_gt
    rc = main(["convert", "to-deeplab2", str(gt_json), str(tmp_path / "raw_label"), "--png-dir", str(gt_dir),
               "--format", "label", "--void-label", "255"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'raw_label'}/frankfurt_000000_000294_gtFine_panoptic.png: label 255000" in err
    assert "--void-label" in err and "--label-divisor" in err and ".tmp" not in err
    assert not (tmp_path / "raw_label").exists()
