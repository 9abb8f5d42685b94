"""Training-step speed of the PSS reference model and the UPSNet-style baseline, side by side.

Generates a few SynthStreets frames (seed 0) in a temporary folder, then times,
alternating, forward + losses + backward + SGD steps of both architectures
with the same config (default ``synthstreets_tiny``: resnet_tiny, 128x256
crops, batch 4), and prints the medians as a markdown table.

Usage::

    python bench/model_speed.py [--config synthstreets_tiny] [--iters 10] [--warmup 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="synthstreets_tiny")
    ap.add_argument("--iters", type=int, default=10, help="timed steps per architecture")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    args = ap.parse_args()

    import torch

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
        for i in range(args.warmup + args.iters):
            for arch, (module, opt, batches, _) in runs.items():
                t = time.perf_counter()
                losses, _ = module(batches[i])
                opt.zero_grad(set_to_none=True)
                losses["total"].backward()
                opt.step()
                if i >= args.warmup:
                    times[arch].append(time.perf_counter() - t)
    print(f"Training step, config {args.config}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.iters} alternating steps.\n")
    print("| architecture | s / step | s / image |\n|---|---:|---:|")
    for arch, ts in times.items():
        m = statistics.median(ts)
        print(f"| {arch} | {m:.3f} | {m / runs[arch][3]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
