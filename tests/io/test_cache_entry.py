"""Checked cache entries: round trip, and every damaged entry is a BadEntry (never another error)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pss_bench.io.cache_entry import MAGIC, BadEntry, EntryStore, pack, unpack

KEY = hashlib.sha256(b"k").digest()
SPEC = {"a": (("<u4",), 1), "b": (("|u1", "<u2"), 2), "c": (("<i8",), 3)}


def _arrays():
    return {"a": np.arange(5, dtype=np.uint32), "b": np.arange(6, dtype=np.uint16).reshape(2, 3),
            "c": np.arange(24, dtype=np.int64).reshape(2, 3, 4)}


def test_round_trip_without_copy():
    data = pack(KEY, _arrays())
    out = unpack(data, KEY, SPEC)
    for k, v in _arrays().items():
        assert np.array_equal(out[k], v) and out[k].dtype == v.dtype
        assert not out[k].flags.owndata  # a view of the bytes read


def test_every_truncation_and_byte_flip_is_refused():
    data = pack(KEY, _arrays())
    for i in range(len(data)):
        with pytest.raises(BadEntry):
            unpack(data[:i], KEY, SPEC)
    for i in range(0, len(data), 3):
        flipped = data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]
        with pytest.raises(BadEntry):
            unpack(flipped, KEY, SPEC)


def _rehash(body: bytes) -> bytes:
    return MAGIC + hashlib.sha256(body).digest() + body


@pytest.mark.parametrize("change, reason", [
    (lambda a: a.pop("c"), "arrays where"),
    (lambda a: a.update(c=np.zeros((2, 3), np.int64)), "dimensions"),
    (lambda a: a.update(a=np.zeros(5, np.int64)), "<i8"),
    (lambda a: a.update(d=a.pop("c")), "unexpected array 'd'"),
])
def test_entries_with_valid_checksums_but_other_arrays_are_refused(change, reason):
    arrays = _arrays()
    change(arrays)
    with pytest.raises(BadEntry, match=reason):
        unpack(pack(KEY, arrays), KEY, SPEC)


def test_absurd_declared_shape_is_refused_before_allocating():
    data = bytearray(pack(KEY, _arrays()))
    off = 80  # the first directory record ("a"); its shape starts 40 bytes in
    data[off + 40:off + 48] = (10**18).to_bytes(8, "little")
    with pytest.raises(BadEntry, match="inconsistent sizes"):
        unpack(_rehash(bytes(data[40:])), KEY, SPEC)


def test_other_key_and_foreign_files():
    data = pack(KEY, _arrays())
    with pytest.raises(BadEntry, match="another key"):
        unpack(data, hashlib.sha256(b"other").digest(), SPEC)
    for blob in (b"", b"\x93NUMPY\x01\x00", b"PK\x03\x04" + bytes(100)):
        with pytest.raises(BadEntry):
            unpack(blob, KEY, SPEC)


def test_store_drops_bad_entries_and_refuses_oversized_files(tmp_path, caplog):
    store = EntryStore(tmp_path, "test cache", ".e")
    assert store.read(KEY, SPEC, 10_000) is None  # absent: no warning
    assert caplog.text == ""
    store.write(KEY, _arrays())
    assert np.array_equal(store.read(KEY, SPEC, 10_000)["a"], np.arange(5))
    assert store.read(KEY, SPEC, 100) is None  # larger than the caller's bound
    assert "more than such a cache entry can have" in caplog.text
    assert not store.path(KEY).exists()
