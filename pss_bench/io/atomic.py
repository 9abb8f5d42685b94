"""Write files so that a failure never leaves a partial output behind.

Every output of pss-bench is first written under a hidden sibling name and
renamed onto its target at the end. This module owns those names and what
happens around them:

* temporary files and folders are created with the permissions a plain
  ``open()`` / ``mkdir()`` would give (``0o666`` / ``0o777`` less the umask),
  not ``mkstemp``'s private ``0o600``;
* a full disk (``ENOSPC``, ``EDQUOT``) becomes one :class:`DiskFullError`
  naming the output being written, and the temporary is removed;
* temporaries are named ``.<target name>.<host>-<pid>-<random>.tmp`` (``.old``
  for the previous version of a folder being replaced), so the next run can
  tell the leftovers of a killed process from a write in progress and remove
  them (:func:`clean_stale`);
* a folder is replaced by an atomic exchange where the file system supports
  it, else by two renames whose interruption the next run repairs: the
  previous version is put back.

Nothing here knows what is being written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from pss_bench.errors import DiskFullError

log = logging.getLogger(__name__)

_DISK_FULL_ERRNOS = {errno.ENOSPC: "disk full", getattr(errno, "EDQUOT", -1): "disk quota exceeded"}
# A temp name keeps at most this much of its target's name (NAME_MAX is 255 on common file systems).
_STEM_MAX = 200
_TEMP_RE = re.compile(r"^\.(?P<stem>.*)\.(?P<host>[0-9a-f]{6})-(?P<pid>[0-9]+)-(?P<rand>[0-9a-z]{8})\.(?P<kind>tmp|old)$")
# Leftovers of another host (a shared file system) are removed only once this old.
FOREIGN_STALE_SECONDS = 24 * 3600


def _host_tag() -> str:
    import socket  # here, not at the top: every command's path imports this module

    return hashlib.sha256(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:6]


def _stem(name: str) -> str:
    return name[:_STEM_MAX]


def temp_sibling(target: str | os.PathLike, kind: str = "tmp") -> Path:
    """A fresh hidden name next to ``target`` that :func:`clean_stale` recognises (nothing is created)."""
    target = Path(target)
    rand = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    return target.with_name(f".{_stem(target.name)}.{_host_tag()}-{os.getpid()}-{rand}.{kind}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    return True


def _is_stale(entry: os.DirEntry | Path, host: str, pid: int) -> bool:
    if host == _host_tag():
        return not _pid_alive(pid)
    try:
        age = time.time() - os.lstat(entry).st_mtime
    except OSError:
        return False
    return age > FOREIGN_STALE_SECONDS


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # another user's, in a shared folder: theirs to clean
        log.debug("could not remove the leftover %s (%s)", path, exc)


def clean_stale(target: str | os.PathLike) -> None:
    """Repairs and removes what killed runs left next to ``target``.

    A stale ``.old`` copy of ``target`` (a folder replacement interrupted
    between its two renames) is renamed back onto ``target`` when ``target``
    is missing; every other stale temporary of ``target`` is removed. Entries
    of a live process (this host, running pid) are left alone.
    """
    target = Path(target)
    folder = target.parent
    stem = _stem(target.name)
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(f".{stem}.")]
    except OSError:
        return
    stale: list[tuple[float, Path, str]] = []
    for e in entries:
        m = _TEMP_RE.match(e.name)
        if m is None or m["stem"] != stem or not _is_stale(e, m["host"], int(m["pid"])):
            continue
        try:
            mtime = e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        stale.append((mtime, Path(e.path), m["kind"]))
    if not stale:
        return
    if not os.path.lexists(target):
        olds = sorted((s for s in stale if s[2] == "old"), key=lambda s: s[0])
        if olds:
            try:
                os.replace(olds[-1][1], target)
                log.warning("restored %s from %s (a replacement of it was interrupted)", target, olds[-1][1].name)
            except OSError:  # another process restored it first
                pass
            stale = [s for s in stale if s[1] != olds[-1][1]]
    for _, path, _ in stale:
        log.info("removing %s, left by a killed run", path)
        _remove(path)


def _is_disk_full(exc: BaseException, folder: Path) -> str | None:
    """``"disk full"`` / ``"disk quota exceeded"`` when ``exc`` comes from a full disk, else ``None``."""
    if isinstance(exc, DiskFullError):
        return None
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:  # torch raises its own error while handling the ENOSPC
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS:
            return _DISK_FULL_ERRNOS[e.errno]
        e = e.__cause__ or e.__context__
    if isinstance(exc, RuntimeError):  # torch's C++ writer hides the errno behind its own message
        try:
            st = os.statvfs(folder)
        except OSError:
            return None
        if st.f_bavail == 0 or st.f_favail == 0:
            return "disk full"
    return None


@contextlib.contextmanager
def disk_full_as_error(target: str | os.PathLike, *, rename: bool = False) -> Iterator[None]:
    """Turns a full disk inside the block into one :class:`DiskFullError` naming ``target``.

    Args:
        target: the output the user asked for.
        rename: also re-word a :class:`DiskFullError` raised further in (by
            the writer of a file inside a staging folder) to name ``target``.
    """
    target = Path(target)
    try:
        yield
    except DiskFullError as exc:
        if rename and exc.target != target:
            raise DiskFullError(target, exc.what) from None
        raise
    except (OSError, RuntimeError) as exc:
        what = _is_disk_full(exc, target.parent)
        if what is None:
            raise
        raise DiskFullError(target, what) from None


def _create_file(target: Path) -> Path:
    for _ in range(100):
        tmp = temp_sibling(target)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{target}: could not create a temporary file next to it")  # pragma: no cover


def _inside_staging(path: Path) -> bool:
    """Whether ``path`` lies in a staging folder of ours (fresh: nothing stale to look for)."""
    return any(_TEMP_RE.match(part) for part in path.parent.parts)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renames it onto ``path`` on success.

    The temporary gets the permissions of a plain ``open()`` (``0o666`` less
    the umask). On an exception it is removed and ``path`` is untouched; a
    full disk raises :class:`DiskFullError` naming ``path``. Stale
    temporaries of ``path`` left by killed runs are removed first.
    """
    path = Path(path)
    with disk_full_as_error(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not _inside_staging(path):
            clean_stale(path)
        tmp_path = _create_file(path)
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
            raise


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Serialises ``obj`` to ``path`` atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, sort_keys=False)
            f.write("\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Appends ``line`` and a newline to ``path``; a failed append leaves no partial line.

    Raises:
        DiskFullError: the disk is full (the file is cut back to its old size).
    """
    path = Path(path)
    data = (line + "\n").encode("utf-8")
    with disk_full_as_error(path):
        with open(path, "ab") as f:
            start = f.tell()
            try:
                f.write(data)
                f.flush()
            except BaseException:
                with contextlib.suppress(OSError):
                    f.truncate(start)
                raise


def make_staging_dir(target: str | os.PathLike) -> Path:
    """Creates a hidden sibling folder to build ``target`` in (mode ``0o777`` less the umask).

    Stale staging folders of ``target`` left by killed runs are removed (and
    an interrupted replacement of ``target`` is repaired) first.
    """
    target = Path(target)
    with disk_full_as_error(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
        for _ in range(100):
            stage = temp_sibling(target)
            try:
                os.mkdir(stage, 0o777)
            except FileExistsError:
                continue
            return stage
    raise FileExistsError(f"{target}: could not create a staging folder next to it")  # pragma: no cover


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swaps ``a`` and ``b`` atomically (Linux ``renameat2``); ``False`` where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish_dir(stage: str | os.PathLike, target: str | os.PathLike) -> None:
    """Moves the finished folder ``stage`` onto ``target``, replacing what is there.

    With an existing ``target`` the two are exchanged atomically where the
    file system allows it; elsewhere ``target`` is first renamed to a
    ``.old`` sibling, which the next :func:`clean_stale` puts back if the
    process is killed before ``stage`` is in place.
    """
    stage, target = Path(stage), Path(target)
    if not os.path.lexists(target) or (target.is_dir() and not target.is_symlink() and not any(target.iterdir())):
        os.replace(stage, target)
        return
    if _exchange(stage, target):
        _remove(stage)  # now the previous version
        return
    old = temp_sibling(target, "old")
    os.replace(target, old)
    try:
        os.replace(stage, target)
    except BaseException:
        os.replace(old, target)
        raise
    _remove(old)


@contextlib.contextmanager
def staging_area(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a hidden sibling folder of ``target`` to build in; it is removed when the block ends.

    The folder comes from :func:`make_staging_dir` (a killed run's leftovers
    are cleaned first) and a full disk inside the block is one
    :class:`~pss_bench.errors.DiskFullError`. Whatever the block moved out of
    the folder (with :func:`publish_dir` or :func:`os.replace`) stays; the
    rest is removed, on success and on failure. :func:`staged_dir` is the
    common case, the whole folder published onto ``target``.
    """
    target = Path(target)
    stage = make_staging_dir(target)
    try:
        with disk_full_as_error(target, rename=True):
            yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike, *, before: Any = None, before_publish: Any = None) -> Iterator[Path]:
    """Yields a staging folder next to ``target``, published onto it when the block succeeds.

    The one way a folder output is written: the staging folder comes from
    :func:`staging_area`, :func:`publish_dir` moves it into place, and any
    failure removes it.

    Args:
        before: called once the staging folder exists (cleaning may have put
            back a folder a killed run was replacing), before the block: a
            check of ``target`` that may refuse the work.
        before_publish: called after the block, before publishing (a last
            check of ``target``, or clearing a file in its way).
    """
    with staging_area(target) as stage:
        if before is not None:
            before()
        yield stage
        if before_publish is not None:
            before_publish()
        publish_dir(stage, target)
