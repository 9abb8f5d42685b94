"""``pss-bench embed``: pooling dense feature maps over GT segments."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from context_error_helpers import reset_cli_debug, write_tiny_gt
from pss_bench.cli import main
from pss_bench.io.embeddings import load_embeddings, read_manifest
from pss_bench.io.panoptic import load_panoptic_json, read_id_png
from pss_bench.metrics.context_error import pool_features


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    reset_cli_debug(monkeypatch)


def _brute(features, seg, n):
    up = torch.nn.functional.interpolate(torch.from_numpy(features)[None].double(), size=seg.shape,
                                         mode="bilinear", align_corners=False)[0].numpy()
    return np.stack([up[:, seg == i + 1].mean(axis=1) if (seg == i + 1).any() else np.zeros(features.shape[0])
                     for i in range(n)])


@pytest.mark.parametrize("h, w, H, W", [(4, 5, 16, 20), (7, 3, 13, 29), (10, 12, 5, 7), (6, 6, 6, 6), (1, 1, 3, 4)])
def test_pool_features_equals_upsample_then_mean(h, w, H, W):
    rng = np.random.default_rng(h * 100 + W)
    feats = rng.normal(size=(5, h, w)).astype(np.float32)
    seg = rng.integers(0, 5, size=(H, W))
    seg[seg == 3] = 0  # segment 3 absent: a zero row, area 0
    means, area = pool_features(feats, seg, 4)
    assert means.shape == (4, 5) and means.dtype == np.float32
    assert area.tolist() == [int((seg == i + 1).sum()) for i in range(4)]
    assert np.allclose(means, _brute(feats, seg, 4), atol=1e-5)
    assert not means[2].any()


def test_embed_real_frames_then_context_error(cityscapes_train_gt, tmp_path, capsys):
    gt_json, png_dir = cityscapes_train_gt
    gt = load_panoptic_json(gt_json, png_dir)
    feats_dir = tmp_path / "feats"
    feats_dir.mkdir()
    rng = np.random.default_rng(0)
    feats = {}
    for ann in gt.annotations:
        feats[ann.image_id] = rng.normal(size=(4, 32, 64)).astype(np.float16)
        np.save(feats_dir / f"{ann.image_id}.npy", feats[ann.image_id])
    out = tmp_path / "pred"
    assert main(["embed", str(feats_dir), "--gt", str(gt_json), "--gt-dir", str(png_dir), "--out", str(out),
                 "--model", "toy"]) == 0
    manifest = read_manifest(out)
    assert manifest["model"] == "toy" and manifest["embeddings"] == "gt-segments"
    _, emb = load_embeddings(out, [a.image_id for a in gt.annotations])
    ann = gt.annotations[0]
    e = emb[ann.image_id]
    assert sorted(e.segment_ids.tolist()) == sorted(ann.segments.ids.tolist())
    ids = read_id_png(gt.png_path(ann)).astype(np.int64)
    seg = np.zeros(ids.shape, np.int64)
    for i, s in enumerate(e.segment_ids):
        seg[ids == s] = i + 1
    ref = _brute(feats[ann.image_id].astype(np.float32), seg, len(e.segment_ids))
    assert np.allclose(e.embeddings, ref, atol=1e-5)
    # The manifest names the GT: context-error needs no --gt.
    assert main(["context-error", str(out), "--json", "-", "--no-cache", "--k", "3"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mean"]["queries"] > 50


def test_embed_missing_feature_map_writes_nothing(tmp_path, capsys):
    ids = np.ones((8, 8), np.uint32)
    ids[2:5, 2:5] = 2
    segs = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0}]
    cats = [{"id": 1, "name": "road", "isthing": 0}, {"id": 2, "name": "car", "isthing": 1}]
    gt_json, _ = write_tiny_gt(tmp_path, {"a": (ids, segs), "b": (ids, segs)}, cats)
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "a.npy", np.ones((3, 2, 2), np.float32))
    out = tmp_path / "pred"
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 1
    assert "b.npy: image 'b': feature map not found" in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred")]
    np.save(feats / "b.npy", np.full((3, 2, 2), np.nan, np.float32))
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 1
    assert "b.npy: image 'b': feature map holds NaN" in capsys.readouterr().err
    np.save(feats / "b.npy", np.ones((2, 2), np.float32))
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 1
    assert "expected a D x h x w float array" in capsys.readouterr().err
    np.save(feats / "b.npy", np.ones((3, 4, 4), np.float32))
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 0
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 2  # exists, no --overwrite
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out), "--overwrite"]) == 0


def _two_image_gt(tmp_path, shape=(8, 16)):
    ids = np.ones(shape, np.uint32)
    ids[2:5, 2:5] = 2
    ids[4:7, 9:13] = 3
    segs = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0},
            {"id": 3, "category_id": 2, "iscrowd": 0}]
    cats = [{"id": 1, "name": "road", "isthing": 0}, {"id": 2, "name": "car", "isthing": 1}]
    gt_json, _ = write_tiny_gt(tmp_path, {"a": (ids, segs), "b": (ids, segs)}, cats)
    feats = tmp_path / "feats"
    feats.mkdir()
    return gt_json, feats


def test_embed_refuses_channels_last_feature_maps(tmp_path, capsys):
    """(h, w, D) read as (D, h, w) would pool the wrong axis: the aspect ratio gives it away."""
    gt_json, feats = _two_image_gt(tmp_path)  # 8 x 16 images
    for image_id in ("a", "b"):
        np.save(feats / f"{image_id}.npy", np.ones((4, 8, 5), np.float32))  # h=4, w=8, D=5, channels last
    out = tmp_path / "pred"
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "a.npy: image 'a'" in err and "channels-last" in err and "4 x 8 x 5" in err
    assert not out.exists()
    np.save(feats / "a.npy", np.ones((32, 8, 4), np.float32))  # D, w, h: the spatial axes swapped
    np.save(feats / "b.npy", np.ones((32, 8, 4), np.float32))
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 1
    assert "swapped" in capsys.readouterr().err
    # a map one stride cell off the image's aspect ratio (ceil at stride 3) is fine
    for image_id in ("a", "b"):
        np.save(feats / f"{image_id}.npy", np.ones((5, 3, 6), np.float32))
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 0


def test_embed_refuses_feature_dimensions_that_differ_between_images(tmp_path, capsys):
    gt_json, feats = _two_image_gt(tmp_path)
    np.save(feats / "a.npy", np.ones((5, 4, 8), np.float32))
    np.save(feats / "b.npy", np.ones((6, 4, 8), np.float32))
    out = tmp_path / "pred"
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "b.npy: image 'b'" in err and "6 channels" in err and "a.npy" in err and "5" in err
    assert not out.exists()


def test_embed_overwrite_replaces_only_a_prediction_directory(tmp_path, capsys):
    gt_json, feats = _two_image_gt(tmp_path)
    for image_id in ("a", "b"):
        np.save(feats / f"{image_id}.npy", np.ones((5, 4, 8), np.float32))
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("years of work")
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(thesis), "--overwrite"]) == 1
    assert "not a pss-bench prediction directory" in capsys.readouterr().err
    assert (thesis / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats", "gt", "gt.json", "thesis"]
    # a file is refused too (a usage error); an empty folder and an earlier prediction directory are replaced
    (tmp_path / "file").write_text("x")
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(tmp_path / "file"), "--overwrite"]) == 2
    assert (tmp_path / "file").read_text() == "x"
    (tmp_path / "empty").mkdir()
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(tmp_path / "empty"), "--overwrite"]) == 0
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(tmp_path / "empty"), "--overwrite"]) == 0
    assert (tmp_path / "empty" / "manifest.json").is_file()


def test_prediction_writer_refuses_to_replace_a_foreign_folder(tmp_path):
    from pss_bench.errors import PssBenchError
    from pss_bench.io.prediction import PredictionWriter

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(PssBenchError, match="not a pss-bench prediction directory"):
        PredictionWriter(mine, model="m", overwrite=True)
    (mine / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(PssBenchError, match="not a pss-bench prediction directory"):
        PredictionWriter(mine, model="m", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def _embeddings(out, image_id="a"):
    emb = load_embeddings(out, [image_id])[1][image_id]
    return dict(zip(emb.segment_ids.tolist(), emb.embeddings))


def test_embed_accepts_fixed_size_model_maps(tmp_path, capsys):
    """Issue 23 item 7: a 4 x 20 x 30 map of a 360 x 640 image (a model that resized to a fixed input) is pooled."""
    gt_json, feats = _two_image_gt(tmp_path, shape=(360, 640))
    rng = np.random.default_rng(0)
    maps = {i: rng.normal(size=(4, 20, 30)).astype(np.float32) for i in ("a", "b")}
    for image_id, m in maps.items():
        np.save(feats / f"{image_id}.npy", m)
    out = tmp_path / "pred"
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(out)]) == 0, capsys.readouterr().err
    seg = read_id_png(tmp_path / "gt" / "a.png")
    got = _embeddings(out)
    want = _brute(maps["a"], seg, 3)
    assert np.allclose(np.stack([got[i] for i in (1, 2, 3)]), want, atol=1e-5)


def test_embed_vit_square_maps_and_channels_last_with_layout(tmp_path, capsys):
    """A ViT's D x 37 x 37 map is accepted; the same map channels-last is refused unless --layout hwd."""
    gt_json, feats = _two_image_gt(tmp_path, shape=(90, 160))
    rng = np.random.default_rng(1)
    maps = {i: rng.normal(size=(384, 37, 37)).astype(np.float32) for i in ("a", "b")}
    for image_id, m in maps.items():
        np.save(feats / f"{image_id}.npy", m)
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(tmp_path / "dhw")]) == 0
    for image_id, m in maps.items():
        np.save(feats / f"{image_id}.npy", m.transpose(1, 2, 0))  # 37 x 37 x 384
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "channels-last" in err and "--layout hwd" in err and not (tmp_path / "bad").exists()
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(tmp_path / "hwd"), "--layout", "hwd"]) == 0
    a, b = _embeddings(tmp_path / "dhw"), _embeddings(tmp_path / "hwd")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_embed_refuses_ambiguous_maps_unless_layout_is_given(tmp_path, capsys):
    gt_json, feats = _two_image_gt(tmp_path)  # 8 x 16: D x h x w = 50 x 10 x 11 is barely closer than 50 x 11 x 10
    for image_id in ("a", "b"):
        np.save(feats / f"{image_id}.npy", np.ones((50, 10, 11), np.float32))
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert "not clearly the closest" in err and "--layout dhw|hwd" in err
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(tmp_path / "p"), "--layout", "dhw"]) == 0


