"""A rich progress bar on stderr, shown only for runs long enough to need one."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from pss_bench.cli.options import console_err


@contextlib.contextmanager
def progress_bar(label: str, delay_s: float = 1.0) -> Iterator[Callable[[int, int], None]]:
    """Yields ``update(done, total)``; the bar appears after ``delay_s`` seconds."""
    start = time.monotonic()
    state: dict = {"progress": None, "task": None}

    def update(done: int, total: int) -> None:
        if state["progress"] is None:
            if time.monotonic() - start < delay_s or not console_err().is_terminal:
                return
            # imported only when a bar is shown (not in scripts, not in short runs)
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            p = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                         console=console_err(), transient=True)
            p.start()
            state["progress"], state["task"] = p, p.add_task(label, total=total)
        state["progress"].update(state["task"], completed=done, total=total)

    try:
        yield update
    finally:
        if state["progress"] is not None:
            state["progress"].stop()


@contextlib.contextmanager
def stage_progress(label: str, interval_s: float = 15.0,
                   clock: Callable[[], float] = time.monotonic) -> Iterator[Callable[[str, int, int], None]]:
    """Yields ``update(stage, done, total)`` for a job of several stages (the demo).

    On a terminal: a rich bar per stage. Otherwise (a ``make`` log, a pipe): a
    line when a stage starts, one every ``interval_s`` seconds while it runs,
    and one when it ends with its time, as pip and rich's non-interactive
    mode do; ``-q`` silences them.
    """
    from pss_bench.cli.options import info

    t0 = clock()
    state: dict = {"stage": None, "start": 0.0, "last": 0.0, "done": 0, "total": 0, "progress": None, "tasks": {}}
    tty = console_err().is_terminal

    def finish() -> None:
        stage = state["stage"]
        if stage is not None and not tty:
            info(f"{label}: {stage}: {state['done']}/{state['total']} done in {clock() - state['start']:.0f} s")
        state["stage"] = None

    def update(stage: str, done: int, total: int) -> None:
        now = clock()
        if tty:
            if state["progress"] is None:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                # no refresh thread: a forked worker (predict) must not inherit one holding a lock
                p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=console_err(), auto_refresh=False)
                p.start()
                state["progress"] = p
            p = state["progress"]
            if stage not in state["tasks"]:
                state["tasks"][stage] = p.add_task(f"{label}: {stage}", total=total)
            p.update(state["tasks"][stage], completed=done, total=total)
            if now - state["last"] >= 0.1 or done == total:
                p.refresh()
                state["last"] = now
            return
        if stage != state["stage"]:
            finish()
            state.update(stage=stage, start=now, last=now)
            info(f"{label}: {stage} ({total} to do) ...")
        state["done"], state["total"] = done, total
        if done >= total:
            finish()
        elif now - state["last"] >= interval_s:
            info(f"{label}: {stage}: {done}/{total} ({100 * done // max(total, 1)}%), {now - state['start']:.0f} s")
            state["last"] = now

    try:
        yield update
    finally:
        finish()
        if state["progress"] is not None:
            state["progress"].stop()
        elif not tty:
            info(f"{label}: {clock() - t0:.0f} s in all")
