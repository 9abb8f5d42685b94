"""`pss-bench --help` and `pss-bench pq` stay light: no torch, faiss, matplotlib or sklearn.

Each command runs in a fresh interpreter (this test process has imported
everything already) and reports the heavy modules in ``sys.modules`` at exit.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pq_oracle import write_dataset

HEAVY = ("torch", "torchvision", "faiss", "matplotlib", "sklearn")


def _heavy_after(argv: list[str], env_extra: dict | None = None) -> tuple[int, list[str]]:
    code = (
        "import json, sys\n"
        "from pss_bench.cli import main\n"
        f"rc = main({argv!r})\n"
        f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]), file=sys.stderr)\n"
    )
    import os

    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    rc, heavy = json.loads(proc.stderr.strip().splitlines()[-1])
    return rc, heavy


@pytest.mark.parametrize("argv", [["--help"], ["pq", "--help"]])
def test_help_imports_no_heavy_module(argv):
    assert _heavy_after(argv) == (0, [])


@pytest.mark.parametrize("cache", ["--no-cache", "--cache-dir"])
def test_pq_imports_no_heavy_module(tmp_path, cache):
    cats = [{"id": 1, "name": "a", "isthing": 1}, {"id": 2, "name": "b", "isthing": 0}]
    ids = np.zeros((6, 8), np.int64)
    ids[:, 4:] = 3
    ids[:2] = 7
    segs = [{"id": 3, "category_id": 1}, {"id": 7, "category_id": 2}]
    gt_json, gt_dir = write_dataset(tmp_path, "gt", [("im", ids, segs)], cats, with_area=True)
    pred_json, pred_dir = write_dataset(tmp_path, "pred", [("im", ids, segs)], None, with_area=False)
    argv = ["pq", str(pred_json), "--gt", str(gt_json), "--json", str(tmp_path / "out.json"), cache]
    if cache == "--cache-dir":
        argv.append(str(tmp_path / "cache"))
    for _ in range(2 if cache == "--cache-dir" else 1):  # cold, then warm
        assert _heavy_after(argv) == (0, [])
    assert json.loads((tmp_path / "out.json").read_text())["All"]["pq"] == 1.0
