"""The ``pss-bench`` command line: one click group, one module per subcommand.

Exit codes are decided here only: 0 success, 1 a :class:`PssBenchError`
(one line on stderr, no traceback unless ``--debug``), 2 usage errors.
"""

from __future__ import annotations

import errno
import sys

import click

from pss_bench.cli.options import console_err, is_debug, reset_debug, setup_logging
from pss_bench.errors import PssBenchError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output on stderr (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(package_name="pss-bench")
def cli(verbose: int, quiet: bool) -> None:
    """Panoptic quality and Context Error for any panoptic segmentation model."""
    setup_logging(verbose, quiet)


# One module per subcommand under pss_bench.cli, each defining `command`
# (a click command). Listed here in help order; a module not written yet is
# skipped, one that fails to import is a bug and raises.
_COMMAND_MODULES = [
    "pq", "validate", "context_error", "embed", "show_retrievals", "context_map",
    "compare", "prepare", "make_synthetic", "train_reference", "train_baseline",
    "predict", "import_upsnet", "convert", "demo",
]


def _register() -> None:
    import importlib
    import importlib.util

    for name in _COMMAND_MODULES:
        full = f"pss_bench.cli.{name}"
        if importlib.util.find_spec(full) is None:
            continue
        cli.add_command(importlib.import_module(full).command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    reset_debug()
    try:
        cli.main(args=argv, prog_name="pss-bench", standalone_mode=False)
    except click.exceptions.Abort:
        console_err().print("aborted")
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except PssBenchError as exc:
        if is_debug():
            raise
        console_err().print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except MemoryError:
        if is_debug():
            raise
        console_err().print("[bold red]error:[/] out of memory: the inputs or settings ask for more than this machine has",
                            markup=True, highlight=False, soft_wrap=True)
        return 1
    except OSError as exc:
        # A full disk that no writer turned into a DiskFullError: still one line.
        if is_debug() or exc.errno not in _DISK_FULL:
            raise
        from rich.markup import escape

        where = f" while writing {escape(str(exc.filename))}" if exc.filename else ""
        console_err().print(f"[bold red]error:[/] {_DISK_FULL[exc.errno]}{where}", markup=True, highlight=False,
                            soft_wrap=True)
        return 1
    return 0


_DISK_FULL = {errno.ENOSPC: "disk full", getattr(errno, "EDQUOT", -1): "disk quota exceeded"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
