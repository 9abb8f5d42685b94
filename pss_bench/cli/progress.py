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
