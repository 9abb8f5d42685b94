"""Training-step speed of the PSS reference model and the UPSNet-style baseline, side by side.

Generates a few SynthStreets frames (seed 0) in a temporary folder, then times,
alternating, forward + losses + backward + SGD steps of both architectures
with the same config (default ``synthstreets_tiny``: resnet_tiny, whole
256x512 frames, batch 4), and prints the medians as a markdown table: wall
seconds and this process's CPU seconds per step (the CPU time is what a
shared machine does not inflate as much), with the CPU model, thread count
and load average before and after.

Usage::

    python bench/model_speed.py [--config synthstreets_tiny] [--iters 10] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="synthstreets_tiny")
    ap.add_argument("--iters", type=int, default=10, help="timed steps per architecture")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from pss_bench.data.synthstreets import generate
    from pss_bench.models.config import load_config
    from pss_bench.data.transforms import TrainTransform
    from pss_bench.models.data import AugmentedItems, build_dataset, collate
    from pss_bench.models.registry import create_model
    from pss_bench.models.train import build_optimizer, training_module

    with tempfile.TemporaryDirectory(prefix="pss-bench-model-speed-") as tmp:
        root = Path(tmp) / "synth"
        generate(root, train=8, val=0, seed=0)
        base, cats = build_dataset("synthstreets", root, "train")
        runs = {}
        for arch in ("pss", "upsnet"):
            cfg = load_config(args.config, [f"model.arch={arch}"])
            cfg.model.num_classes = len(cats)
            torch.manual_seed(0)
            net = create_model(arch, cfg.model, categories=cats, cfg_all=cfg)
            module = training_module(net, cfg, cats)
            opt = build_optimizer(module, cfg)
            items = AugmentedItems(base, TrainTransform(cfg.data.crop_size, cfg.data.scale_range, cfg.data.flip), 0)
            bs = cfg.data.batch_size
            batches = [collate([items[(0, (i * bs + j) % len(base))] for j in range(bs)])
                       for i in range(args.warmup + args.iters)]
            runs[arch] = (module, opt, batches, bs)
        times: dict[str, list[float]] = {a: [] for a in runs}
        cpu: dict[str, list[float]] = {a: [] for a in runs}
        load_before = os.getloadavg()[0]
        for i in range(args.warmup + args.iters):
            for arch, (module, opt, batches, _) in runs.items():
                t, c = time.perf_counter(), time.process_time()
                losses, _ = module(batches[i])
                opt.zero_grad(set_to_none=True)
                losses["total"].backward()
                opt.step()
                if i >= args.warmup:
                    times[arch].append(time.perf_counter() - t)
                    cpu[arch].append(time.process_time() - c)
        load_after = os.getloadavg()[0]
    print(f"Training step, config {args.config}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.iters} alternating steps; CPU: {_cpu_model()}, load {load_before:.1f} -> {load_after:.1f}.\n")
    print("| architecture | s / step | s / image | CPU s / step |\n|---|---:|---:|---:|")
    for arch, ts in times.items():
        m = statistics.median(ts)
        print(f"| {arch} | {m:.3f} | {m / runs[arch][3]:.3f} | {statistics.median(cpu[arch]):.3f} |")
    pss, ups = statistics.median(times["pss"]), statistics.median(times["upsnet"])
    print(f"\nPSS / UPSNet-style: {pss / ups:.2f}x wall, "
          f"{statistics.median(cpu['pss']) / statistics.median(cpu['upsnet']):.2f}x CPU")
    return 0


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
