"""Oracle experiments of the PSS pipeline: the output-stride cap and what ideal inputs reach.

For each data set and scale: the cap (GT down to the output stride and back,
scored against itself) and the PQ of the inference post-processing fed with
ideal inputs (``pss_bench.reference_model.oracle``), for the shipped configs'
inference settings. SynthStreets val frames are generated in a temporary
folder; the Cityscapes frames come from ``$PSS_BENCH_SAMPLE_DATA`` (the 8 real
train frames, GT built by cityscapesscripts).

Usage::

    python bench/reference_oracle.py [--synth-frames 40] [--write]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def _cityscapes_items(sample: Path, tmp: Path, scale: int):
    from pss_bench.data.cityscapes import build_panoptic_gt
    from pss_bench.models.data import build_dataset
    from pss_bench.reference_model.oracle import downsized_labels

    root = tmp / "cs"
    if not root.exists():
        gt_json, gt_dir = build_panoptic_gt(sample / "cityscapes" / "gtFine", "train", tmp / "cs_gt")
        (root / "gtFine").mkdir(parents=True)
        (root / "leftImg8bit").symlink_to(sample / "cityscapes" / "leftImg8bit", target_is_directory=True)
        (root / "gtFine" / gt_json.name).symlink_to(gt_json)
        (root / "gtFine" / gt_dir.name).symlink_to(gt_dir, target_is_directory=True)
    ds, cats = build_dataset("cityscapes", root, "train")
    return downsized_labels(ds, scale), cats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth-frames", type=int, default=40, help="SynthStreets val frames (seed 1, 256x512)")
    ap.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()

    from pss_bench.data.synthstreets import generate
    from pss_bench.models.config import load_config
    from pss_bench.models.data import build_dataset
    from pss_bench.reference_model.oracle import ideal_input_pq, stride_cap

    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="pss-bench-oracle-") as tmp:
        tmp = Path(tmp)
        generate(tmp / "synth", train=0, val=args.synth_frames, seed=1, workers=min(2, os.cpu_count() or 1))
        ds, cats = build_dataset("synthstreets", tmp / "synth", "val")
        synth = [ds[i] for i in range(len(ds))]
        cases = [(f"SynthStreets val (seed 1, {len(synth)} frames), 256x512", synth, cats, "synthstreets_tiny", s)
                 for s in (4, 2)]
        sample = os.environ.get("PSS_BENCH_SAMPLE_DATA")
        if sample:
            for scale, strides, config in ((4, (4, 2), "synthstreets_tiny"), (2, (4,), "synthstreets_tiny"),
                                           (1, (4,), "cityscapes_r50")):
                items, cs_cats = _cityscapes_items(Path(sample), tmp, scale)
                h, w = items[0]["panoptic"].shape
                for s in strides:
                    cases.append((f"Cityscapes, 8 train frames at {h}x{w}", items, cs_cats, config, s))
        for name, items, cats_, config, stride in cases:
            cfg = load_config(config, [f"model.output_stride={stride}"])
            cap = stride_cap(items, cats_, stride)
            ideal = ideal_input_pq(items, cats_, cfg)
            rows.append((name, config, stride, cfg.inference.grid, cap, ideal))
            print(f"{name} stride {stride}: cap {100 * cap.all.pq:.1f}/{100 * cap.things.pq:.1f}, "
                  f"ideal {100 * ideal.all.pq:.1f}/{100 * ideal.things.pq:.1f}", flush=True)
    lines = [
        f"Measured {date.today().isoformat()}, {time.time() - t0:.0f} s. Cap: the GT taken to the output stride and back "
        "(nearest). Ideal inputs: one random 16-d unit vector per GT segment plus noise (0.3) as the embedding, "
        "the GT class of the nearest vector as the classifier, GT mass centres as seeds, through the config's "
        "inference post-processing (k-means, partitioning, merging).",
        "",
        f"Command: `python bench/reference_oracle.py --synth-frames {args.synth_frames}`",
        "",
        "| data | config (inference grid) | stride | cap PQ | cap PQ-Th | ideal PQ | ideal PQ-Th | ideal / cap (PQ, PQ-Th) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, config, stride, grid, cap, ideal in rows:
        lines.append(
            f"| {name} | {config} ({grid[0]}x{grid[1]}) | {stride} | {100 * cap.all.pq:.1f} | {100 * cap.things.pq:.1f} | "
            f"{100 * ideal.all.pq:.1f} | {100 * ideal.things.pq:.1f} | "
            f"{100 * ideal.all.pq / cap.all.pq:.0f}%, {100 * ideal.things.pq / cap.things.pq:.0f}% |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        from _docs import replace_block

        start, end = "<!-- reference_oracle:start -->", "<!-- reference_oracle:end -->"
        replace_block(f"{start}\n{table}\n{end}", start, end, "The PSS pipeline with ideal inputs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
