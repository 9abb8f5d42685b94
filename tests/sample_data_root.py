"""Where the real sample data is: ``$PSS_BENCH_SAMPLE_DATA``, else ``../shared/data`` beside the repository."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The default, relative to the repository root (as the README and .ci/run say).
DEFAULT_RELATIVE = Path("..") / "shared" / "data"


def sample_root(environ: Mapping[str, str] = os.environ, repo_root: Path = REPO_ROOT) -> tuple[Path | None, str]:
    """``(folder, reason)``: the sample data folder, or ``None`` and why there is none.

    ``$PSS_BENCH_SAMPLE_DATA`` wins (relative paths are taken from the current
    directory, as a shell would); unset or empty, ``../shared/data`` relative to
    the repository root is used when that folder exists.
    """
    env = environ.get("PSS_BENCH_SAMPLE_DATA")
    if env:
        root = Path(env).resolve()
        if root.is_dir():
            return root, ""
        return None, f"PSS_BENCH_SAMPLE_DATA={env}: no such folder"
    default = (repo_root / DEFAULT_RELATIVE).resolve()
    if default.is_dir():
        return default, ""
    return None, (f"PSS_BENCH_SAMPLE_DATA is not set and the default {DEFAULT_RELATIVE} "
                  f"({default}) does not exist: real-data tests need the sample data")
