"""On-disk cache of decoded ground-truth PNGs, as runs.

Evaluating many checkpoints against one validation set decodes the same GT
PNGs every time; this keeps each GT image in the form the PQ engine works on:
its runs (:class:`~pss_bench.metrics.pq.Runs`: where each run of equal pixels
starts and the dense segment index it holds), about 70 KB per Cityscapes
frame where a decoded index map takes 2 MB.

Boundary PQ also needs each GT segment's boundary: those runs are cached
beside, under :meth:`GTCache.boundary_key` (the image's key and the erosion
radius), in the same format.

Keys and checks:

* the key is a SHA-256 of the GT PNG's bytes and the JSON's segment ids (in
  order, since the dense indices follow it): an edited PNG or JSON misses,
  whatever the file's size or modification time; hashing a PNG costs well
  under a millisecond, decoding it tens of milliseconds;
* every entry carries its key and a SHA-256 of its content, and is checked
  against the PNG's header and the segment count before use. An entry that
  fails any check (truncated, corrupt, another image's entry, wrong shape) is
  logged as a warning, deleted, and recomputed from the PNG;
* entries use the checked format of :mod:`pss_bench.io.cache_entry`: sizes
  are compared with the file's length before anything is allocated, and
  files are written atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from pss_bench.io.cache_entry import BadEntry, EntryStore, pack, unpack
from pss_bench.io.panoptic import PngFile
from pss_bench.metrics.pq import Runs

CACHE_VERSION = "gt-v2"

_SPEC = {
    "shape": (("<i8",), 1),  # height, width, number of JSON segments
    "starts": (("<u4",), 1),
    "values": (("|u1", "<u2", "<u4"), 1),
}


def default_cache_dir() -> Path:
    """``$PSS_BENCH_CACHE_DIR`` or the user cache directory (``~/.cache/pss-bench``)."""
    env = os.environ.get("PSS_BENCH_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pss-bench"))


def _arrays(height: int, width: int, n_segments: int, runs: Runs) -> dict[str, np.ndarray]:
    if runs.size != height * width or runs.size >= 1 << 32:
        raise ValueError(f"runs of {runs.size} pixels for a {width}x{height} image")
    return {
        "shape": np.array([height, width, n_segments], dtype=np.int64),
        "starts": runs.starts.astype(np.uint32, copy=False),
        "values": runs.values,
    }


def encode_entry(key: bytes, height: int, width: int, n_segments: int, runs: Runs) -> bytes:
    """The bytes of an entry: the image's shape, run starts (uint32) and values."""
    return pack(key, _arrays(height, width, n_segments, runs))


def check_runs(arrays: dict[str, np.ndarray], height: int, width: int, n_segments: int) -> Runs:
    """Runs from an entry's arrays, if they fit the image and the JSON.

    Raises:
        BadEntry: with the reason.
    """
    shape = arrays["shape"]
    if shape.shape != (3,) or (int(shape[0]), int(shape[1])) != (height, width):
        raise BadEntry(f"it is {shape[1:2].tolist()}x{shape[:1].tolist()} (WxH) but the PNG is {width}x{height}")
    if int(shape[2]) != n_segments:
        raise BadEntry(f"it has {int(shape[2])} segments, the JSON {n_segments}")
    starts, values = arrays["starts"], arrays["values"]
    size = height * width
    n = starts.shape[0]
    if values.shape[0] != n or not 0 < n <= size:
        raise BadEntry("inconsistent sizes")
    if starts[0] != 0 or starts[-1] >= size or (n > 1 and not (starts[1:] > starts[:-1]).all()):
        raise BadEntry("run starts out of order")
    if int(values.max()) > n_segments:
        raise BadEntry("segment index out of range")
    return Runs(starts, values, size)


def decode_entry(data: bytes, key: bytes, height: int, width: int, n_segments: int) -> Runs:
    """Parses and checks an entry (views of ``data``, no copy).

    Raises:
        BadEntry: with the reason, for anything that does not check out.
    """
    return check_runs(unpack(data, key, _SPEC), height, width, n_segments)


class GTCache:
    """GT runs keyed by the PNG's content and the JSON's segment ids."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root) / CACHE_VERSION
        self._store = EntryStore(self.root, "GT cache", ".runs")

    @staticmethod
    def key(png: PngFile, seg_ids: np.ndarray) -> bytes:
        """SHA-256 of the cache version, the PNG's bytes and the segment ids."""
        h = hashlib.sha256(CACHE_VERSION.encode())
        h.update(len(png.data).to_bytes(8, "little"))
        h.update(png.data)
        h.update(np.ascontiguousarray(seg_ids, dtype="<i8").tobytes())
        return h.digest()

    @staticmethod
    def boundary_key(key: bytes, d: int) -> bytes:
        """The key of the boundary runs of the image whose runs have ``key``, at erosion radius ``d``.

        The entry holds the runs of :func:`~pss_bench.metrics.variants.boundary_runs`
        (values up to ``n_segments + 1``): store and read it with ``n_segments + 1``.
        """
        h = hashlib.sha256(CACHE_VERSION.encode() + b"/boundary")
        h.update(key)
        h.update(int(d).to_bytes(8, "little"))
        return h.digest()

    def get(self, key: bytes, png: PngFile, n_segments: int) -> Runs | None:
        """The cached runs of ``png``, or None (absent, or bad: then deleted with a warning)."""
        # An entry holds at most one run per pixel: 4 + 4 bytes, plus its header.
        limit = 4096 + png.width * png.height * 8
        return self._store.read(key, _SPEC, limit, lambda a: check_runs(a, png.height, png.width, n_segments))

    def put(self, key: bytes, png: PngFile, n_segments: int, runs: Runs) -> None:
        """Writes an entry atomically; a full or read-only disk only logs a warning."""
        self._store.write(key, _arrays(png.height, png.width, n_segments, runs))
