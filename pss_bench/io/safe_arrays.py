"""Reading ``.npy`` and ``.npz`` files from users with every size bounded before it is allocated.

``np.load`` trusts a file: an ``.npz`` member that is not an ``.npy`` comes
back as raw bytes (a pickle, say), a header's shape is allocated as declared,
a malformed header raises ``tokenize`` errors, and a compressed member is
inflated to whatever size it claims. Here a file is read only when

* every member asked for is an ``.npy`` of a plain numeric dtype (no objects,
  no structured records), version 1 or 2;
* its declared shape, its size in bytes and (for ``.npz``) the member's
  declared uncompressed size agree and stay under :func:`max_array_bytes`;
* a compressed member expands at most :data:`MAX_EXPANSION` times (a zip
  bomb does a thousandfold), and only ``stored`` / ``deflate`` members occur.

Every refusal is one line naming the file (and member). Nothing here knows
what the arrays mean.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from pss_bench.errors import FormatError
from pss_bench.io.safe_read import open_regular

MAX_BYTES_ENV = "PSS_BENCH_MAX_ARRAY_BYTES"
DEFAULT_MAX_BYTES = 2 * 2**30
# A member larger than this must not expand more than MAX_EXPANSION times: float data
# compresses a few times at most, zeros a thousandfold.
MAX_EXPANSION = 200
EXPANSION_CHECK_BYTES = 64 * 2**20
MAX_HEADER_BYTES = 10_000  # numpy's own limit for trusted headers
_KINDS = "biufc"


def max_array_bytes() -> int:
    """The largest array read from a user's file, in bytes (``$PSS_BENCH_MAX_ARRAY_BYTES``, default 2 GiB)."""
    raw = os.environ.get(MAX_BYTES_ENV)
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value > 0:
            return value
    return DEFAULT_MAX_BYTES


def _open(path: Path, where: str, error_cls: type[FormatError], what: str):
    """``path`` opened by :func:`~pss_bench.io.safe_read.open_regular`; ``FileNotFoundError`` when nothing has its name.

    Anything else under the name (a folder, a FIFO, a broken link) is refused
    by ``error_cls`` instead of being taken as absent.
    """
    if not os.path.lexists(path):
        raise FileNotFoundError(path)
    return open_regular(path, where, error_cls, what)


def _limit_hint(limit: int) -> str:
    return f"the limit is {limit} bytes; raise it with {MAX_BYTES_ENV}"


