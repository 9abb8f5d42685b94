"""Threads and processes: how many to use, the ordered thread map over images, and a map over forked workers.

Decoding PNGs and scoring images release the GIL, so the per-image loops of
the library run through :func:`map_ordered`; ``pss-bench pq`` scores images in
forked worker processes (:func:`map_forked`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

from pss_bench.errors import PssBenchError

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def fork_available() -> bool:
    """Whether :func:`map_forked` can run here (Linux, where ``fork`` is cheap and safe for numpy)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside the block (as it was after).

    For blocks that build many containers and no reference cycles, such as
    parsing a JSON file: every 700 new containers the collector runs, and its
    older generations walk every object alive, freeing nothing here. Objects
    without cycles are freed by reference counting either way.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class WorkerDied(PssBenchError):
    """A worker process ended without reporting its item (killed, out of memory, or crashed)."""

    def __init__(self, index: int, how: str) -> None:
        self.index = index
        self.how = how
        super().__init__(f"item {index}: the worker process {how}")

    def __reduce__(self):
        return type(self), (self.index, self.how)


def map_forked(fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[tuple[int, R]]:
    """``(i, fn(items[i]))`` for every item, computed in ``workers`` forked processes.

    Worker ``k`` takes items ``k, k + workers, ...`` in increasing order and
    sends each result back through a pipe as soon as it has it; results
    arrive in completion order. ``fn``, ``items`` and everything they use are
    inherited through ``fork``: nothing is pickled on the way in, only the
    results (and exceptions) on the way out.

    Errors: like :meth:`concurrent.futures.Executor.map`, the exception of the
    smallest failing index is raised (re-raised in this process, with the
    worker's traceback as a note), once every item before it is done. The
    workers are killed and reaped when the iterator ends, fails or is closed
    (Ctrl-C included).

    Call it from a process with no other threads running (a command-line
    process, not a server or a training loop): a lock held by another thread
    at the fork stays locked in the children.

    Raises:
        WorkerDied: a worker ended without a result for the item it was on.
        KeyboardInterrupt: a worker was ended by SIGINT (Ctrl-C reaches the
            whole process group; the workers' may arrive first).
    """
    import pickle
    import select
    import signal
    import struct

    n = len(items)
    workers = max(1, min(workers, n))
    frame = struct.Struct("<Q")
    children: list[tuple[int, int]] = []  # (pid, read end)
    pid_of: dict[int, int | None] = {}  # read end -> pid, None once reaped
    # The objects alive now (the parsed JSONs above all) move to the collector's permanent generation:
    # no collection in a worker walks them, which would write to every page they are on (copy-on-write).
    # (Not when the caller froze objects itself: unfreezing after would undo that.)
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        for k in range(workers):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                os.close(r)
                for _, other in children:
                    os.close(other)
                _worker(fn, items, k, workers, w, frame, pickle, signal)
            os.close(w)
            children.append((pid, r))
            pid_of[r] = pid

        bufs = {r: bytearray() for _, r in children}
        next_index = {r: k for k, (_, r) in enumerate(children)}  # the item each worker is on
        open_fds = set(bufs)
        poller = select.poll()  # not select.select: no limit on descriptor numbers
        for r in open_fds:
            poller.register(r, select.POLLIN)
        failure: tuple[int, BaseException] | None = None
        while open_fds:
            for r, _ in poller.poll():
                chunk = os.read(r, 1 << 16)
                if not chunk:  # the worker closed its pipe: it exited
                    open_fds.discard(r)
                    poller.unregister(r)
                    _, status = os.waitpid(pid_of[r], 0)
                    pid_of[r] = None
                    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT:
                        # Ctrl-C reached the worker first; this process's own KeyboardInterrupt may lag
                        raise KeyboardInterrupt
                    if next_index[r] < n:
                        how = (f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                               else f"exited with status {os.WEXITSTATUS(status)}")
                        if failure is None or next_index[r] < failure[0]:
                            failure = (next_index[r], WorkerDied(next_index[r], how))
                    continue
                buf = bufs[r]
                buf += chunk
                while len(buf) >= frame.size:
                    (size,) = frame.unpack_from(buf)
                    if len(buf) < frame.size + size:
                        break
                    kind, i, payload = pickle.loads(buf[frame.size:frame.size + size])
                    del buf[:frame.size + size]
                    if kind == "log":  # a worker's log record, handled here as if logged here
                        logging.getLogger(payload.name).handle(payload)
                    elif kind == "ok":
                        next_index[r] = i + workers
                        yield i, payload
                    else:  # the worker stops at its first error
                        next_index[r] = n
                        if failure is None or i < failure[0]:
                            failure = (i, payload)
            # Raise once no worker can still report an earlier item (they go in increasing order).
            if failure is not None and all(next_index[r] > failure[0] for r in open_fds):
                raise failure[1]
    finally:
        if freeze:
            gc.unfreeze()
        for pid in pid_of.values():
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
        for _, r in children:
            os.close(r)


def keep_freed_memory() -> None:
    """glibc only: this process keeps freed buffers of up to 32 MB for reuse instead of giving them back.

    For processes that live for one job (``pss-bench pq``, the workers of
    :func:`map_forked`); a library never calls it in its caller's process. A
    2048x1024 frame decodes into 8 MB buffers (two with Wuffs: its own and
    the array it copies into). With glibc's defaults the freed buffers were
    returned to the kernel after every frame and faulted in again for the
    next, about 4,000 page faults a frame: 0.4 s of system time on 48
    Cityscapes frames with Wuffs.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
    except (ValueError, OSError):  # not glibc (musl has no such name)
        return
    import ctypes  # (numpy has imported it already)

    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value
    libc.mallopt(m_trim_threshold, 64 << 20)


def _worker(fn, items, first: int, step: int, fd: int, frame, pickle, signal) -> None:
    """The body of a forked worker; ends the process with ``os._exit``."""
    code = 0

    def send(msg) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(frame.pack(len(data)) + data)
        while view:
            view = view[os.write(fd, view):]

    def ship(logger, record) -> None:
        # Instead of this process's handlers (whose stream may be a copy that nobody reads,
        # such as pytest's capture), the parent's: records enabled here are sent there.
        if not logger.disabled:
            send(("log", None, _portable_record(record)))

    try:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored stays ignored (nohup, `cmd &`)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it, workers just end
        logging.Logger.handle = ship  # this process only lives to run fn
        keep_freed_memory()
        for i in range(first, len(items), step):
            try:
                msg = ("ok", i, fn(items[i]))
            except BaseException as exc:  # noqa: BLE001  (re-raised in the parent)
                msg = ("error", i, _portable(exc))
            send(msg)
            if msg[0] != "ok":
                break
    except BaseException:  # noqa: BLE001  (the parent is gone, or the pipe broke)
        code = 1
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


def _portable_record(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` that pickles: its message formatted, its traceback as text."""
    record = logging.makeLogRecord(record.__dict__)
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    record.msg, record.args, record.exc_info = record.getMessage(), None, None
    import pickle

    try:
        pickle.dumps(record)
    except Exception:  # noqa: BLE001  (an ``extra=`` value that does not pickle: the standard fields only)
        standard = logging.makeLogRecord({}).__dict__
        record = logging.makeLogRecord({k: v for k, v in record.__dict__.items() if k in standard})
    return record


def _portable(exc: BaseException) -> BaseException:
    """``exc`` as it can cross a pipe: itself (with its traceback as a note) if it pickles, else a RuntimeError."""
    import pickle
    import traceback

    tb = "".join(traceback.format_exception(exc))
    try:
        if not isinstance(exc, PssBenchError):  # a bug: keep where it happened
            exc.add_note(f"(raised in a pss-bench worker process)\n{tb}")
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"in a pss-bench worker process: {tb}")


def map_ordered(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None,
                progress: Callable[[int, int], None] | None = None, name: str = "pss") -> Iterator[R]:
    """``fn`` over ``items`` on ``workers`` threads (default: :func:`default_workers`), results in order.

    One worker (or one item) runs in this thread. The first exception is
    re-raised in order; the items not started yet are cancelled and the
    running ones finished before it propagates (no thread outlives the call).

    Args:
        progress: called as ``progress(done, total)`` after each result.
        name: the threads' name prefix (seen in py-spy and tracebacks).
    """
    workers = workers or default_workers()
    total = len(items)
    if workers == 1 or total <= 1:
        for done, item in enumerate(items, 1):
            yield fn(item)
            if progress:
                progress(done, total)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as ex:
        try:
            for done, r in enumerate(ex.map(fn, items), 1):
                yield r
                if progress:
                    progress(done, total)
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise

