"""The ``pss-bench`` command line: one click group, one module per subcommand.

Exit codes are decided here only: 0 success, 1 a :class:`PssBenchError`
(one line on stderr, no traceback unless ``--debug``), 2 usage errors, 130
an interrupt (Ctrl-C), as shells report SIGINT.
"""

from __future__ import annotations

import errno
import sys

import click

from pss_bench.cli.options import console_err, is_debug, print_error, reset_debug, setup_logging
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


EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    reset_debug()
    try:
        # obj: the arguments as given, for the provenance of what a command writes (compare --report)
        cli.main(args=argv, prog_name="pss-bench", standalone_mode=False,
                 obj={"argv": list(sys.argv[1:] if argv is None else argv)})
    except KeyboardInterrupt:
        console_err().print("aborted", highlight=False)
        return EXIT_INTERRUPTED
    except click.exceptions.Abort as exc:
        console_err().print("aborted", highlight=False)
        # click turns Ctrl-C (and EOF at a prompt) into Abort
        return EXIT_INTERRUPTED if isinstance(exc.__context__, KeyboardInterrupt) else 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except PssBenchError as exc:
        if is_debug():
            raise
        print_error(str(exc))
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except MemoryError:
        if is_debug():
            raise
        print_error("out of memory: the inputs or settings ask for more than this machine has")
        return 1
    except OSError as exc:
        # A full disk that no writer turned into a DiskFullError: still one line.
        if is_debug() or exc.errno not in _DISK_FULL:
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        print_error(f"{_DISK_FULL[exc.errno]}{where}")
        return 1
    return 0


_DISK_FULL = {errno.ENOSPC: "disk full", getattr(errno, "EDQUOT", -1): "disk quota exceeded"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
