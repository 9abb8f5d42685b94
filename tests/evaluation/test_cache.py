"""The GT cache: content keys, checked entries, bad entries dropped and rebuilt.

The attacks here are stated on whatever files the cache folder holds, so the
same tests ran against the old ``.npy`` cache (keyed by path, size and mtime)
and failed there: stale PQ after a same-size rewrite, wrong PQ after entries
were swapped, TokenError / MemoryError on malformed entries, a wrong-shape
entry blamed on the prediction.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pq_oracle import write_dataset
from pss_bench.evaluation.cache import _SPEC, CACHE_VERSION, GTCache, decode_entry, encode_entry
from pss_bench.io.cache_entry import MAGIC, BadEntry, pack, unpack
from pss_bench.evaluation.pq import evaluate_pq
from pss_bench.io.panoptic import id2rgb, read_png_file
from pss_bench.metrics.pq import Runs

CATS = [{"id": 1, "name": "a", "isthing": 1}, {"id": 2, "name": "b", "isthing": 0}, {"id": 3, "name": "c", "isthing": 0}]


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file())


def _two_images(tmp_path: Path):
    """Two GT images of different content and size, and a prediction that is 'im0' exact and 'im1' shifted."""
    a = np.zeros((16, 24), np.int64)
    a[:8] = 5
    a[8:] = 9
    a[4:12, 6:14] = 7
    b = np.zeros((20, 24), np.int64)
    b[:, :12] = 9
    b[:, 12:] = 5
    b[2:6, 2:10] = 7
    segs = [{"id": 5, "category_id": 2}, {"id": 9, "category_id": 3}, {"id": 7, "category_id": 1}]
    gt_json, gt_dir = write_dataset(tmp_path, "gt", [("im0", a, segs), ("im1", b, segs)], CATS, with_area=True)
    b_pred = np.roll(b, 3, axis=1)
    pred_json, pred_dir = write_dataset(tmp_path, "pred", [("im0", a, segs), ("im1", b_pred, segs)], None,
                                        with_area=False)
    return gt_json, gt_dir, pred_json, pred_dir


def _pq(ds, cache):
    gt_json, gt_dir, pred_json, pred_dir = ds
    return evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, cache_dir=cache, workers=1).to_dict()


def _truth(ds):
    gt_json, gt_dir, pred_json, pred_dir = ds
    return evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, workers=1).to_dict()


def test_identical_numbers_cold_warm_and_without_cache(cityscapes_train_gt, tmp_path):
    from prediction_helpers import perturbed_prediction

    gt_json, gt_dir = cityscapes_train_gt
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path, 7, "mix")
    cache = tmp_path / "cache"
    a = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, cache_dir=cache)
    entries = _entries(cache)
    assert len(entries) == 8 and all(e.parent.parent.name == CACHE_VERSION for e in entries)
    mtimes = [e.stat().st_mtime_ns for e in entries]
    b = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, cache_dir=cache)
    c = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False)
    assert a.to_dict() == b.to_dict() == c.to_dict()
    assert [e.stat().st_mtime_ns for e in _entries(cache)] == mtimes  # read, not rewritten


def test_warm_run_decodes_only_predictions(tmp_path, monkeypatch):
    import pss_bench.evaluation.pq as pq_mod

    ds = _two_images(tmp_path)
    cache = tmp_path / "cache"
    truth = _truth(ds)
    _pq(ds, cache)
    decoded = []
    real = pq_mod.decode_id_words
    monkeypatch.setattr(pq_mod, "decode_id_words", lambda png, *a: decoded.append(png.path.parent.name) or real(png, *a))
    assert _pq(ds, cache) == truth
    assert decoded == ["pred", "pred"]


def _rewrite_same_size_old_mtime(png: Path, ids: np.ndarray) -> None:
    st = png.stat()
    # Stored (level 0) deflate: the file size depends on the pixel count only.
    Image.fromarray(id2rgb(ids)).save(png, compress_level=0)
    assert png.stat().st_size == st.st_size
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_png_rewritten_with_same_size_and_old_mtime_is_decoded_again(tmp_path):
    ids = np.zeros((8, 8), np.int64)
    ids[:4] = 5
    ids[4:] = 9
    segs = [{"id": 5, "category_id": 2}, {"id": 9, "category_id": 3}]
    gt_json, gt_dir = write_dataset(tmp_path, "gt", [("im", ids, segs)], CATS, with_area=True)
    pred_json, pred_dir = write_dataset(tmp_path, "pred", [("im", ids, segs)], None, with_area=False)
    png = gt_dir / "im.png"
    Image.fromarray(id2rgb(ids)).save(png, compress_level=0)
    cache = tmp_path / "cache"
    assert evaluate_pq(pred_json, gt_json, cache_dir=cache).all.pq == 1.0
    _rewrite_same_size_old_mtime(png, np.where(ids == 5, 9, 5))  # swap the two segments' pixels
    assert evaluate_pq(pred_json, gt_json, cache_dir=cache).all.pq == 0.0


def test_entry_follows_the_json_segment_order(tmp_path):
    ds = _two_images(tmp_path)
    cache = tmp_path / "cache"
    _pq(ds, cache)
    gt_json = ds[0]
    obj = json.loads(gt_json.read_text())
    for ann in obj["annotations"]:
        ann["segments_info"].reverse()
    gt_json.write_text(json.dumps(obj))
    assert _pq(ds, cache) == _truth(ds)
    assert len(_entries(cache)) == 4  # the reordered JSON has its own entries


def test_swapped_entries_are_detected(tmp_path, caplog):
    """A shared cache folder whose files were shuffled: never another image's runs."""
    ds = _two_images(tmp_path)
    cache = tmp_path / "cache"
    truth = _pq(ds, cache)
    e0, e1 = _entries(cache)
    d0, d1 = e0.read_bytes(), e1.read_bytes()
    e0.write_bytes(d1)
    e1.write_bytes(d0)
    with caplog.at_level(logging.WARNING):
        assert _pq(ds, cache) == truth
    assert caplog.text.count("ignoring GT cache entry") == 2
    assert [p.read_bytes() for p in _entries(cache)] == [d0, d1]  # rebuilt in place
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert _pq(ds, cache) == truth
    assert "GT cache" not in caplog.text


