"""Checked on-disk cache entries: named arrays stored with their key and a checksum.

Used by the GT cache (PQ) and the Context Error descriptor cache. An entry is
one file, written atomically; reading it never unpickles, never trusts a
size before comparing it with the file's length, and returns views of the
bytes read (no copy). Anything that does not check out raises
:class:`BadEntry`, and :class:`EntryStore` deletes the file with a warning so
that the caller recomputes and rewrites it.

Layout (little-endian)::

    magic (8) | SHA-256 of everything after it (32) | key (32) | n_arrays u32 | 0 u32
    n_arrays x [ name (24, NUL-padded ASCII) | dtype (8, e.g. "<u4") | ndim u32 | 0 u32 | shape 4 x u64 ]
    the arrays' bytes in that order, each padded to a multiple of 8

The checksum detects corruption and entries moved or copied to another key;
it does not stop a writer who recomputes it (a cache folder shared with
people you do not trust is a risk like any shared input).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
from pathlib import Path
from typing import Mapping

import numpy as np

from pss_bench.io.atomic import atomic_path
from pss_bench.io.safe_read import read_bytes

log = logging.getLogger(__name__)

MAGIC = b"PSSCACH1"
_HEAD = struct.Struct("<8s32s32sII")
_DIR = struct.Struct("<24s8sII4Q")
_MAX_ARRAYS = 16


class BadEntry(Exception):
    """A cache entry that must not be used; the message says why."""


def pack(key: bytes, arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialises ``arrays`` (at most 4 dimensions each) under ``key`` (32 bytes)."""
    if len(key) != 32 or len(arrays) > _MAX_ARRAYS:
        raise ValueError("a key of 32 bytes and at most 16 arrays")
    directory, blobs = [], []
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        arr = arr.astype(dt, copy=False)
        if arr.ndim > 4 or dt.kind not in "uif" or dt.hasobject:
            raise ValueError(f"cannot store array {name!r} of dtype {arr.dtype} and {arr.ndim} dimensions")
        shape = tuple(arr.shape) + (0,) * (4 - arr.ndim)
        directory.append(_DIR.pack(name.encode("ascii"), dt.str.encode("ascii"), arr.ndim, 0, *shape))
        raw = arr.tobytes()
        blobs.append(raw + b"\0" * (-len(raw) % 8))
    body = b"".join([key, struct.pack("<II", len(arrays), 0), *directory, *blobs])
    return MAGIC + hashlib.sha256(body).digest() + body


def unpack(data: bytes, key: bytes, spec: Mapping[str, tuple[tuple[str, ...], int]]) -> dict[str, np.ndarray]:
    """Checks an entry written by :func:`pack` and returns views of its arrays.

    Args:
        data: the file's bytes.
        key: the key the caller looked up.
        spec: ``name -> (allowed dtype strings, ndim)``; the entry must hold
            exactly these arrays.

    Raises:
        BadEntry: truncated, foreign, corrupt, another key's, or not the arrays asked for.
    """
    if len(data) < _HEAD.size:
        raise BadEntry(f"truncated ({len(data)} bytes)")
    magic, checksum, ekey, n, _ = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise BadEntry("not a pss-bench cache entry of this version")
    if hashlib.sha256(memoryview(data)[8 + 32:]).digest() != checksum:
        raise BadEntry("checksum mismatch (corrupt or altered)")
    if ekey != key:
        raise BadEntry("it belongs to another key (moved or copied)")
    if n != len(spec) or len(data) < _HEAD.size + n * _DIR.size:
        raise BadEntry(f"{n} arrays where {len(spec)} were expected")
    offset = _HEAD.size + n * _DIR.size
    layout = []
    for i in range(n):
        raw_name, raw_dtype, ndim, _, *shape = _DIR.unpack_from(data, _HEAD.size + i * _DIR.size)
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        dtype = raw_dtype.rstrip(b"\0").decode("ascii", "replace")
        if name not in spec:
            raise BadEntry(f"unexpected array {name!r}")
        allowed, want_ndim = spec[name]
        if dtype not in allowed or ndim != want_ndim or any(shape[ndim:]):
            raise BadEntry(f"array {name!r} is {dtype} with {ndim} dimensions")
        count = 1
        for s in shape[:ndim]:
            count *= s
        nbytes = count * np.dtype(dtype).itemsize
        layout.append((name, dtype, tuple(shape[:ndim]), offset, count))
        offset += nbytes + (-nbytes % 8)
    if offset != len(data) or len({name for name, *_ in layout}) != n:
        raise BadEntry("inconsistent sizes")
    return {name: np.frombuffer(data, dtype=dtype, count=count, offset=off).reshape(shape)
            for name, dtype, shape, off, count in layout}


class EntryStore:
    """One folder of entries; bad ones are deleted with a warning naming ``what``."""

    def __init__(self, root: str | os.PathLike, what: str, suffix: str) -> None:
        self.root = Path(root)
        self.what = what
        self.suffix = suffix

    def path(self, key: bytes) -> Path:
        hexkey = key.hex()
        return self.root / hexkey[:2] / f"{hexkey}{self.suffix}"

    def read(self, key: bytes, spec: Mapping[str, tuple[tuple[str, ...], int]], max_bytes: int,
             check=None):
        """The entry's arrays (after ``check(arrays)``, which raises :class:`BadEntry`), or None."""
        f = self.path(key)
        if not os.path.lexists(f):
            return None
        try:
            # Regular files only (a FIFO planted in a shared cache folder would block).
            data = read_bytes(f, "", BadEntry, "cache entry", max_bytes=max_bytes)
            arrays = unpack(data, key, spec)
            return check(arrays) if check is not None else arrays
        except BadEntry as exc:
            self.drop(f, str(exc))
        except OSError as exc:
            self.drop(f, f"cannot be read ({exc.strerror})")
        return None

    def write(self, key: bytes, arrays: Mapping[str, np.ndarray]) -> None:
        """Writes atomically; a full or read-only disk only logs a warning."""
        f = self.path(key)
        try:
            data = pack(key, arrays)
            with atomic_path(f) as tmp:
                with open(tmp, "wb") as fh:
                    fh.write(data)
        except (OSError, ValueError) as exc:  # a cache problem must not fail the evaluation
            log.warning("could not write %s entry %s (%s)", self.what, f, exc)

    def drop(self, f: Path, reason: str) -> None:
        log.warning("ignoring %s entry %s: %s; computing it again", self.what, f, reason)
        with contextlib.suppress(OSError):
            os.unlink(f)
        with contextlib.suppress(OSError):
            os.rmdir(f)  # an empty folder in its place
