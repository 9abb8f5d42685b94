"""On-disk cache of decoded ground-truth PNGs.

Evaluating many checkpoints against one validation set decodes the same GT
PNGs every time; this keeps each GT image's dense index map (uint8 or uint16,
the JSON's segment order) as a ``.npy`` file. The key covers the PNG's real
path, size and modification time and the JSON's segment ids, so an edited
file or JSON is decoded again. Files are written atomically and read with
``allow_pickle=False``; an unreadable entry is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from pss_bench.io.atomic import atomic_path

log = logging.getLogger(__name__)

CACHE_VERSION = "gt-v1"


def default_cache_dir() -> Path:
    """``$PSS_BENCH_CACHE_DIR`` or the user cache directory (``~/.cache/pss-bench``)."""
    env = os.environ.get("PSS_BENCH_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pss-bench"))


class GTCache:
    """Dense GT index maps keyed by (path, size, mtime, segment ids)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root) / CACHE_VERSION

    def key(self, png: Path, seg_ids: np.ndarray) -> str:
        st = png.stat()
        h = hashlib.sha256()
        h.update(f"{png.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        h.update(np.ascontiguousarray(seg_ids, dtype=np.int64).tobytes())
        return h.hexdigest()

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str, n_segments: int) -> np.ndarray | None:
        f = self._file(key)
        try:
            arr = np.load(f, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError, EOFError) as exc:
            log.warning("ignoring unreadable GT cache entry %s (%s)", f, exc)
            return None
        if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16, np.int32) or (arr.size and int(arr.max()) > n_segments):
            log.warning("ignoring inconsistent GT cache entry %s", f)
            return None
        return arr

    def put(self, key: str, dense: np.ndarray) -> None:
        f = self._file(key)
        try:
            with atomic_path(f) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, dense, allow_pickle=False)
        except OSError as exc:  # a full or read-only disk must not fail the evaluation
            log.warning("could not write GT cache entry %s (%s)", f, exc)
