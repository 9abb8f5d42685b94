"""``bench/gpu_check.py --dry-run``: the GPU recipe's every stage on the CPU at 64x128, 2 iterations each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from child_process import child_env
from pss_bench.models.checkpoint import load_checkpoint

SCRIPT = Path(__file__).parents[2] / "bench" / "gpu_check.py"


@pytest.mark.slow
def test_the_gpu_check_runs_every_stage_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], capture_output=True,
                          text=True, env=child_env(), timeout=900)
    summary = json.loads((out / "summary.json").read_text())
    failed = {k: v for k, v in summary["stages"].items() if v["returncode"] != 0}
    assert proc.returncode == 0 and not failed, (failed, proc.stdout[-2000:], proc.stderr[-2000:])
    assert set(summary["stages"]) == {"make_synthetic", "make_synthetic_full", "train_pss", "train_upsnet",
                                      "train_cityscapes_r50", "predict_pss", "predict_upsnet", "compare"}
    for name in ("pss", "upsnet", "r50"):
        rec = summary["trainings"][name]
        assert rec["logged"] == 2 and rec["non_finite_at"] == [], (name, rec)
        weights = Path(rec["fp16_weights"])
        raw = torch.load(weights, map_location="cpu", weights_only=True)["state_dict"]
        assert {v.dtype for v in raw.values() if v.is_floating_point()} == {torch.float16}
        model, cfg, cats, _ = load_checkpoint(weights)  # verifies the checksum, loads into the float model
        assert cfg.model.arch == ("upsnet" if name == "upsnet" else "pss")
    compared = json.loads((out / "compare.json").read_text())
    assert "pss" in json.dumps(compared) and "upsnet" in json.dumps(compared)
