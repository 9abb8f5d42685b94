"""Context Error speed: a Cityscapes-val-sized job against just decoding its GT PNGs.

Builds a set of the real 2048x1024 Cityscapes sample frames (their panoptic GT
made by cityscapesscripts' converter), replicated under new image ids and file
names, with random float16 embeddings (D=128) for every GT segment, then
times, alternating, R times each:

* decoding every GT PNG with ``pss_bench.io.panoptic.read_id_png`` in the same
  number of threads (the floor: any evaluation must decode them),
* ``evaluate_context_error`` without the descriptor cache (cold: JSON, PNG
  decoding, descriptors, embeddings, faiss, scoring),
* ``evaluate_context_error`` with a warm descriptor cache.

Prints a markdown table (stdout) for docs/benchmarks.md; it writes nothing
into the repository.

Usage::

    python bench/context_error_speed.py [--frames 496] [--repeats 3] [--workers N] [--k 20]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def build_set(sample: Path, work: Path, frames: int, dim: int) -> tuple[Path, Path, Path, int]:
    from pss_bench.data.cityscapes import build_panoptic_gt
    from pss_bench.io.prediction import PredictionWriter

    with contextlib.redirect_stdout(io.StringIO()):
        base_json, base_dir = build_panoptic_gt(sample / "cityscapes" / "gtFine", "train", work / "base")
    base = json.loads(base_json.read_text())
    gt_dir = work / "gt" / "panoptic"
    gt_dir.mkdir(parents=True)
    anns, images = [], []
    n_base = len(base["annotations"])
    for k in range(frames):
        a = base["annotations"][k % n_base]
        im = next(i for i in base["images"] if i["id"] == a["image_id"])
        new_id = f"{a['image_id']}_r{k:04d}"
        name = f"{new_id}_gtFine_panoptic.png"
        shutil.copyfile(base_dir / a["file_name"], gt_dir / name)
        anns.append(dict(a, image_id=new_id, file_name=name))
        images.append(dict(im, id=new_id, file_name=f"{new_id}_leftImg8bit.png"))
    gt_json = work / "gt" / "panoptic.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": anns, "categories": base["categories"]}))
    rng = np.random.default_rng(0)
    things = {c["id"] for c in base["categories"] if c["isthing"]}
    n_inst = 0
    with PredictionWriter(work / "pred", "random-128", gt_json=str(gt_json)) as w:
        for a in anns:
            segs = a["segments_info"]
            n_inst += sum(1 for s in segs if s["category_id"] in things and not s.get("iscrowd", 0))
            w.add_embeddings(a["image_id"], np.array([s["id"] for s in segs]),
                             rng.normal(size=(len(segs), dim)).astype(np.float16))
        pred = w.commit()
    return gt_json, gt_dir, pred, n_inst


def decode_all(gt_dir: Path, workers: int) -> None:
    from pss_bench.io.panoptic import read_id_png

    files = sorted(gt_dir.glob("*.png"))
    with ThreadPoolExecutor(max_workers=workers) as ex:
        for _ in ex.map(read_id_png, files):
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=496, help="frames in the set (the 8 real ones, replicated)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each variant")
    ap.add_argument("--workers", type=int, default=None, help="threads (default: the usable cores)")
    ap.add_argument("--k", type=int, default=20, help="neighbours per query")
    ap.add_argument("--dim", type=int, default=128, help="embedding dimension")
    args = ap.parse_args()

    sample = os.environ.get("PSS_BENCH_SAMPLE_DATA")
    if not sample:
        print("set PSS_BENCH_SAMPLE_DATA to the shared sample data folder", file=sys.stderr)
        return 2
    from pss_bench.evaluation.context_error import default_workers, evaluate_context_error

    workers = args.workers or default_workers()
    work = Path(tempfile.mkdtemp(prefix="pss-ce-bench-"))
    try:
        t0 = time.perf_counter()
        gt_json, gt_dir, pred, n_inst = build_set(Path(sample), work, args.frames, args.dim)
        print(f"built {args.frames} frames, {n_inst} instances in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        cache = work / "cache"
        times: dict[str, list[float]] = {"decode": [], "cold": [], "warm": []}
        # One untimed run of each warms the OS file cache and fills the descriptor cache.
        decode_all(gt_dir, workers)
        evaluate_context_error(pred, gt_json, k=args.k, workers=workers, cache_dir=cache)
        result = None
        for _ in range(args.repeats):
            t = time.perf_counter()
            decode_all(gt_dir, workers)
            times["decode"].append(time.perf_counter() - t)
            t = time.perf_counter()
            result = evaluate_context_error(pred, gt_json, k=args.k, workers=workers, use_cache=False)
            times["cold"].append(time.perf_counter() - t)
            t = time.perf_counter()
            evaluate_context_error(pred, gt_json, k=args.k, workers=workers, cache_dir=cache)
            times["warm"].append(time.perf_counter() - t)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = platform.processor() or platform.machine()
    print(f"Context Error speed: {args.frames} frames of 2048x1024 (the 8 real Cityscapes train frames "
          f"replicated), {n_inst} instances, {result.mean.queries} queries, K={args.k}, D={args.dim} float16, "
          f"{workers} decoding thread(s), {cpu}, {os.cpu_count()} CPUs; median of {args.repeats}.\n")
    print("| run | seconds | per frame (ms) | x decode |")
    print("|---|---:|---:|---:|")
    labels = {"decode": "decode the GT PNGs only (read_id_png)",
              "cold": "context-error, no descriptor cache",
              "warm": "context-error, warm descriptor cache"}
    for key in ("decode", "cold", "warm"):
        print(f"| {labels[key]} | {med[key]:.2f} | {1000 * med[key] / args.frames:.1f} | {med[key] / med['decode']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
