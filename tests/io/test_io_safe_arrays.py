"""Hostile .npz / .npy files: raw pickles, absurd headers, zip bombs. Refused in one line, before allocating."""

from __future__ import annotations

import io
import pickle
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from pss_bench.errors import PredictionFormatError
from pss_bench.io.embeddings import read_image_embeddings

GOOD_SEG = np.array([1, 2], np.int64)
GOOD_EMB = np.ones((2, 3), np.float32)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _npy_header(shape_text: str, descr: str = "<f4") -> bytes:
    """A version-1.0 .npy header whose dict says ``shape_text`` (any text, unchecked)."""
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_text)
    d = d + " " * (63 - (10 + len(d)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(d).to_bytes(2, "little") + d.encode("latin1")


def _write_npz(path: Path, members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _good_members(**override) -> dict[str, bytes]:
    m = {"segment_ids.npy": _npy_bytes(GOOD_SEG), "embeddings.npy": _npy_bytes(GOOD_EMB)}
    m.update(override)
    return m


def _read(path: Path):
    return read_image_embeddings(path, "a")


def test_plain_npz_still_reads(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, segment_ids=GOOD_SEG, embeddings=GOOD_EMB)
    e = _read(p)
    assert e.segment_ids.tolist() == [1, 2] and np.array_equal(e.embeddings, GOOD_EMB)
    p2 = tmp_path / "b.npz"
    np.savez_compressed(p2, segment_ids=GOOD_SEG, embeddings=np.asfortranarray(np.arange(6, dtype=np.float16).reshape(2, 3)))
    assert np.array_equal(_read(p2).embeddings, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_member_that_is_a_raw_pickle_is_refused(tmp_path):
    p = _write_npz(tmp_path / "a.npz", _good_members(**{"embeddings.npy": pickle.dumps([[1.0, 2.0]])}))
    with pytest.raises(PredictionFormatError, match=r"a\.npz: image 'a': array 'embeddings': not a \.npy array") as info:
        _read(p)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("shape_text, match", [
    ("(2, 3", r"malformed \.npy header"),                      # tokenize error in numpy
    ("(2, 3), 'x': __import__('os')", r"malformed \.npy header"),
    ("'two'", r"malformed \.npy"),
    ("(-2, 3)", r"malformed \.npy"),
    ("(2**40, 2**40)", r"malformed \.npy header"),            # not a literal
    ("(1099511627776, 1099511627776)", r"declared shape .* bytes; the limit is"),
    ("(2, 30000)", r"truncated: shape \(2, 30000\) of float32 needs 240000 bytes"),
])
def test_absurd_npy_headers_are_one_line_errors(tmp_path, shape_text, match):
    member = _npy_header(shape_text) + b"\0" * 24
    p = _write_npz(tmp_path / "a.npz", _good_members(**{"embeddings.npy": member}))
    with pytest.raises(PredictionFormatError, match=match) as info:
        _read(p)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{p}: image 'a'")


@pytest.mark.parametrize("descr", ["|O", "[('a', '<f4')]", "<M8[s]", "|S4"])
def test_non_numeric_dtypes_are_refused(tmp_path, descr):
    member = _npy_header("(2, 3)", descr) + b"\0" * 96
    p = _write_npz(tmp_path / "a.npz", _good_members(**{"embeddings.npy": member}))
    with pytest.raises(PredictionFormatError, match=r"(not a plain numeric array|malformed)"):
        _read(p)


def test_zip_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    """A deflated member claiming 96 MiB from 0.1 MB: refused from the zip directory alone."""
    n = 96 * 2**20
    header = _npy_header(f"({n // 4},)")
    comp = zlib.compressobj(1, zlib.DEFLATED, -15)
    chunk = b"\0" * 2**24
    body = comp.compress(header) + b"".join(comp.compress(chunk) for _ in range(n // len(chunk))) + comp.flush()
    p = tmp_path / "a.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("segment_ids.npy", _npy_bytes(GOOD_SEG))
        info = zipfile.ZipInfo("embeddings.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        info.file_size, info.compress_size, info.CRC = len(header) + n, len(body), 0  # never inflated
        _write_raw_member(zf, info, body)
    assert p.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(PredictionFormatError, match=r"expand to \d+ \(over 200x: a zip bomb\?\)"):
            _read(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    # The size limit applies too, whatever the compression.
    monkeypatch.setenv("PSS_BENCH_MAX_ARRAY_BYTES", str(2**20))
    with pytest.raises(PredictionFormatError, match=r"expands to \d+ bytes; the limit is 1048576 bytes; raise it with"):
        _read(p)


def _write_raw_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, compressed: bytes) -> None:
    """Adds an already-compressed member (zipfile has no public API for it)."""
    info.header_offset = zf.fp.tell()
    info.flag_bits = 0
    info.create_system = 3
    info.create_version = info.extract_version = 20
    zf.fp.write(info.FileHeader(zip64=False))
    zf.fp.write(compressed)
    zf.filelist.append(info)
    zf.NameToInfo[info.filename] = info
    zf.start_dir = zf.fp.tell()


def test_other_compressions_are_refused(tmp_path):
    p = _write_npz(tmp_path / "a.npz", _good_members(), compress=zipfile.ZIP_BZIP2)
    with pytest.raises(PredictionFormatError, match=r"compression method 12 refused"):
        _read(p)


def test_feature_map_npy_with_absurd_shape_is_refused(tmp_path):
    from pss_bench.io.features import read_feature_map

    p = tmp_path / "a.npy"
    p.write_bytes(_npy_header("(512, 100000, 100000)") + b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(PredictionFormatError, match=r"a\.npy: image 'a': declared shape \(512, 100000, 100000\)"):
            read_feature_map(p, "a")
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
    p.write_bytes(_npy_header("(2, 3") + b"\0" * 24)
    with pytest.raises(PredictionFormatError, match=r"a\.npy: image 'a': malformed \.npy header"):
        read_feature_map(p, "a")
    p.write_bytes(pickle.dumps(np.ones((2, 2, 2))))
    with pytest.raises(PredictionFormatError, match=r"not a \.npy array"):
        read_feature_map(p, "a")
    np.save(p, np.ones((2, 3, 4), np.float32))
    assert read_feature_map(p, "a").shape == (2, 3, 4)


def test_encrypted_member_is_one_line(tmp_path):
    p = _write_npz(tmp_path / "a.npz", _good_members())
    data = bytearray(p.read_bytes())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the "encrypted" flag of every header
        i = data.find(sig)
        while i >= 0:
            data[i + off] |= 1
            i = data.find(sig, i + 4)
    p.write_bytes(bytes(data))
    with pytest.raises(PredictionFormatError, match=r"a\.npz: image 'a': not a readable \.npz \(RuntimeError: .*encrypted"):
        _read(p)


def test_uint64_segment_ids_do_not_wrap_around(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, segment_ids=np.array([2**64 - 1, 1], np.uint64), embeddings=GOOD_EMB)
    with pytest.raises(PredictionFormatError, match=r"image 'a', segment 18446744073709551615: not a segment id"):
        _read(p)
