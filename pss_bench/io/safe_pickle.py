"""A restricted unpickler for legacy result files (UPSNet's ``results_list.pkl``).

Only plain containers, scalars, strings, bytes and numpy arrays / dtypes /
scalars can be rebuilt, through exactly the reconstructors numpy 1 and 2
pickle them with (``numpy[._]core.multiarray._reconstruct`` and ``scalar``,
``numpy[._]core.numeric._frombuffer`` for protocol 5). Any other global
(``os.system``, ``builtins.eval``, arbitrary classes) is refused before it is
looked up, so no code from the file runs.

Sizes are bounded before anything is allocated: the opcode stream is scanned
first (declared lengths must fit in the file; no persistent ids, extension
codes or instance construction), ``bytes`` / ``bytearray`` are built from
data only (never from a count), and every array reconstructor checks the
shape, dtype and state it is given against the bytes it is given and against
:func:`~pss_bench.io.safe_arrays.max_array_bytes` (numpy trusts a state: an
object array with too short a list crashes the interpreter). The result is
walked once without recursion: self-references and containers nested more
than :data:`MAX_DEPTH` deep are refused.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np

from pss_bench.errors import FormatError
from pss_bench.io.safe_arrays import max_array_bytes
from pss_bench.io.safe_read import read_bytes

MAX_DEPTH = 100
_NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray

_REFUSED_OPCODES = {"PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX",
                    "NEXT_BUFFER", "READONLY_BUFFER"}


class _Refused(FormatError):
    pass


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle: accepted as ``_reconstruct``'s subtype, never called."""

    def __repr__(self) -> str:
        return "numpy.ndarray"

    def __call__(self, *args, **kwargs):
        raise _Refused("numpy.ndarray(...) refused: arrays are rebuilt by _reconstruct or _frombuffer only")


_NDARRAY = _NdarrayType()


def _limit() -> int:
    return max_array_bytes()


def _check_dtype(dtype, what: str) -> np.dtype:
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"{what}: expected a numpy dtype, found {type(dtype).__name__}")
    if dtype.itemsize > _limit():
        raise _Refused(f"{what}: dtype {dtype} of {dtype.itemsize} bytes per item is over the limit")
    return dtype


def _count(shape, what: str) -> int:
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise _Refused(f"{what}: malformed array shape {shape!r}")
    if len(shape) > 64:
        raise _Refused(f"{what}: {len(shape)} dimensions")
    n = 1
    for s in shape:
        n *= s
    return n


class _DtypeSpec:
    """A ``numpy.dtype(...)`` being unpickled: its ``__setstate__`` must be the canonical state of that dtype.

    numpy lets a dtype's state change its item size and flags (an ``f8``
    marked as holding objects); here a state is accepted only if it equals
    what numpy itself writes for the dtype named (in either byte order).
    """

    def __init__(self, name, align=False, copy=True) -> None:
        if not isinstance(name, str) or len(name) > 16:
            raise _Refused(f"numpy dtype {name!r} refused: only dtype strings such as 'f4', 'u1', 'O8'")
        self.dtype = _check_dtype(np.dtype(name), "dtype")
        if self.dtype.fields is not None or self.dtype.subdtype is not None:
            raise _Refused(f"numpy dtype {name!r} refused: records and sub-arrays are not plain data")

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or not isinstance(state[1], str):
            raise _Refused(f"dtype state {type(state).__name__} refused")
        dtype = self.dtype
        if state[1] in "<>" and dtype.byteorder not in "|":
            dtype = dtype.newbyteorder(state[1])
        if state != dtype.__reduce__()[2]:
            raise _Refused(f"dtype {self.dtype} with a state numpy does not write refused")
        self.dtype = dtype


def _as_dtype(dtype, what: str) -> np.dtype:
    if isinstance(dtype, _DtypeSpec):
        dtype = dtype.dtype
    return _check_dtype(dtype, what)


