"""Inference time of the PSS reference model per frame: the network against the post-processing.

The post-processing (k-means over-segmentation, dynamic partitioning, segment
classification, stuff and thing merging, seeds) runs on the embeddings the
network produced; its share of the whole inference time is what this script
reports, with the median of ``--repeats`` runs on one SynthStreets frame
rendered at ``--size`` (seed 1, never seen in training). Each run times the
network, then the post-processing alone on that output (replayed through
the same ``predict_image`` call), so neither time is a difference of two.

``--baseline-tree DIR`` also runs the same measurement with the package found
in ``DIR`` (another checkout, e.g. ``git worktree add /tmp/before <commit>``)
in a subprocess, alternating with the current tree, so that the two
post-processings are compared on the same checkpoint, frame and machine.

Usage::

    python bench/reference_inference.py [--checkpoint PATH | --config NAME] [--size 1024 2048]
        [--repeats 3] [--baseline-tree DIR] [--write NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "reference_inference"


def measure(checkpoint: str | None, config: str | None, size: tuple[int, int], repeats: int) -> dict:
    """Medians of network and whole-inference time on one rendered frame, in this process's package."""
    import numpy as np
    import torch

    from pss_bench.data.sample import IMAGENET_MEAN, IMAGENET_STD
    from pss_bench.data.synthstreets import render_frame
    try:
        from pss_bench.models.checkpoint import load_checkpoint
        from pss_bench.reference_model.model import predict_image
    except ImportError:  # a --baseline-tree from before the models/ layout (issue 11)
        from pss_bench.reference_model.registry import load_checkpoint
        from pss_bench.reference_model.train import predict_image

    if checkpoint:
        net, cfg, cats, _ = load_checkpoint(checkpoint)
    else:
        from pss_bench.models.config import load_config
        from pss_bench.models.registry import create_model
        from pss_bench.structures import Category

        cfg = load_config(config)
        cats = [Category(i, f"c{i}", i >= 11) for i in range(19)]
        cfg.model.num_classes = len(cats)
        torch.manual_seed(0)
        net = create_model(cfg.model.arch, cfg.model, categories=cats, cfg_all=cfg).eval()
    frame = render_frame(1, "val", 0, *size)
    img = torch.from_numpy(frame.image.astype(np.float32) / 255.0).permute(2, 0, 1)
    img = (img - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    thing = torch.tensor([c.isthing for c in cats])
    class Replay(torch.nn.Module):
        """The network's output, replayed: ``predict_image`` through it times the post-processing alone."""

        def __init__(self, out):
            super().__init__()
            self.out, self.classifier = out, net.classifier

        def forward(self, _images):
            return self.out

    net_t, post_t, segments = [], [], 0
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first run warms up
            t = time.perf_counter()
            out = net(img[None])
            t1 = time.perf_counter()
            res, _ = predict_image(Replay(out), img, thing, cfg)
            t2 = time.perf_counter()
            net_t.append(t1 - t)
            post_t.append(t2 - t1)
            segments = int(res.classes.numel())
    net_s = statistics.median(net_t[1:])
    post_s = statistics.median(post_t[1:])
    return {"network_s": net_s, "post_s": post_s, "segments": segments,
            "stride": int(getattr(cfg.model, "output_stride", 4)), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def _subprocess(tree: str, args) -> dict:
    cmd = [sys.executable, __file__, "--json", "--size", *map(str, args.size), "--repeats", str(args.repeats)]
    cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else ["--config", args.config]
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a checkpoint (default: the bundled PSS checkpoint)")
    src.add_argument("--config", help="a config name: random weights (network time only is meaningful)")
    ap.add_argument("--size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-tree", help="another checkout of pss-bench to compare with (the 'before')")
    ap.add_argument("--label", default="", help="name of this measurement in the table")
    ap.add_argument("--json", action="store_true", help="print one JSON line (used for --baseline-tree)")
    ap.add_argument("--write", metavar="NAME", help="write the table into docs/benchmarks.md as block NAME")
    args = ap.parse_args()
    if not args.checkpoint and not args.config:
        args.checkpoint = str(ROOT / "pss_bench" / "checkpoints" / "pss_synthstreets_tiny.pt")
    if args.json:
        print(json.dumps(measure(args.checkpoint, args.config, tuple(args.size), args.repeats)))
        return 0
    rows = []
    if args.baseline_tree:
        rows.append(("before (" + Path(args.baseline_tree).name + ")", _subprocess(args.baseline_tree, args)))
    rows.append(("this tree", _subprocess(str(ROOT), args)))
    what = Path(args.checkpoint).name if args.checkpoint else f"config {args.config} (random weights)"
    lines = [
        f"Measured {date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, torch {rows[-1][1]['torch']}, "
        f"{rows[-1][1]['threads']} threads; {what}, one {args.size[0]}x{args.size[1]} SynthStreets frame, "
        f"median of {args.repeats} runs.",
        "",
        f"Command: `python bench/reference_inference.py {' '.join(sys.argv[1:])}`",
        "",
        "| code | network (s) | post-processing (s) | post-processing share | segments |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        share = r["post_s"] / max(r["network_s"] + r["post_s"], 1e-12)
        lines.append(f"| {args.label or name} | {r['network_s']:.3f} | {r['post_s']:.3f} | {100 * share:.0f}% | {r['segments']} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        sys.path.insert(0, str(ROOT / "bench"))
        from _docs import replace_block

        start, end = f"<!-- {MARK}:{args.write}:start -->", f"<!-- {MARK}:{args.write}:end -->"
        replace_block(f"{start}\n{table}\n{end}", start, end, "PSS inference: network and post-processing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
