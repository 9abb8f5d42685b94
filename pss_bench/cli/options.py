"""Options shared by several subcommands, logging and the stderr console."""

from __future__ import annotations

import functools
import json
import logging
import sys
from functools import lru_cache
from pathlib import Path

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


def gt_options(f):
    """``--gt`` and ``--gt-dir``, defaulting to the prediction directory's manifest (see :func:`resolve_gt`)."""
    f = click.option("--gt-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Ground-truth PNG folder (default: the GT JSON path without .json, or the manifest's gt_dir).")(f)
    return click.option("--gt", "gt_json", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Ground-truth COCO panoptic JSON (default: 'gt_json' in PRED/manifest.json).")(f)


def cache_options(f):
    """``--cache-dir`` / ``--no-cache`` (mutually exclusive) for the commands that decode GT."""

    @functools.wraps(f)
    def checked(*args, cache_dir=None, no_cache=False, **kwargs):
        if cache_dir is not None and no_cache:
            raise click.UsageError("--cache-dir and --no-cache exclude each other")
        return f(*args, cache_dir=cache_dir, no_cache=no_cache, **kwargs)

    checked = click.option("--no-cache", is_flag=True,
                           help="Neither read nor write the GT cache (decoded PNGs, context descriptors).")(checked)
    return click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Where decoded GT is cached (default: $PSS_BENCH_CACHE_DIR or the user cache folder).")(checked)


def gallery_options(f):
    """``--gallery``, ``--gallery-gt``, ``--gallery-gt-dir``: retrieve from another prediction directory."""
    f = click.option("--gallery-gt-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Ground-truth PNG folder of --gallery (default: its GT JSON path without .json).")(f)
    f = click.option("--gallery-gt", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Ground-truth JSON of --gallery (default: 'gt_json' in its manifest).")(f)
    return click.option("--gallery", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                        help="Retrieve from this other prediction directory (e.g. the train set) instead of PRED itself.")(f)


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


def gt_from_manifest(pred: Path) -> tuple[Path, Path | None] | None:
    """``(gt_json, gt_dir or None)`` recorded in a prediction directory's manifest, if any."""
    manifest = Path(pred) / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        obj = json.loads(manifest.read_text())
        gt, gt_dir = obj.get("gt_json"), obj.get("gt_dir")
    except (ValueError, OSError, AttributeError):
        return None
    if not isinstance(gt, str):
        return None
    return Path(gt), Path(gt_dir) if isinstance(gt_dir, str) else None


def resolve_gt(pred: Path, gt_json: Path | None, gt_dir: Path | None = None,
               option: str = "--gt") -> tuple[Path, Path | None]:
    """The GT JSON and PNG folder: as given, else from PRED's manifest (a usage error if neither)."""
    if gt_json is not None:
        return gt_json, gt_dir
    found = gt_from_manifest(pred)
    if found is None:
        raise click.UsageError(f"missing {option} GT_JSON ({pred} has no manifest.json naming its ground truth)")
    return found[0], gt_dir if gt_dir is not None else found[1]


def emit_json(payload: dict, json_out: str | None) -> bool:
    """Writes ``payload`` for ``--json``; returns whether the table still goes to stdout.

    ``-`` prints the JSON on stdout instead of the table; a path is written
    atomically and the table follows.
    """
    if json_out == "-":
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return False
    if json_out is not None:
        from pss_bench.io.atomic import write_json_atomic

        write_json_atomic(json_out, payload)
        console_err().print(f"wrote {json_out}")
    return True


def bootstrap_options(default_resamples: int, *, all_classes: bool = True):
    """``--bootstrap N``, ``--ci LEVEL``, ``--seed S`` and (CE commands) ``--all-classes``.

    The command receives ``bootstrap`` (a
    :class:`~pss_bench.metrics.bootstrap.BootstrapSettings`, or ``None`` for
    ``--bootstrap 0``) and, with ``all_classes=True``, ``all_classes``.
    """

    def decorate(f):
        @functools.wraps(f)
        def wrapped(*args, bootstrap_n, ci_level, seed, **kwargs):
            from pss_bench.metrics.bootstrap import BootstrapSettings

            settings = BootstrapSettings(bootstrap_n, ci_level, seed) if bootstrap_n else None
            return f(*args, bootstrap=settings, **kwargs)

        if all_classes:
            wrapped = click.option("--all-classes", is_flag=True,
                                   help="Average the CE over every class with queries (the paper's plain mean), "
                                        "including uninformative ones whose K covers every other instance.")(wrapped)
        wrapped = click.option("--seed", type=int, default=0, show_default=True,
                               help="Seed of the bootstrap resampling.")(wrapped)
        wrapped = click.option("--ci", "ci_level", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                               default=0.95, show_default=True,
                               help="Confidence level of the bootstrap intervals.")(wrapped)
        return click.option("--bootstrap", "bootstrap_n", type=click.IntRange(min=0), default=default_resamples,
                            show_default=True,
                            help="Bootstrap resamples for confidence intervals and paired p-values (0: none).")(wrapped)

    return decorate
