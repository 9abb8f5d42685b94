"""Opening and parsing the user's files without hanging, recursing or tracing back.

One place for what every reader needs:

* :func:`open_regular` opens regular files only: a FIFO, a device or a socket
  under a data file's name is refused instead of blocking forever; a missing
  file, a folder, a name with a NUL byte, a name that cannot be encoded or that
  is too long for the file system each give one line naming the file.
* :func:`open_image` is ``PIL.Image.open`` on a regular file only.
* :func:`read_json_file` / :func:`read_yaml_file` turn syntax errors, text that
  is not UTF-8 and nesting deeper than :data:`MAX_DEPTH` (which would raise
  ``RecursionError`` in the parser or later) into one-line errors. YAML aliases
  that expand to more than :data:`MAX_YAML_VALUES` values (a "billion laughs"
  file) or refer to themselves are refused before anything walks them.

Errors are :class:`~pss_bench.errors.FormatError` subclasses chosen by the
caller, so a bad GT reads as a GT error and a bad prediction as a prediction
error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from pss_bench.errors import FormatError
from pss_bench.text import printable

#: Deepest nesting of lists/objects accepted in a JSON or YAML file. COCO
#: panoptic JSONs nest 5 deep, manifests and configs 4.
MAX_DEPTH = 64
#: Most values a YAML file may expand to (its aliases counted every time they are used).
MAX_YAML_VALUES = 1_000_000

_KINDS = (
    (stat.S_ISFIFO, "a special file (FIFO, named pipe)"),
    (stat.S_ISSOCK, "a special file (socket)"),
    (stat.S_ISCHR, "a special file (character device)"),
    (stat.S_ISBLK, "a special file (block device)"),
    (stat.S_ISDIR, "a folder"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a special file"


def open_regular(path: str | os.PathLike, where: str | None = None, error_cls: type[Exception] = FormatError,
                 what: str = "file") -> BinaryIO:
    """Opens ``path`` for binary reading if it is a regular file (symlinks followed).

    The file is opened non-blocking, so a FIFO never blocks; its type is then
    checked on the open descriptor.

    Args:
        path: the file.
        where: the message prefix (default: the path).
        error_cls: the exception raised, called with the one-line message
            (a :class:`FormatError` subclass, or a caller's own such as the
            caches' ``BadEntry``).
        what: what the file should be, for the messages (``"PNG file"``).

    Raises:
        error_cls: missing, not a regular file, or not openable; one line.
    """
    fd, _ = _open_regular_fd(path, where, error_cls, what)
    try:
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_regular_fd(path, where, error_cls, what) -> tuple[int, int]:
    """``(descriptor, size)`` of a regular file opened for reading (blocking again); see :func:`open_regular`."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise error_cls(_prefix(where, path) + f"{what} not found") from None
    except IsADirectoryError:
        raise error_cls(_prefix(where, path) + f"expected a {what}, found a folder") from None
    except ValueError:  # embedded NUL byte
        raise error_cls(_prefix(where, path) + "the file name contains a NUL byte") from None
    except UnicodeEncodeError:
        raise error_cls(_prefix(where, path) + "the file name cannot be encoded for the file system "
                        "(lone surrogate?)") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise error_cls(_prefix(where, path) + "file name too long for the file system") from None
        raise error_cls(_prefix(where, path) + f"cannot open the {what} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error_cls(_prefix(where, path) + f"expected a {what}, found {_kind(st.st_mode)}")
        if _O_NONBLOCK:
            os.set_blocking(fd, True)
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0) if hasattr(os, "set_blocking") else 0
_OPEN_FLAGS = os.O_RDONLY | _O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _prefix(where: str | None, path) -> str:
    """The message prefix: ``where`` (default: the path) and a colon; none for ``where=""``."""
    if where == "":
        return ""
    return printable(where if where is not None else path) + ": "


def read_bytes(path: str | os.PathLike, where: str | None = None, error_cls: type[Exception] = FormatError,
               what: str = "file", max_bytes: int | None = None) -> bytes:
    """The whole content of a regular file (see :func:`open_regular`), read without a file object.

    Args:
        max_bytes: refuse a file larger than this (checked before reading).

    Raises:
        error_cls: as :func:`open_regular`, larger than ``max_bytes``, or unreadable; one line.
    """
    fd, size = _open_regular_fd(path, where, error_cls, what)
    try:
        if max_bytes is not None and size > max_bytes:
            raise error_cls(_prefix(where, path) + f"{size} bytes, more than such a {what} can have")
        # The size and one byte more in the first read: a file that grew since fstat is read to its end.
        chunks, total = [], 0
        while chunk := os.read(fd, max(size + 1 - total, 1 << 16)):
            chunks.append(chunk)
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise error_cls(_prefix(where, path) + f"more than {max_bytes} bytes (it grew while read), "
                                f"more than such a {what} can have")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as exc:
        raise error_cls(_prefix(where, path) + f"cannot read the {what} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def check_nesting(obj, where: str, error_cls: type[FormatError] = FormatError, *, max_depth: int = MAX_DEPTH,
                  max_values: int | None = None) -> None:
    """Raises unless ``obj`` nests at most ``max_depth`` deep (and, if given, holds at most ``max_values`` containers).

    Breadth-first and without recursion. Shared containers (YAML aliases) are
    counted every time they appear, which is what a later walk would cost; a
    container that holds itself shows up as exceeding the depth.
    """
    level = [obj] if type(obj) is dict or type(obj) is list else []
    depth = 0
    seen = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise error_cls(f"{where}: nested more than {max_depth} levels deep (or refers to itself)")
        nxt: list = []
        extend = nxt.extend
        if max_values is None:
            for v in level:
                if type(v) is dict:
                    v = v.values()
                extend([c for c in v if type(c) is dict or type(c) is list])
        else:
            for v in level:
                if type(v) is dict:
                    v = v.values()
                extend([c for c in v if type(c) is dict or type(c) is list])
                if seen + len(nxt) > max_values:
                    raise error_cls(f"{where}: expands to more than {max_values} lists/mappings (repeated aliases?)")
            seen += len(nxt)
        level = nxt


def read_json_file(path: str | os.PathLike, error_cls: type[FormatError] = FormatError):
    """Loads a JSON file, turning I/O, syntax, encoding and nesting errors into one-line messages."""
    import json

    path = Path(path)
    raw = read_bytes(path, None, error_cls, "JSON file")
    where = printable(path)
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise error_cls(f"{where}: malformed or truncated JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise error_cls(f"{where}: not UTF-8 text") from None
    except RecursionError:
        raise error_cls(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # e.g. an integer past sys.get_int_max_str_digits()
        raise error_cls(f"{where}: a JSON value cannot be read ({' '.join(str(exc).split())})") from None
    check_nesting(obj, where, error_cls)
    return obj


def read_yaml_file(path: str | os.PathLike, error_cls: type[FormatError] = FormatError):
    """Loads a YAML file with ``yaml.safe_load``; every problem is one line naming the file.

    Refused: text that is not UTF-8, syntax errors, nesting deeper than
    :data:`MAX_DEPTH`, aliases that refer to themselves or expand past
    :data:`MAX_YAML_VALUES`, and scalars the YAML resolver cannot build (an
    integer with too many digits).
    """
    path = Path(path)
    raw = read_bytes(path, None, error_cls, "YAML file")
    where = printable(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error_cls(f"{where}: not UTF-8 text (byte {exc.start})") from None
    return parse_yaml_text(text, where, error_cls)


def parse_yaml_text(text: str, where: str, error_cls: type[FormatError] = FormatError):
    """``yaml.safe_load(text)`` with the checks of :func:`read_yaml_file` (``where`` names the source)."""
    import yaml

    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = " ".join(str(exc).split())
        raise error_cls(f"{where}: not valid YAML ({msg})") from None
    except RecursionError:
        raise error_cls(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. int() past sys.get_int_max_str_digits
        raise error_cls(f"{where}: a YAML value cannot be read ({' '.join(str(exc).split())})") from None
    check_nesting(obj, where, error_cls, max_values=MAX_YAML_VALUES)
    return obj


@contextlib.contextmanager
def open_image(path: str | os.PathLike, where: str | None = None, error_cls: type[FormatError] = FormatError,
               what: str = "image file") -> Iterator:
    """``PIL.Image.open`` on a regular file only (see :func:`open_regular`), as a context manager.

    Raises:
        error_cls: not a regular file, not an image PIL can identify, or one
            PIL refuses as a decompression bomb; one line. Errors raised later
            while decoding (``im.load()``) are the caller's to catch.
    """
    from PIL import Image, UnidentifiedImageError

    where = printable(where if where is not None else path)
    with open_regular(path, where, error_cls, what) as f:
        try:
            im = Image.open(f)
        except Image.DecompressionBombError as exc:
            raise error_cls(f"{where}: image too large to decode safely ({exc})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise error_cls(f"{where}: not a readable image ({exc})") from None
        with im:
            yield im
