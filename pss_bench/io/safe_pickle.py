"""A restricted unpickler for legacy result files (UPSNet's ``results_list.pkl``).

Only plain containers, scalars, strings, bytes and numpy arrays / dtypes /
scalars can be rebuilt; any other global (``os.system``, ``builtins.eval``,
arbitrary classes) is refused before it is looked up, so no code from the
file runs.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from pss_bench.errors import FormatError

_NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED: dict[tuple[str, str], object] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray
for _mod in _NUMPY_MULTIARRAY:
    _ALLOWED[(_mod, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(_mod, "scalar")] = _multiarray.scalar
# Plain data constructors, under Python 3's and Python 2's module names.
for _mod in ("builtins", "__builtin__"):
    for _t in (bytes, bytearray, complex, set, frozenset):
        _ALLOWED[(_mod, _t.__name__)] = _t
# Protocol-2 pickles written by Python 3 encode bytes through _codecs.encode(str, "latin1").
_ALLOWED[("_codecs", "encode")] = __import__("codecs").encode


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str) -> None:
        super().__init__(file, encoding="latin1")
        self.where = where

    def find_class(self, module: str, name: str):
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise FormatError(
                f"{self.where}: refused to load {module}.{name}: only numpy arrays, lists, dicts, "
                "tuples and plain scalars are allowed in this pickle"
            )
        return obj

    def persistent_load(self, pid):
        raise FormatError(f"{self.where}: persistent ids are not allowed in this pickle")


def load_restricted_pickle(path: str | os.PathLike):
    """Loads a pickle holding only containers, scalars and numpy arrays.

    Raises:
        FormatError: the file is missing, corrupt, or references anything else.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except FormatError:
        raise
    except Exception as exc:  # truncated or corrupt stream
        raise FormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