def test_embed_takes_gt_from_the_features_manifest(tmp_path, capsys):
    """Issue 23 item 8: like pq and context-error, --gt defaults to 'gt_json' in FEATURES_DIR/manifest.json."""
    gt_json, feats = _two_image_gt(tmp_path)
    for image_id in ("a", "b"):
        np.save(feats / f"{image_id}.npy", np.ones((5, 4, 8), np.float32))
    assert main(["embed", str(feats), "--out", str(tmp_path / "p")]) == 2
    assert "missing --gt GT_JSON" in capsys.readouterr().err
    (feats / "manifest.json").write_text(json.dumps({"gt_json": str(gt_json)}))
    assert main(["embed", str(feats), "--out", str(tmp_path / "p")]) == 0
    assert read_manifest(tmp_path / "p")["gt_json"] == str(gt_json.resolve())


def test_embed_feature_maps_named_by_file_stem_get_a_hint(tmp_path, capsys):
    """Issue 23 item 10: a.npy expected, a_leftImg8bit.npy found: the message names it."""
    gt_json, feats = _two_image_gt(tmp_path)
    for image_id in ("a", "b"):
        np.save(feats / f"{image_id}_leftImg8bit.npy", np.ones((5, 4, 8), np.float32))
    assert main(["embed", str(feats), "--gt", str(gt_json), "--out", str(tmp_path / "p")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "feature map not found, but a_leftImg8bit.npy is there" in err