def _read_header(f, where: str, error_cls: type[FormatError]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` stream ``f``, checked; ``f`` is left at the data."""
    fmt = np.lib.format
    magic = f.read(len(fmt.MAGIC_PREFIX))
    if magic != fmt.MAGIC_PREFIX:
        raise error_cls(f"{where}: not a .npy array (no .npy magic; refusing raw bytes or pickles)")
    version = tuple(f.read(2))
    try:
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=MAX_HEADER_BYTES)
        else:
            raise error_cls(f"{where}: unsupported .npy format version {version}")
    except FormatError:
        raise
    except Exception as exc:  # numpy raises ValueError, SyntaxError, tokenize errors, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error_cls(f"{where}: malformed .npy header ({type(exc).__name__}: {msg[:200]})") from None
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in _KINDS or dtype.fields is not None \
            or dtype.subdtype is not None:
        raise error_cls(f"{where}: dtype {dtype} is not a plain numeric array (objects and records are refused)")
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise error_cls(f"{where}: malformed .npy shape {shape!r}")
    return shape, bool(fortran), dtype


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    n = dtype.itemsize
    for s in shape:
        n *= s  # Python ints: no overflow
    return n


def _read_data(f, shape, fortran, dtype, available: int, where: str, error_cls, limit: int) -> np.ndarray:
    nbytes = _nbytes(shape, dtype)
    if nbytes > limit:
        raise error_cls(f"{where}: declared shape {shape} of {dtype} is {nbytes} bytes; {_limit_hint(limit)}")
    if nbytes > available:
        raise error_cls(f"{where}: truncated: shape {shape} of {dtype} needs {nbytes} bytes, the file holds {available}")
    buf = bytearray(nbytes)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        n = f.readinto(view[got:])
        if not n:
            raise error_cls(f"{where}: truncated: shape {shape} of {dtype} needs {nbytes} bytes, the file holds {got}")
        got += n
    arr = np.frombuffer(buf, dtype=dtype)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def read_npy(path: str | os.PathLike, where: str | None = None, *, error_cls: type[FormatError] = FormatError,
             max_bytes: int | None = None) -> np.ndarray:
    """Reads one ``.npy`` file of a plain numeric dtype, its size bounded before allocating.

    Args:
        path: the file.
        where: how messages name it (default: the path).
        error_cls: the :class:`FormatError` subclass raised.
        max_bytes: the largest array accepted (default :func:`max_array_bytes`).

    Raises:
        error_cls: a missing file, a file that is not a ``.npy`` of a numeric
            dtype, a malformed header, a declared size over the limit or
            larger than the file.
    """
    path = Path(path)
    where = where or str(path)
    limit = max_array_bytes() if max_bytes is None else max_bytes
    try:
        with _open(path, where, error_cls, ".npy file") as f:
            shape, fortran, dtype = _read_header(f, where, error_cls)
            available = os.fstat(f.fileno()).st_size - f.tell()
            return _read_data(f, shape, fortran, dtype, available, where, error_cls, limit)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise error_cls(f"{where}: cannot be read ({exc.strerror or exc})") from None


def read_npz(path: str | os.PathLike, names: Sequence[str], where: str | None = None, *,
             error_cls: type[FormatError] = FormatError, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Reads the arrays ``names`` of an ``.npz`` file (as written by ``np.savez``), bounded.

    Other members are never read. Each named member must be an ``.npy`` of a
    plain numeric dtype whose declared size agrees with the zip entry's.

    Returns:
        ``{name: array}`` for every name present (a missing name is the
        caller's to report; compare with ``names``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        error_cls: not a zip file, a member that is not a ``.npy`` (a raw
            pickle, say), a malformed header, a compression other than
            stored/deflate, or a declared or expanded size over the limits.
    """
    path = Path(path)
    where = where or str(path)
    limit = max_array_bytes() if max_bytes is None else max_bytes
    out: dict[str, np.ndarray] = {}
    try:
        with _open(path, where, error_cls, ".npz file") as raw, zipfile.ZipFile(raw) as zf:
            members = {i.filename: i for i in zf.infolist()}
            for name in names:
                info = members.get(f"{name}.npy")
                if info is None:
                    continue
                here = f"{where}: array {name!r}"
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise error_cls(f"{here}: compression method {info.compress_type} refused (np.savez writes stored or deflate)")
                if info.file_size > limit + MAX_HEADER_BYTES + 16:
                    raise error_cls(f"{here}: expands to {info.file_size} bytes; {_limit_hint(limit)}")
                if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > EXPANSION_CHECK_BYTES \
                        and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
                    raise error_cls(f"{here}: {info.compress_size} compressed bytes expand to {info.file_size} "
                                    f"(over {MAX_EXPANSION}x: a zip bomb?)")
                with zf.open(info) as f:
                    shape, fortran, dtype = _read_header(f, here, error_cls)
                    available = info.file_size - f.tell()
                    out[name] = _read_data(f, shape, fortran, dtype, available, here, error_cls, limit)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        # RuntimeError: an encrypted member (zipfile asks for a password)
        raise error_cls(f"{where}: not a readable .npz ({type(exc).__name__}: {str(exc)[:200]})") from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise error_cls(f"{where}: not a readable .npz ({exc.strerror or exc})") from None
    return out


def npz_member_names(path: str | os.PathLike) -> list[str]:
    """The array names of an ``.npz`` (its ``*.npy`` members without the suffix), read from the directory only."""
    with zipfile.ZipFile(path) as zf:
        return sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))
