"""``map_forked``: every result once, the first error in item order, dead workers named, logs forwarded."""

from __future__ import annotations

import logging
import os
import time

import pytest

from pss_bench.errors import PssBenchError
from pss_bench.threads import WorkerDied, fork_available, map_forked

pytestmark = pytest.mark.skipif(not fork_available(), reason="forked workers are used on Linux only")


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_every_item_once(workers):
    items = list(range(11))
    got = dict(map_forked(_square, items, workers))
    assert got == {i: i * i for i in items}


def test_empty():
    assert list(map_forked(_square, [], 2)) == []


def _fail_at(bad: dict[int, BaseException], slow: set[int] = frozenset()):
    def fn(x: int) -> int:
        if x in slow:
            time.sleep(0.3)
        if x in bad:
            raise bad[x]
        return x

    return fn


def test_the_error_of_the_first_failing_item_is_raised_even_when_a_later_one_fails_first():
    # item 1 (worker 1) fails late, item 2 (worker 0) fails at once: item 1's error wins, as in Executor.map
    fn = _fail_at({1: PssBenchError("one"), 2: PssBenchError("two")}, slow={1})
    with pytest.raises(PssBenchError, match="^one$"):
        list(map_forked(fn, list(range(6)), 2))


def test_results_before_the_error_arrive_and_a_bug_keeps_its_type_and_traceback():
    fn = _fail_at({4: ValueError("boom")})
    got = {}
    with pytest.raises(ValueError, match="boom") as ei:
        for i, r in map_forked(fn, list(range(8)), 2):
            got[i] = r
    assert {0, 1, 2, 3} <= set(got)
    assert any("worker process" in note and "test_threads.py" in note for note in ei.value.__notes__)


def test_a_worker_that_dies_is_named_by_its_item():
    def fn(x: int) -> int:
        if x == 3:
            os._exit(7)
        return x

    with pytest.raises(WorkerDied) as ei:
        list(map_forked(fn, list(range(6)), 2))
    assert ei.value.index == 3 and "exited with status 7" in str(ei.value)


def test_a_worker_killed_by_a_signal():
    import signal

    def fn(x: int) -> int:
        if x == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with pytest.raises(WorkerDied, match="killed by signal 9"):
        list(map_forked(fn, [0, 1], 2))


def test_a_worker_ended_by_ctrl_c_is_an_interrupt_here():
    import signal

    def fn(x: int) -> int:
        if x == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return x

    # Ctrl-C live here, whatever this process inherited (a background job of a script starts with SIGINT ignored)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            list(map_forked(fn, [0, 1, 2, 3], 2))
    finally:
        signal.signal(signal.SIGINT, old)


def test_an_ignored_ctrl_c_stays_ignored_in_the_workers():  # `pss-bench pq ... &`, nohup
    import signal

    def fn(x: int) -> int:
        if x == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return x

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert sorted(i for i, _ in map_forked(fn, [0, 1, 2, 3], 2)) == [0, 1, 2, 3]
    finally:
        signal.signal(signal.SIGINT, old)


def test_worker_log_records_reach_this_process(caplog):
    log = logging.getLogger("pss_bench.test_threads")

    def fn(x: int) -> int:
        log.warning("item %d says %s", x, {"a": object()} if x == 1 else "hi",  # args need not pickle,
                    extra={"thing": (lambda: None) if x == 2 else 1})  # nor extras
        log.debug("not enabled, not sent")
        return x

    with caplog.at_level(logging.WARNING, logger="pss_bench.test_threads"):
        assert sorted(i for i, _ in map_forked(fn, [0, 1, 2], 2)) == [0, 1, 2]
    messages = sorted(r.getMessage() for r in caplog.records if r.name == "pss_bench.test_threads")
    assert len(messages) == 3 and messages[0] == "item 0 says hi" and messages[1].startswith("item 1 says {'a':")


def test_closing_early_ends_the_workers(monkeypatch):
    def fn(x: int) -> int:
        time.sleep(0.05)
        return x

    # The workers' pids, not "no child at all": other tests may leave long-lived children in this
    # process (multiprocessing's resource tracker, started by any spawn-based test, lives until exit).
    forked: list[int] = []
    real_fork = os.fork

    def recording_fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recording_fork)
    gen = map_forked(fn, list(range(200)), 2)
    next(gen)
    t = time.perf_counter()
    gen.close()  # kills and reaps, does not wait for the 200 items
    assert time.perf_counter() - t < 2
    assert len(forked) == 2
    for pid in forked:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # already reaped: no longer a child of this process


def _faults_per_decode(png_path) -> float:
    """Minor page faults per decode of one PNG, over decodes 3 to 6 (the first ones set the heap up)."""
    import resource

    from pss_bench.io.panoptic import decode_id_words, read_png_file

    png = read_png_file(png_path)
    for _ in range(2):
        decode_id_words(png)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        words = decode_id_words(png)
        words = words[:1].copy()  # (what the evaluator keeps: nothing of the frame-size buffers)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4


@pytest.mark.skipif(not hasattr(os, "confstr") or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc only")
def test_workers_reuse_freed_frame_buffers(cityscapes_train_gt):
    """A 2048x1024 frame's 8 MB decode buffers are reused, not faulted in again for every frame (4,000 faults)."""
    png = sorted(cityscapes_train_gt[1].glob("*.png"))[0]
    (_, faults), = map_forked(_faults_per_decode, [png], 1)
    assert faults < 500, faults


def test_the_collector_is_left_as_it_was():
    import gc

    from pss_bench.threads import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller's choice stays
    finally:
        gc.enable()
    # forking freezes what is alive (no copy-on-write of it in the workers) and unfreezes it after
    assert gc.get_freeze_count() == 0
    in_workers = dict(map_forked(lambda _: gc.get_freeze_count(), list(range(4)), 2))
    assert min(in_workers.values()) > 0
    assert gc.get_freeze_count() == 0
    # a caller's own freeze is left as it was
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert dict(map_forked(_square, [1, 2], 2)) == {0: 1, 1: 4}
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