class _CheckedArray(np.ndarray):
    """What ``_reconstruct`` builds: an empty array whose ``__setstate__`` checks the state before numpy sees it.

    numpy trusts the state: an object array given a shorter list than its
    shape crashes the interpreter.
    """

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused(f"array state {type(state).__name__} refused")
        version, shape, dtype, fortran, raw = state if len(state) == 5 else (1, *state)
        dtype = _as_dtype(dtype, "array")
        n = _count(shape, "array")
        if not isinstance(fortran, (bool, int)) or isinstance(version, bool) or not isinstance(version, int):
            raise _Refused("array state refused: malformed flags")
        if dtype.hasobject:
            if not isinstance(raw, list) or len(raw) != n:
                raise _Refused(f"object array of shape {shape} refused: its state holds "
                               f"{len(raw) if isinstance(raw, list) else type(raw).__name__} items")
        else:
            if not isinstance(raw, (bytes, bytearray)):
                raise _Refused(f"array data of type {type(raw).__name__} refused: expected bytes")
            if len(raw) != n * dtype.itemsize or len(raw) > _limit():
                raise _Refused(f"array of shape {shape} and {dtype} needs {n * dtype.itemsize} bytes, its state holds {len(raw)}")
        super().__setstate__((version, shape, dtype, fortran, raw))


