"""Context Error figures: show-retrievals and context-map are written with the expected size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from context_error_helpers import reset_cli_debug, write_embeddings
from pss_bench.cli import main
from pss_bench.report.common import ImageFinder, context_window, crop_padded


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    reset_cli_debug(monkeypatch)


@pytest.fixture(scope="module")
def cs_pred(cityscapes_train_gt, tmp_path_factory):
    from pss_bench.io.panoptic import load_panoptic_json

    gt_json, png_dir = cityscapes_train_gt
    gt = load_panoptic_json(gt_json, png_dir)
    rng = np.random.default_rng(0)
    pred = write_embeddings(tmp_path_factory.mktemp("fig") / "pred",
                            {a.image_id: (a.segments.ids, rng.normal(size=(len(a.segments), 8))) for a in gt.annotations})
    cars = [(a.image_id, int(s)) for a in gt.annotations
            for s, c, crowd in zip(a.segments.ids, a.segments.category_ids, a.segments.iscrowd) if c == 26 and not crowd]
    return gt_json, png_dir, pred, cars


def test_crop_padded_and_window():
    arr = np.arange(12).reshape(3, 4)
    win = context_window((1, 1, 2, 1))  # x0=1, y0=1, w=2, h=1 -> x in [-1, 5), y in [0, 3)
    assert win == (-1, 0, 5, 3)
    out = crop_padded(arr, win, -1)
    assert out.shape == (3, 6)
    assert out[:, 0].tolist() == [-1, -1, -1] and out[:, 5].tolist() == [-1, -1, -1]
    assert np.array_equal(out[:, 1:5], arr)


def test_image_finder(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x1_leftImg8bit.png", "x10_leftImg8bit.png", "x1.jpg"):
        Image.new("RGB", (4, 2)).save(tmp_path / "a" / "b" / name)
    f = ImageFinder(tmp_path)
    assert f.find("x1").name == "x1.jpg"
    assert f.find("x10").name == "x10_leftImg8bit.png"
    assert f.find("x2") is None
    assert f.load("x1", (2, 4)).shape == (2, 4, 3)


def test_image_finder_uses_the_gt_file_names(tmp_path, caplog):
    """COCO names image 142238 '000000142238.jpg': no image-id prefix finds it, the GT's file_name does."""
    (tmp_path / "val2017").mkdir()
    Image.new("RGB", (4, 2)).save(tmp_path / "val2017" / "000000142238.jpg")
    Image.new("RGB", (4, 2)).save(tmp_path / "val2017" / "1422380.jpg")  # another id's prefix
    f = ImageFinder(tmp_path, {142238: "000000142238.jpg", 7: "000000000007.jpg"})
    assert f.find(142238).name == "000000142238.jpg"
    assert f.load(142238, (2, 4)).shape == (2, 4, 3)
    with caplog.at_level("WARNING", logger="pss_bench"):
        assert f.load(7, (2, 4)) is None
    assert any("000000000007.jpg" in m and "7" in m for m in caplog.messages)
    nested = ImageFinder(tmp_path, {142238: "val2017/000000142238.jpg"})
    assert nested.find(142238) == tmp_path / "val2017" / "000000142238.jpg"


def test_show_retrievals_real_frames(cs_pred, sample_data, tmp_path, capsys):
    from pss_bench.report.retrievals import figure_size_px

    gt_json, png_dir, pred, cars = cs_pred
    image_id, seg = cars[0]
    out = tmp_path / "ret.png"
    rc = main(["show-retrievals", str(pred), "--gt", str(gt_json), "--gt-dir", str(png_dir), "--images",
               str(sample_data / "cityscapes" / "leftImg8bit"), "--query", f"{image_id}:{seg}", "--k", "3",
               "--out", str(out), "--no-cache"])
    assert rc == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size in {figure_size_px(4, n) for n in range(1, 20)}  # 4 panels and a legend of 1-19 classes
        px = np.asarray(im.convert("RGB"))
    assert px.std() > 10  # not blank
    # Without images the semantic map is drawn; same size.
    out2 = tmp_path / "ret2.png"
    assert main(["show-retrievals", str(pred), "--gt", str(gt_json), "--gt-dir", str(png_dir),
                 "--query", f"{image_id}:{seg}", "--k", "2", "--out", str(out2), "--no-cache"]) == 0
    with Image.open(out2) as im:
        assert im.size in {figure_size_px(3, n) for n in range(1, 20)}


def test_show_retrievals_errors(cs_pred, tmp_path, capsys):
    gt_json, png_dir, pred, cars = cs_pred
    out = tmp_path / "ret.png"
    base = ["show-retrievals", str(pred), "--gt", str(gt_json), "--gt-dir", str(png_dir), "--out", str(out), "--no-cache"]
    assert main(base + ["--query", f"{cars[0][0]}:7"]) == 1  # road: a stuff segment
    assert "segment 7: not an instance with an embedding" in capsys.readouterr().err
    assert main(base + ["--query", "nocolon"]) == 2
    assert main(base + ["--query", f"{cars[0][0]}:x"]) == 2
    assert not out.exists()


def test_context_map_real_frames(cs_pred, tmp_path, capsys):
    from pss_bench.report.context_map import figure_size_px

    gt_json, png_dir, pred, cars = cs_pred
    out = tmp_path / "map.png"
    rc = main(["context-map", str(pred), "--gt", str(gt_json), "--gt-dir", str(png_dir), "--category", "car",
               "--out", str(out), "--max-thumbnails", "20", "--no-cache"])
    assert rc == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == figure_size_px()
        assert np.asarray(im.convert("RGB")).std() > 10
    assert main(["context-map", str(pred), "--gt", str(gt_json), "--gt-dir", str(png_dir), "--category", "road",
                 "--out", str(tmp_path / "x.png"), "--no-cache"]) == 1
    assert "is stuff" in capsys.readouterr().err
    assert main(["context-map", str(pred), "--gt", str(gt_json), "--gt-dir", str(png_dir), "--category", "zebra",
                 "--out", str(tmp_path / "x.png"), "--no-cache"]) == 1
    assert "no category 'zebra'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_context_map_color_by(cs_pred, tmp_path, capsys):
    """--color-by class draws; --color-by context needs SynthStreets' hidden labels, and says so."""
    gt_json, png_dir, pred, cars = cs_pred
    base = ["context-map", str(pred), "--gt", str(gt_json), "--gt-dir", str(png_dir), "--category", "car",
            "--max-thumbnails", "10", "--no-cache"]
    assert main([*base, "--out", str(tmp_path / "a.png"), "--color-by", "class"]) == 0
    assert main([*base, "--out", str(tmp_path / "b.png"), "--color-by", "context"]) == 1
    err = capsys.readouterr().err
    assert "no hidden context labels" in err and "--color-by class" in err
    assert not (tmp_path / "b.png").exists()
    assert main([*base, "--out", str(tmp_path / "c.png"), "--color-by", "rainbow"]) == 2
