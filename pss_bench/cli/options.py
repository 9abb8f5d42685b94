"""Options shared by several subcommands, logging and the stderr console."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import sys
from functools import lru_cache
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler

from pss_bench.text import printable

_state = {"debug": False, "quiet": False}


@lru_cache(maxsize=1)
def console_err() -> Console:
    """Progress, warnings and errors: stderr only (stdout carries results)."""
    return Console(stderr=True)


def console_out() -> Console:
    return Console(soft_wrap=True)


def example(line: str) -> str:
    """A command's ``epilog``: one example line, printed at the end of its ``--help`` as git and gh do."""
    return f"\b\nExample:\n  {line}"


def is_debug() -> bool:
    return _state["debug"]


def reset_debug() -> None:
    """Called at the start of every command-line run (tests run several in one process)."""
    _state["debug"] = False
    _state["quiet"] = False


def info(message: str) -> None:
    """A note for the user on stderr ("wrote out.json"), silenced by ``-q``.

    ``message`` is printed as plain text: user strings in it (paths, names)
    need no escaping, and brackets in them are never taken for rich markup.
    """
    if not _state["quiet"]:
        console_err().print(printable(message), markup=False, highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, the message as plain text (never rich markup)."""
    from rich.text import Text

    console_err().print(Text.assemble(("error:", "bold red"), " ", printable(message)), highlight=False,
                        soft_wrap=True)


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    _state["quiet"] = quiet
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
    return click.option("--gt", "gt_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                        help="Ground-truth COCO panoptic JSON (default: 'gt_json' in PRED/manifest.json).")(f)


def _categories(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    if value == "cityscapes":
        from pss_bench.data.cityscapes import cityscapes_categories

        return cityscapes_categories()
    if value == "coco":
        from pss_bench.data.coco import coco_panoptic_categories

        return coco_panoptic_categories()
    if not Path(value).is_file():
        raise click.BadParameter(f"{printable(value)}: expected a JSON file, 'cityscapes' or 'coco'")
    from pss_bench.io.panoptic import read_categories_json

    return read_categories_json(value)


def categories_option(f):
    """``--categories FILE|cityscapes|coco``: the GT's categories, for a GT JSON without them."""
    return click.option(
        "--categories", "categories", default=None, callback=_categories, metavar="FILE|cityscapes|coco",
        help="The GT's categories when its JSON has none (or to replace them): a JSON list or a JSON with "
             "'categories', or the built-in Cityscapes (label ids) or COCO panoptic (133) list.")(f)


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
    f = click.option("--gallery-gt", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="Ground-truth JSON of --gallery (default: 'gt_json' in its manifest).")(f)
    return click.option("--gallery", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                        help="Retrieve from this other prediction directory (e.g. the train set) instead of PRED itself.")(f)


def workers_option(f):
    return click.option(
        "--workers", type=click.IntRange(min=1), default=None,
        help="Parallel workers, threads or processes (default: the usable CPU cores).",
    )(f)


def check_writable_target(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Raises ``ValueError`` (one line) unless ``path`` can be created or replaced by us.

    The nearest existing folder on the way must be a folder we can create
    files in: probed with a real temporary file, so ``/proc``, read-only
    mounts and missing permissions are caught before any work, not after it.
    A file's folder must exist (a typo must not create folders anywhere); a
    folder's missing parents are fine (the writers create them).

    Args:
        path: the file (or, with ``folder``, the folder) to be written.
        folder: ``path`` is a folder to be created or replaced.
    """
    p = Path(path)
    if p.exists() or p.is_symlink():
        if folder and not p.is_dir():
            raise ValueError(f"{printable(p)} exists and is not a folder")
        if not folder and not p.is_file():
            kind = "a folder" if p.is_dir() else "not a regular file"
            raise ValueError(f"{printable(p)} exists and is {kind}")
    parent = p.parent
    if not folder and not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise ValueError(f"cannot create {printable(p)}: the folder {printable(parent)} {what}")
    while not parent.exists():
        if parent.is_symlink() or parent == parent.parent:
            raise ValueError(f"cannot create {printable(p)}: {printable(parent)} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"cannot create {printable(p)}: {printable(parent)} is not a folder")
    # What tempfile.mkstemp does, without importing it (and shutil, random) on every command's path.
    probe = parent / f".pss-bench-probe.{os.getpid()}.{os.urandom(6).hex()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        # /proc answers ENOENT for a new file: the folder is there, it just takes no files
        why = "it accepts no new files" if exc.errno == errno.ENOENT else (exc.strerror or str(exc))
        raise ValueError(f"cannot write {printable(p)}: cannot create a file in {printable(parent)} ({why})") from None
    os.close(fd)
    os.unlink(probe)


def writable_file(ctx: click.Context, param: click.Parameter, value):
    """``callback=`` of a click option naming a file to write: checked before any work (exit 2)."""
    if value is None or value == "-":
        return value
    try:
        check_writable_target(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


#: Figure formats of ``--out`` (show-retrievals, context-map): what the report's figures are tested in.
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def writable_figure(ctx: click.Context, param: click.Parameter, value):
    """``callback=`` of a figure ``--out``: one of :data:`FIGURE_SUFFIXES`, writable (exit 2 otherwise)."""
    if value is not None and Path(value).suffix.lower() not in FIGURE_SUFFIXES:
        raise click.BadParameter(f"{printable(value)}: expected a {', '.join(FIGURE_SUFFIXES)} file name")
    return writable_file(ctx, param, value)


def writable_folder(ctx: click.Context, param: click.Parameter, value):
    """``callback=`` of a click option naming a folder to create or replace: checked before any work (exit 2)."""
    if value is None:
        return value
    try:
        check_writable_target(value, folder=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def json_option(f):
    return click.option(
        "--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
        callback=writable_file,
        help="Also write the result as JSON to this file ('-': stdout instead of the table).",
    )(f)


def gt_from_manifest(pred: Path) -> tuple[Path, Path | None] | None:
    """``(gt_json, gt_dir or None)`` recorded in a prediction directory's manifest, if any.

    Returns ``None`` when there is no ``manifest.json`` or it names no
    ``gt_json``.

    Raises:
        PredictionFormatError: the manifest exists but is not a readable JSON object.
    """
    from pss_bench.errors import PredictionFormatError
    from pss_bench.io.safe_read import read_json_file

    manifest = Path(pred) / "manifest.json"
    if not (manifest.exists() or manifest.is_symlink()):
        return None
    obj = read_json_file(manifest, PredictionFormatError)
    if not isinstance(obj, dict):
        raise PredictionFormatError(f"{manifest}: expected a JSON object, found {type(obj).__name__}")
    gt, gt_dir = obj.get("gt_json"), obj.get("gt_dir")
    if not isinstance(gt, str) or not gt:
        return None
    return Path(gt), Path(gt_dir) if isinstance(gt_dir, str) and gt_dir else None


def resolve_gt(pred: Path, gt_json: Path | None, gt_dir: Path | None = None,
               option: str = "--gt") -> tuple[Path, Path | None]:
    """The GT JSON and PNG folder: as given, else from PRED's manifest.

    Raises:
        click.UsageError: neither given nor named by the manifest, or the
            manifest names a GT JSON that does not exist (exit 2, like a
            missing ``--gt`` file).
        PredictionFormatError: the manifest is unreadable.
    """
    if gt_json is not None:
        return gt_json, gt_dir
    manifest = Path(pred) / "manifest.json"
    if not (manifest.exists() or manifest.is_symlink()):
        raise click.UsageError(f"missing {option} GT_JSON ({printable(pred)} has no manifest.json naming its ground truth)")
    found = gt_from_manifest(pred)
    if found is None:
        raise click.UsageError(f"missing {option} GT_JSON ({printable(manifest)} does not name its ground truth: "
                               f"no 'gt_json' string)")
    if not found[0].is_file():
        raise click.UsageError(f"{option} GT_JSON from {printable(manifest)}: {printable(found[0])} does not exist "
                               f"(pass {option})")
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
        info(f"wrote {json_out}")
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
            settings = None
            if bootstrap_n:  # the bootstrap module imports the Context Error metrics: only when asked
                from pss_bench.metrics.bootstrap import BootstrapSettings

                settings = BootstrapSettings(bootstrap_n, ci_level, seed)
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


def metrics_options(f):
    """``--metrics LIST``, ``--dilation-ratio R``, ``--pc-normalize/--no-pc-normalize``.

    The command receives ``metrics`` (names in report order, checked: an
    unknown name is a usage error), ``dilation_ratio`` and ``pc_normalize``.
    """

    def parse(ctx, param, value):
        from pss_bench.errors import PssBenchError
        from pss_bench.metrics.variants import parse_metrics

        try:
            return parse_metrics(value)
        except PssBenchError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    f = click.option("--pc-normalize/--no-pc-normalize", "pc_normalize", default=True, show_default=True,
                     help="Parsing Covering: divide each image's areas by its size (tf-models' "
                          "normalize_by_image_size).")(f)
    f = click.option("--dilation-ratio", type=click.FloatRange(min=0, min_open=True), default=0.02,
                     show_default=True,
                     help="Boundary PQ: boundary width as a fraction of the image diagonal (boundary-iou-api's).")(f)
    return click.option("--metrics", default="pq", show_default=True, callback=parse, metavar="LIST",
                        help="Comma-separated metrics, all from one pass: pq, boundary-pq, pq-dagger, pc "
                             "(Parsing Covering), pq-area (PQ by COCO object size), or all.")(f)