def _reconstruct(subtype, shape, dtype):
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``: an empty array that ``__setstate__`` then fills."""
    if subtype is not _NDARRAY:
        raise _Refused(f"_reconstruct of {subtype!r} refused: only numpy.ndarray")
    if _count(shape, "_reconstruct") != 0:  # numpy always pickles (0,); the data comes with __setstate__
        raise _Refused(f"_reconstruct with shape {shape!r} refused: numpy pickles arrays with an empty shape")
    if not isinstance(dtype, (bytes, str)) or len(dtype) > 4:
        raise _Refused(f"_reconstruct with dtype {dtype!r} refused")
    return _multiarray._reconstruct(_CheckedArray, shape, dtype)


def _frombuffer(buf, dtype, shape, order):
    """numpy's protocol-5 ``_frombuffer(buffer, dtype, shape, order)``, with the sizes checked first."""
    dtype = _as_dtype(dtype, "_frombuffer")
    if dtype.hasobject:
        raise _Refused("_frombuffer of an object dtype refused")
    if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)):
        raise _Refused(f"_frombuffer of a {type(buf).__name__} refused: expected bytes")
    if order not in ("C", "F"):
        raise _Refused(f"_frombuffer order {order!r} refused")
    nbytes = _count(shape, "_frombuffer") * dtype.itemsize
    if nbytes != memoryview(buf).nbytes:
        raise _Refused(f"_frombuffer: shape {shape} of {dtype} needs {nbytes} bytes, the pickle gives {memoryview(buf).nbytes}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _scalar(dtype, data=None):
    """numpy's ``scalar(dtype, bytes)``: one item, its bytes given in full."""
    dtype = _as_dtype(dtype, "scalar")
    if dtype.hasobject:
        return _multiarray.scalar(dtype, data)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _Refused(f"scalar of {dtype} needs {dtype.itemsize} bytes")
    return _multiarray.scalar(dtype, data)


def _data_ctor(t):
    """``bytes`` / ``bytearray`` from data only: ``bytearray(1500000000)`` is an allocation, not data."""

    def make(*args):
        if args and not isinstance(args[0], (bytes, bytearray, str, list)):
            raise _Refused(f"{t.__name__}({type(args[0]).__name__}) refused: only {t.__name__} of given data")
        if len(args) > 2 or (len(args) == 2 and not isinstance(args[1], str)):
            raise _Refused(f"{t.__name__} with {len(args)} arguments refused")
        return t(*args)

    return make


def _encode(obj, encoding="utf-8"):
    """``_codecs.encode(str, "latin1")``: how Python 3 protocol-2 pickles write bytes."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise _Refused("_codecs.encode refused: only a string to latin1")
    return obj.encode("latin1")


_ALLOWED: dict[tuple[str, str], object] = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _DtypeSpec}
for _mod in _NUMPY_MULTIARRAY:
    _ALLOWED[(_mod, "_reconstruct")] = _reconstruct
    _ALLOWED[(_mod, "scalar")] = _scalar
for _mod in _NUMPY_NUMERIC:
    _ALLOWED[(_mod, "_frombuffer")] = _frombuffer
# Plain data constructors, under Python 3's and Python 2's module names.
for _mod in ("builtins", "__builtin__"):
    _ALLOWED[(_mod, "bytes")] = _data_ctor(bytes)
    _ALLOWED[(_mod, "bytearray")] = _data_ctor(bytearray)
    _ALLOWED[(_mod, "complex")] = complex
    _ALLOWED[(_mod, "set")] = set
    _ALLOWED[(_mod, "frozenset")] = frozenset
_ALLOWED[("_codecs", "encode")] = _encode


def _scan(data: bytes, where: str) -> None:
    """Reads the opcode stream without running it: every declared length must fit in the file, memo
    indices come in sequence, no opcode that is not plain data (persistent ids, extension codes,
    instance construction), no global outside the allowed ones."""
    strings: list[str] = []  # the last strings pushed: STACK_GLOBAL's module and name
    memo = 0  # memo slots so far: picklers number them 0, 1, 2, ...
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            name = op.name
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if not isinstance(arg, int) or not 0 <= arg <= memo:
                    # the unpickler sizes its memo table to the index: 10 bytes could ask for 32 GB
                    raise _Refused(f"{where}: memo index {arg} out of sequence (a memory bomb?)")
                memo = max(memo, arg + 1)
            elif name == "MEMOIZE":
                memo += 1
            if name in _REFUSED_OPCODES:
                raise _Refused(f"{where}: pickle opcode {name} refused (persistent ids, extension codes and "
                               "instance construction are not plain data)")
            module = qual = None
            if name == "GLOBAL":
                module, _, qual = arg.partition(" ")
            elif name == "STACK_GLOBAL" and len(strings) == 2:
                module, qual = strings
            if module is not None and (module, qual) not in _ALLOWED:
                raise _Refused(f"{where}: refused to load {module}.{qual}: only numpy arrays, lists, dicts, "
                               "tuples and plain scalars are allowed in this pickle")
            if isinstance(arg, str) and "UNICODE" in name:
                strings = (strings + [arg])[-2:]
            elif name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"):
                strings = []  # memo-fetched names are left to find_class
    except _Refused:
        raise
    except Exception as exc:  # truncated stream, a length that runs past the end, unknown opcode
        raise FormatError(f"{where}: not a readable pickle ({type(exc).__name__}: {str(exc)[:200]})") from None


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _children(obj) -> list:
    if isinstance(obj, dict):
        return [x for kv in obj.items() for x in kv]
    if isinstance(obj, np.ndarray):  # an object array
        return list(obj.flat)
    return list(obj)


def _finish(root):
    """The loaded object with plain ``ndarray`` / ``dtype`` in place of the checking stand-ins.

    Walks without recursion; shared references stay shared (each object is
    visited once), self-references and nesting deeper than :data:`MAX_DEPTH`
    are refused.
    """
    done: dict[int, tuple[object, int]] = {}  # id -> (rebuilt object, height)
    entered: set[int] = set()
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:
        obj, exiting = stack.pop()
        oid = id(obj)
        if exiting:
            kids = [done[id(c)] for c in _children(obj)]
            height = 1 + max((h for _, h in kids), default=0)
            if height > MAX_DEPTH:
                raise _Refused(f"containers nested more than {MAX_DEPTH} deep")
            items = [k for k, _ in kids]
            if isinstance(obj, dict):
                new = dict(zip(items[0::2], items[1::2]))
            elif isinstance(obj, np.ndarray):
                new = np.empty(obj.shape, dtype=object)
                for i, item in enumerate(items):
                    new.flat[i] = item
            else:
                new = type(obj)(items)
            entered.discard(oid)
            done[oid] = (new, height)
            continue
        if oid in done:
            continue
        if oid in entered:
            raise _Refused("a container holds itself (self-referential data)")
        if isinstance(obj, _DtypeSpec):
            done[oid] = (obj.dtype, 1)
        elif isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
            done[oid] = (obj.view(np.ndarray), 1)
        elif isinstance(obj, _CONTAINERS) or isinstance(obj, np.ndarray):
            entered.add(oid)
            stack.append((obj, True))
            stack.extend((c, False) for c in _children(obj))
        else:
            done[oid] = (obj, 1)
    return done[id(root)][0]


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
    """Loads a pickle holding only containers, scalars and numpy arrays, its sizes bounded.

    Raises:
        FormatError: the file is missing, corrupt, references anything else,
            nests containers too deep, or declares sizes it does not hold.
    """
    path = Path(path)
    data = read_bytes(path, None, FormatError, "file")  # regular files only: a FIFO would block
    _scan(data, str(path))
    try:
        return _finish(_RestrictedUnpickler(io.BytesIO(data), str(path)).load())
    except _Refused as exc:
        raise FormatError(f"{path}: {exc}") from None
    except FormatError:
        raise
    except MemoryError:
        raise FormatError(f"{path}: does not fit in memory") from None
    except Exception as exc:  # truncated or corrupt stream, a reconstructor given wrong arguments
        raise FormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {str(exc)[:200]})") from None
