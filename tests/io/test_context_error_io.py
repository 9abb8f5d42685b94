"""Embeddings in a prediction directory: the writer, the reader, and bad dumps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from context_error_helpers import write_embeddings, write_tiny_gt
from pss_bench.errors import PredictionFormatError, UnsafePathError
from pss_bench.evaluation.instances import load_instances
from pss_bench.io.embeddings import load_embeddings, read_manifest
from pss_bench.io.prediction import PredictionWriter

CATS = [{"id": 1, "name": "road", "isthing": 0}, {"id": 2, "name": "car", "isthing": 1}]
SEGS = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0}]


@pytest.fixture
def tiny(tmp_path):
    images = {}
    for name in ("a", "b"):
        ids = np.ones((4, 4), np.uint32)
        ids[1:3, 1:3] = 2
        images[name] = (ids, SEGS)
    gt_json, _ = write_tiny_gt(tmp_path, images, CATS)
    pred = write_embeddings(tmp_path / "pred", {"a": ([2], [[1.0, 0.0]]), "b": ([1, 2], [[0.0, 1.0], [1.0, 1.0]])})
    return gt_json, pred


def test_writer_roundtrip(tmp_path):
    emb16 = np.array([[1, 2], [3, 4]], np.float16)
    with PredictionWriter(tmp_path / "out", "m") as w:
        w.add_embeddings("x", np.array([5, 6]), emb16)
        w.add_embeddings(7, np.array([1]), np.array([[0.5, 0.25]]))
        w.commit()
    manifest = read_manifest(tmp_path / "out")
    assert manifest["embeddings"] == "gt-segments" and manifest["version"] == 1
    _, got = load_embeddings(tmp_path / "out", ["x", 7, "missing"])
    assert got["x"].segment_ids.dtype == np.int64 and got["x"].segment_ids.tolist() == [5, 6]
    assert np.load(tmp_path / "out" / "embeddings" / "x.npz")["embeddings"].dtype == np.float16
    assert np.array_equal(got["x"].embeddings, emb16.astype(np.float32))
    assert got[7].embeddings.dtype == np.float32
    assert "missing" not in got


def test_writer_refuses_bad_input(tmp_path):
    with PredictionWriter(tmp_path / "out", "m") as w:
        with pytest.raises(UnsafePathError):
            w.add_embeddings("../evil", np.array([1]), np.ones((1, 2)))
        with pytest.raises(ValueError, match="NaN"):
            w.add_embeddings("a", np.array([1]), np.array([[np.nan, 1.0]]))
        with pytest.raises(ValueError, match="repeated"):
            w.add_embeddings("a", np.array([1, 1]), np.ones((2, 2)))
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone too


def _rewrite(pred, image_id, **arrays):
    path = pred / "embeddings" / f"{image_id}.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _manifest(pred, **changes):
    m = json.loads((pred / "manifest.json").read_text())
    m.update(changes)
    (pred / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize(
    "breakage, match",
    [
        (lambda p: (p / "manifest.json").unlink(), r"manifest\.json: manifest not found"),
        (lambda p: _manifest(p, version=2), r"manifest\.json: unsupported version 2"),
        (lambda p: _manifest(p, format="other"), r"manifest\.json: 'format' must be"),
        (lambda p: _manifest(p, embeddings="pixels"), r"manifest\.json: 'embeddings' must be one of"),
        (lambda p: _manifest(p, embeddings="pred-segments"), r"a\.npz: image 'a' has embeddings but no entry in .*panoptic\.json"),
        (lambda p: _manifest(p, embeddings=None), r"manifest\.json: 'embeddings' must say whose segments"),
        (lambda p: (p / "manifest.json").write_text("{"), r"manifest\.json: malformed or truncated JSON"),
        (lambda p: _rewrite(p, "a", segment_ids=np.array([99]), embeddings=np.ones((1, 2), np.float32)),
         r"a\.npz: image 'a', segment 99: not a segment of the GT image"),
        (lambda p: _rewrite(p, "a", segment_ids=np.array([2]), embeddings=np.array([[np.nan, 0]], np.float32)),
         r"a\.npz: image 'a', segment 2: embedding holds NaN or infinite values"),
        (lambda p: _rewrite(p, "a", segment_ids=np.array([2]), embeddings=np.array([[np.inf, 0]], np.float16)),
         r"a\.npz: image 'a', segment 2: embedding holds NaN or infinite values"),
        (lambda p: _rewrite(p, "a", segment_ids=np.array([2]), embeddings=np.ones((1, 3), np.float32)),
         r"b\.npz: image 'b': embeddings have dimension 2 but .*a\.npz has 3"),
        (lambda p: _rewrite(p, "a", segment_ids=np.array([2]), embeddings=np.ones((1, 2), np.float64)),
         r"a\.npz: image 'a': 'embeddings' must be a 2-D float16/float32 array"),
        (lambda p: _rewrite(p, "a", segment_ids=np.array([2, 2]), embeddings=np.ones((2, 2), np.float32)),
         r"a\.npz: image 'a', segment 2: listed twice"),
        (lambda p: _rewrite(p, "a", segment_ids=np.array([2]), embeddings=np.ones((2, 2), np.float32)),
         r"a\.npz: image 'a': 1 segment ids but 2 embedding rows"),
        (lambda p: _rewrite(p, "a", segment_ids=np.array([2])), r"a\.npz: image 'a': missing array"),
        (lambda p: (p / "embeddings" / "a.npz").write_bytes(b"garbage"), r"a\.npz: image 'a': not a readable \.npz"),
        (lambda p: [f.unlink() for f in (p / "embeddings").iterdir()], r"embeddings: no embeddings file for any"),
        (lambda p: [f.rename(f.with_name(f.stem + "_leftImg8bit.npz")) for f in (p / "embeddings").iterdir()],
         r"no embeddings file for any .*GT image 'a' has none, but a_leftImg8bit\.npz is there"),  # issue 23 item 10
    ],
)
def test_bad_dumps_give_one_line_errors(tiny, breakage, match):
    gt_json, pred = tiny
    breakage(pred)
    with pytest.raises(PredictionFormatError, match=match) as info:
        load_instances(pred, gt_json, workers=1)
    assert "\n" not in str(info.value)


def test_pickled_npz_is_refused(tiny):
    gt_json, pred = tiny
    _rewrite(pred, "a", segment_ids=np.array([2]), embeddings=np.array([[object()]], dtype=object))
    with pytest.raises(PredictionFormatError, match=r"a\.npz: image 'a': array 'embeddings': dtype object is not a plain"):
        load_instances(pred, gt_json, workers=1)


def test_image_id_escaping_the_folder(tmp_path):
    ids = np.ones((4, 4), np.uint32)
    ids[1:3, 1:3] = 2
    gt_json, png_dir = write_tiny_gt(tmp_path, {"a": (ids, SEGS)}, CATS)
    obj = json.loads(gt_json.read_text())
    obj["annotations"][0]["image_id"] = "../../a"
    gt_json.write_text(json.dumps(obj))
    pred = write_embeddings(tmp_path / "pred", {"a": ([2], [[1.0]])})
    with pytest.raises(PredictionFormatError, match=r"image '\.\./\.\./a': file_name '\.\./\.\./a\.npz' escapes"):
        load_instances(pred, gt_json, workers=1)
