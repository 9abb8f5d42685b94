"""Options shared by several subcommands, logging and the stderr console."""

from __future__ import annotations

import logging
from functools import lru_cache

import click
from rich.console import Console
from rich.logging import RichHandler

_state = {"debug": False}


@lru_cache(maxsize=1)
def console_err() -> Console:
    """Progress, warnings and errors: stderr only (stdout carries results)."""
    return Console(stderr=True)


def console_out() -> Console:
    return Console(soft_wrap=True)


def is_debug() -> bool:
    return _state["debug"]


def reset_debug() -> None:
    """Called at the start of every command-line run (tests run several in one process)."""
    _state["debug"] = False


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    root = logging.getLogger("pss_bench")
    root.handlers[:] = [RichHandler(console=console_err(), show_time=False, show_path=False, markup=False)]
    root.setLevel(level)
    root.propagate = False


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        _state["debug"] = True
    return value


def debug_option(f):
    return click.option(
        "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
        help="Show the full traceback on errors.",
    )(f)


def workers_option(f):
    return click.option(
        "--workers", type=click.IntRange(min=1), default=None,
        help="Decoding threads (default: the usable CPU cores).",
    )(f)


def json_option(f):
    return click.option(
        "--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
        help="Also write the result as JSON to this file ('-': stdout instead of the table).",
    )(f)
