"""On-disk cache of decoded ground-truth PNGs, as runs.

Evaluating many checkpoints against one validation set decodes the same GT
PNGs every time; this keeps each GT image in the form the PQ engine works on:
its runs (:class:`~pss_bench.metrics.pq.Runs`: where each run of equal pixels
starts and the dense segment index it holds), a few hundred KB per
Cityscapes frame instead of a decoded map.

Keys and checks:

* the key is a SHA-256 of the GT PNG's bytes and the JSON's segment ids (in
  order, since the dense indices follow it): an edited PNG or JSON misses,
  whatever the file's size or modification time; hashing a PNG costs well
  under a millisecond, decoding it tens of milliseconds;
* every entry carries its key and a SHA-256 of its content, and is checked
  against the PNG's header and the segment count before use. An entry that
  fails any check (truncated, corrupt, another image's entry, wrong shape) is
  logged as a warning, deleted, and recomputed from the PNG;
* entries are parsed with fixed-size headers and sizes checked against the
  file's length before anything is allocated, and written atomically.

The checksum detects corruption and mix-ups, not a writer who recomputes it:
a cache folder shared with people you do not trust is a risk like any
shared input.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import struct
from pathlib import Path

import numpy as np

from pss_bench.io.atomic import atomic_path
from pss_bench.io.panoptic import PngFile
from pss_bench.metrics.pq import Runs

log = logging.getLogger(__name__)

CACHE_VERSION = "gt-v2"

_MAGIC = b"PSSGTRL\x02"
_DIGEST = 32
# magic, content checksum, key, height, width, n_segments, value itemsize, n_runs
_HEADER = struct.Struct("<8s32s32sIIIB3xQ")
_VALUE_DTYPES = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


def default_cache_dir() -> Path:
    """``$PSS_BENCH_CACHE_DIR`` or the user cache directory (``~/.cache/pss-bench``)."""
    env = os.environ.get("PSS_BENCH_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pss-bench"))


class BadCacheEntry(Exception):
    """A cache entry that must not be used (internal: it is dropped and rebuilt)."""


def encode_entry(key: bytes, height: int, width: int, n_segments: int, runs: Runs) -> bytes:
    """Serialises GT runs with their key and a checksum.

    Layout (little-endian): the header ``_HEADER``, then ``n_runs`` uint32
    starts, then ``n_runs`` values of ``itemsize`` bytes. The checksum is the
    SHA-256 of everything after it.
    """
    if runs.size != height * width or runs.size >= 1 << 32:
        raise ValueError(f"runs of {runs.size} pixels for a {width}x{height} image")
    itemsize = runs.values.dtype.itemsize
    if itemsize not in _VALUE_DTYPES:
        raise ValueError(f"unsupported value dtype {runs.values.dtype}")
    n = int(runs.starts.shape[0])
    body = b"".join((
        struct.pack("<32sIIIB3xQ", key, height, width, n_segments, itemsize, n),
        np.ascontiguousarray(runs.starts, dtype="<u4").tobytes(),
        np.ascontiguousarray(runs.values, dtype=_VALUE_DTYPES[itemsize]).tobytes(),
    ))
    return _MAGIC + hashlib.sha256(body).digest() + body


def decode_entry(data: bytes | memoryview, key: bytes, height: int, width: int, n_segments: int) -> Runs:
    """Parses and checks an entry written by :func:`encode_entry`.

    The returned arrays are views of ``data`` (no copy).

    Raises:
        BadCacheEntry: with the reason, for anything that does not check out.
    """
    if len(data) < _HEADER.size:
        raise BadCacheEntry(f"truncated ({len(data)} bytes)")
    magic, checksum, ekey, h, w, n_seg, itemsize, n = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise BadCacheEntry("not a GT cache entry of this version")
    if hashlib.sha256(memoryview(data)[8 + _DIGEST:]).digest() != checksum:
        raise BadCacheEntry("checksum mismatch (corrupt or altered)")
    if ekey != key:
        raise BadCacheEntry("it holds another image's runs")
    if (h, w) != (height, width):
        raise BadCacheEntry(f"it is {w}x{h} (WxH) but the PNG is {width}x{height}")
    if n_seg != n_segments:
        raise BadCacheEntry(f"it has {n_seg} segments, the JSON {n_segments}")
    dtype = _VALUE_DTYPES.get(itemsize)
    size = h * w
    if dtype is None or not 0 < n <= size or len(data) != _HEADER.size + n * (4 + itemsize):
        raise BadCacheEntry("inconsistent sizes")
    starts = np.frombuffer(data, dtype="<u4", count=n, offset=_HEADER.size)
    values = np.frombuffer(data, dtype=dtype, count=n, offset=_HEADER.size + 4 * n)
    if starts[0] != 0 or starts[-1] >= size or (n > 1 and not (starts[1:] > starts[:-1]).all()):
        raise BadCacheEntry("run starts out of order")
    if int(values.max()) > n_segments:
        raise BadCacheEntry("segment index out of range")
    return Runs(starts, values, size)


class GTCache:
    """GT runs keyed by the PNG's content and the JSON's segment ids."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root) / CACHE_VERSION

    @staticmethod
    def key(png: PngFile, seg_ids: np.ndarray) -> bytes:
        """SHA-256 of the cache version, the PNG's bytes and the segment ids."""
        h = hashlib.sha256(CACHE_VERSION.encode())
        h.update(len(png.data).to_bytes(8, "little"))
        h.update(png.data)
        h.update(np.ascontiguousarray(seg_ids, dtype="<i8").tobytes())
        return h.digest()

    def _file(self, key: bytes) -> Path:
        hexkey = key.hex()
        return self.root / hexkey[:2] / f"{hexkey}.runs"

    def get(self, key: bytes, png: PngFile, n_segments: int) -> Runs | None:
        """The cached runs of ``png``, or None (absent, or bad: then deleted with a warning)."""
        f = self._file(key)
        try:
            fd = os.open(f, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._drop(f, f"cannot be opened ({exc.strerror})")
            return None
        limit = _HEADER.size + png.width * png.height * 8
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise BadCacheEntry("not a regular file")
            if st.st_size > limit:
                os.close(fd)
                raise BadCacheEntry(f"{st.st_size} bytes, more than an entry of this image can have")
            with os.fdopen(fd, "rb", buffering=0) as fh:
                data = fh.readall()
            return decode_entry(data, key, png.height, png.width, n_segments)
        except BadCacheEntry as exc:
            self._drop(f, str(exc))
        except OSError as exc:
            self._drop(f, f"cannot be read ({exc.strerror})")
        return None

    def put(self, key: bytes, png: PngFile, n_segments: int, runs: Runs) -> None:
        """Writes an entry atomically; a full or read-only disk only logs a warning."""
        f = self._file(key)
        try:
            data = encode_entry(key, png.height, png.width, n_segments, runs)
            with atomic_path(f) as tmp:
                with open(tmp, "wb") as fh:
                    fh.write(data)
        except (OSError, ValueError) as exc:  # a cache problem must not fail the evaluation
            log.warning("could not write GT cache entry %s (%s)", f, exc)

    @staticmethod
    def _drop(f: Path, reason: str) -> None:
        log.warning("ignoring GT cache entry %s: %s; decoding the PNG again", f, reason)
        with contextlib.suppress(OSError):
            os.unlink(f)
        with contextlib.suppress(OSError):
            os.rmdir(f)  # an empty folder in its place
