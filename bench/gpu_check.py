"""The GPU recipe, end to end in one short run: both models trained, the crashing setting retried, compared.

Stages (each a child process, so that a CUDA crash ends one stage, not the
check; each stage's stdout/stderr goes to ``OUT/logs/<stage>.log``):

1. ``make-synthetic`` SynthStreets at ``--height x --width`` (default 512x1024)
   and a few frames at ``--full-height x --full-width`` (default 1024x2048);
2. ``train-reference`` (PSS) and ``train-baseline upsnet`` with the shipped
   ``synthstreets_tiny`` config at the frames' size (whole frames, bf16
   autocast on CUDA, the shipped warm-up and clipping), ``--iterations`` each;
3. ``train-reference --config cityscapes_r50`` on the full-size frames for
   ``--r50-iterations`` (300) with a 10-iteration warm-up and whole
   1024x2048 frames: the setting that diverged within 7-17 iterations and once
   crashed CUDA on an H200 before the stability fixes (from scratch: no
   ImageNet weights can be fetched);
4. ``predict`` both small models on the val frames, ``compare`` them.

Written under ``OUT``: ``summary.json`` (per stage: exit code, seconds, the
last logged losses and whether any was non-finite; the device, torch
version, peak GPU memory of the trainings), ``logs/``, the run folders'
``log.jsonl`` and ``config.yaml``, ``weights/*.fp16.pt`` (each final model in
half precision, loadable by ``pss-bench predict``), ``compare.json``.
Exit code 0 only if every stage passed.

``--dry-run`` runs the same stages on the CPU at 64x128 with 2 iterations
each (the test suite runs it); on a GPU machine::

    python bench/gpu_check.py --out "$OUT" --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

CLI = "import sys; from pss_bench.cli import main; sys.exit(main(sys.argv[1:]))"


def _stage(out: Path, name: str, args: list[str], summary: dict, timeout: float) -> bool:
    log = out / "logs" / f"{name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write("$ pss-bench " + " ".join(args) + "\n")
        f.flush()
        try:
            rc = subprocess.run([sys.executable, "-c", CLI, *args], stdout=f, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    summary["stages"][name] = {"returncode": rc, "seconds": round(time.perf_counter() - t0, 1), "log": str(log)}
    return rc == 0


def _training_record(run: Path) -> dict:
    """Last logged losses, the number of logged iterations, whether any loss or gradient norm was non-finite."""
    path = run / "log.jsonl"
    if not path.is_file():
        return {"logged": 0}
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r for r in recs if "loss_total" in r]
    bad = [r["iteration"] for r in steps
           if any(isinstance(v, float) and not math.isfinite(v) for k, v in r.items() if k.startswith(("loss_", "grad")))]
    last = steps[-1] if steps else {}
    return {"logged": len(steps), "last_iteration": last.get("iteration"), "non_finite_at": bad,
            "last": {k: v for k, v in last.items() if k.startswith("loss_") or k in ("grad_norm", "images_per_s")},
            "first_loss_total": steps[0]["loss_total"] if steps else None}


def _half_weights(run: Path, dest: Path) -> str | None:
    """``model_final.pt`` with its floating tensors in fp16 (config and categories kept; checksummed anew)."""
    import torch

    from pss_bench.models.checkpoint import torch_load, with_checksum

    src = run / "model_final.pt"
    if not src.is_file():
        return None
    payload = torch_load(src)
    payload["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(with_checksum(payload), dest)
    return str(dest)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="CPU, 64x128 frames, 2 iterations per training")
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--full-height", type=int, default=1024)
    ap.add_argument("--full-width", type=int, default=2048)
    ap.add_argument("--train-frames", type=int, default=64)
    ap.add_argument("--val-frames", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=300, help="budget of each small model (batch 4, whole frames)")
    ap.add_argument("--r50-iterations", type=int, default=300)
    ap.add_argument("--stage-timeout", type=float, default=600.0, help="seconds before a stage is stopped")
    args = ap.parse_args()
    if args.dry_run:
        args.device = "cpu"
        args.height, args.width, args.full_height, args.full_width = 64, 128, 64, 128
        args.train_frames, args.val_frames, args.iterations, args.r50_iterations = 4, 2, 2, 2

    out = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    summary: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "stages": {}, "trainings": {}}
    try:
        import torch

        summary["torch"] = torch.__version__
        if args.device.startswith("cuda") and torch.cuda.is_available():
            summary["gpu"] = torch.cuda.get_device_name(0)
    except Exception as exc:  # report, not crash: the summary is the point
        summary["torch_error"] = repr(exc)

    ok = True
    data, full = out / "synth", out / "synth_full"
    ok &= _stage(out, "make_synthetic", ["make-synthetic", str(data), "--train", str(args.train_frames), "--val",
                                         str(args.val_frames), "--height", str(args.height), "--width", str(args.width)],
                 summary, args.stage_timeout)
    ok &= _stage(out, "make_synthetic_full", ["make-synthetic", str(full), "--train", "4", "--val", "0", "--height",
                                              str(args.full_height), "--width", str(args.full_width)],
                 summary, args.stage_timeout)
    small = [f"data.crop_size=[{args.height},{args.width}]", f"train.iterations={args.iterations}",
             f"train.checkpoint_every={args.iterations}", "train.val_every=0", "train.log_every=1"]
    if args.dry_run:
        small += ["kmeans.grid=[2,4]", "inference.grid=[2,4]"]
    runs = {"pss": out / "runs" / "pss", "upsnet": out / "runs" / "upsnet", "r50": out / "runs" / "cityscapes_r50"}
    common = ["--data", str(data), "--device", args.device]
    ok &= _stage(out, "train_pss", ["train-reference", "--config", "synthstreets_tiny", *common, "--out",
                                    str(runs["pss"]), *small], summary, args.stage_timeout)
    ok &= _stage(out, "train_upsnet", ["train-baseline", "upsnet", "--config", "synthstreets_tiny", *common, "--out",
                                       str(runs["upsnet"]), *small], summary, args.stage_timeout)
    r50 = ["data.dataset=synthstreets", f"data.crop_size=[{args.full_height},{args.full_width}]",
           "data.scale_range=[1.0,1.0]", f"train.iterations={args.r50_iterations}", "train.warmup_iterations=10",
           f"train.checkpoint_every={args.r50_iterations}", "train.val_every=0", "train.log_every=1"]
    if args.dry_run:
        r50 += ["train.warmup_iterations=1", "data.num_workers=0", "kmeans.grid=[2,4]", "inference.grid=[2,4]"]
    ok &= _stage(out, "train_cityscapes_r50", ["train-reference", "--config", "cityscapes_r50", "--data", str(full),
                                               "--device", args.device, "--out", str(runs["r50"]), *r50],
                 summary, args.stage_timeout)
    preds = {}
    for name in ("pss", "upsnet"):
        preds[name] = out / "pred" / name
        ok &= _stage(out, f"predict_{name}", ["predict", str(runs[name] / "model_final.pt"), "--data", str(data),
                                              "--split", "val", "--out", str(preds[name]), "--device", args.device],
                     summary, args.stage_timeout)
    gt = data / "gtFine" / "cityscapes_panoptic_val.json"
    ok &= _stage(out, "compare", ["compare", str(preds["pss"]), str(preds["upsnet"]), "--gt", str(gt), "--names",
                                  "pss,upsnet", "--k", "5", "--bootstrap", "200", "--json", str(out / "compare.json")],
                 summary, args.stage_timeout)

    for name, run in runs.items():
        rec = _training_record(run)
        rec["fp16_weights"] = _half_weights(run, out / "weights" / f"{name}.fp16.pt")
        summary["trainings"][name] = rec
        ok &= not rec.get("non_finite_at") and rec.get("logged", 0) > 0
    summary["passed"] = bool(ok)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({"passed": summary["passed"],
                      "stages": {k: (v["returncode"], v["seconds"]) for k, v in summary["stages"].items()}}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
