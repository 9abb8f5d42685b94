"""Helpers for tests that run pss-bench in a child interpreter (kills, mount namespaces)."""

from __future__ import annotations

import os
from pathlib import Path


def child_env() -> dict:
    """The environment of a child interpreter: it imports the same pss_bench as the test (and the test helpers)."""
    import pss_bench

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(pss_bench.__file__).resolve().parents[1]), str(Path(__file__).parent),
                                         env.get("PYTHONPATH", "")])
    return env