def _npy(header: str, payload: bytes = b"") -> bytes:
    h = header.encode("latin1")
    h += b" " * (-(10 + len(h) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + payload


def _key(entry: bytes) -> bytes:
    return entry[40:72]


def _rehash(entry: bytes) -> bytes:
    import hashlib

    return MAGIC + hashlib.sha256(entry[40:]).digest() + entry[40:]


def _runs_out_of_order(entry: bytes, ds) -> bytes:
    """The right key and a checksum that matches, but run starts out of order."""
    arrays = {k: v.copy() for k, v in unpack(entry, _key(entry), _SPEC).items()}
    arrays["starts"][[0, -1]] = arrays["starts"][[-1, 0]]
    return pack(_key(entry), arrays)


def _wrong_shape(entry: bytes, ds) -> bytes:
    """A consistent entry (key, checksum) whose image is 8x8."""
    runs = Runs(np.array([0, 32], np.int64), np.array([1, 2], np.uint8), 64)
    return encode_entry(_key(entry), 8, 8, 3, runs)


def _absurd_run_count(entry: bytes, ds) -> bytes:
    """The directory claims 10**15 run starts; the checksum matches."""
    data = bytearray(entry)
    off = 80 + 72  # an 80-byte header, 72-byte directory records; "starts" is the second
    assert data[off:off + 6] == b"starts"
    data[off + 40:off + 48] = (10**15).to_bytes(8, "little")
    return _rehash(bytes(data))


BAD_ENTRIES = {
    "empty": lambda e, ds: b"",
    "garbage": lambda e, ds: b"garbage" * 10,
    "truncated": lambda e, ds: e[: len(e) // 2],
    "one byte flipped": lambda e, ds: e[:-1] + bytes([e[-1] ^ 1]),
    # npy files that crashed the old loader
    "npy header with a bad token": lambda e, ds: _npy("{'descr': '|u1', 'fortran_order': False, 'shape': (16, 24"),
    "npy with an absurd shape": lambda e, ds: _npy("{'descr': '<u8', 'fortran_order': False, 'shape': (1000000, 1000000), }"),
    "npy of the wrong shape": lambda e, ds: _npy("{'descr': '|u1', 'fortran_order': False, 'shape': (8, 8), }", bytes(64)),
    # entries of the new format that pass the checksum
    "runs out of order": _runs_out_of_order,
    "wrong shape": _wrong_shape,
    "absurd run count": _absurd_run_count,
}


@pytest.mark.parametrize("name", list(BAD_ENTRIES))
def test_bad_entry_is_dropped_and_rebuilt(tmp_path, caplog, name):
    ds = _two_images(tmp_path)
    cache = tmp_path / "cache"
    truth = _pq(ds, cache)
    assert truth == _truth(ds)
    good = {p: p.read_bytes() for p in _entries(cache)}
    for p, data in good.items():
        p.write_bytes(BAD_ENTRIES[name](data, ds))
    with caplog.at_level(logging.WARNING):
        assert _pq(ds, cache) == truth
    assert caplog.text.count("ignoring GT cache entry") == len(good)
    assert "prediction" not in caplog.text
    assert {p: p.read_bytes() for p in _entries(cache)} == good  # rewritten, valid again


def test_cli_warns_on_a_bad_entry_and_exits_0(tmp_path, capsys):
    from pss_bench.cli import main

    gt_json, gt_dir, pred_json, pred_dir = _two_images(tmp_path)
    cache = tmp_path / "cache"
    args = ["pq", str(pred_json), "--gt", str(gt_json), "--pred-dir", str(pred_dir), "--json", "-",
            "--cache-dir", str(cache)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    for p in _entries(cache):
        p.write_bytes(b"\x93NUMPY")
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == first
    assert "ignoring GT cache entry" in err and "Traceback" not in err


def test_folder_in_place_of_an_entry_is_ignored(tmp_path, caplog):
    ds = _two_images(tmp_path)
    cache = tmp_path / "cache"
    truth = _pq(ds, cache)
    for p in _entries(cache):
        p.unlink()
        p.mkdir()
    with caplog.at_level(logging.WARNING):
        assert _pq(ds, cache) == truth
    assert caplog.text.count("ignoring GT cache entry") == 2
    assert len(_entries(cache)) == 2  # files again


def test_unwritable_cache_only_warns(tmp_path, caplog):
    ds = _two_images(tmp_path)
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        assert _pq(ds, cache) == _truth(ds)
    assert "could not write GT cache entry" in caplog.text


def test_decode_entry_round_trip_and_checks(tmp_path):
    ds = _two_images(tmp_path)
    png = read_png_file(ds[1] / "im0.png")
    key = GTCache.key(png, np.array([5, 9, 7]))
    assert key != GTCache.key(png, np.array([5, 7, 9]))
    runs = Runs(np.array([0, 100, 200], np.int64), np.array([1, 0, 3], np.uint8), 16 * 24)
    data = encode_entry(key, 16, 24, 3, runs)
    back = decode_entry(data, key, 16, 24, 3)
    assert np.array_equal(back.starts, runs.starts) and np.array_equal(back.values, runs.values)
    assert back.size == runs.size
    for args, reason in [((b"x" * 32, 16, 24, 3), "another key"), ((key, 24, 16, 3), "the PNG is"),
                         ((key, 16, 24, 4), "segments")]:
        with pytest.raises(BadEntry, match=reason):
            decode_entry(data, *args)
    too_high = encode_entry(key, 16, 24, 3, Runs(runs.starts, np.array([1, 0, 4], np.uint8), runs.size))
    with pytest.raises(BadEntry, match="out of range"):
        decode_entry(too_high, key, 16, 24, 3)
