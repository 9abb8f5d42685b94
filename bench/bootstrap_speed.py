"""Speed of the bootstrap: 1,000 paired resamples of the demo's job and of a Cityscapes-val-sized one.

The jobs: the demo's (250 images; Context Error queries bus 47, rider 100,
bicycle 171, person 722, car 1,500, K = 20) and Cityscapes val's (500
images and 19 classes (11 stuff, 8 things) for PQ; 10,123 queries sized like
Cityscapes val's instances: person 3,419, rider 556, car 4,660, truck 93,
bus 98, train 23, motorcycle 149, bicycle 1,125). Per-image PQ statistics,
contexts and embeddings are simulated (Poisson counts, Dirichlet contexts,
Gaussian embeddings, instances spread over the images at random): the cost
depends on their shapes. Timed: building each model's Context Error index
once (its ranked lists: what ``score_instances(index=True)`` adds to the
evaluation), ``bootstrap_pq`` and ``bootstrap_context_error`` (each resample
re-forms its gallery by re-weighting the lists), for one model and for two
paired models. Median of ``--repeats`` runs.

Writes its table into docs/benchmarks.md between the bootstrap_speed markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _docs import replace_block  # noqa: E402

from pss_bench.metrics.bootstrap import BootstrapSettings, bootstrap_context_error, bootstrap_pq  # noqa: E402
from pss_bench.metrics.ce_resample import build_ce_index  # noqa: E402
from pss_bench.metrics.pq import PQImageStats  # noqa: E402
from pss_bench.structures import Category  # noqa: E402

MARK_START, MARK_END = "<!-- bootstrap_speed:start -->", "<!-- bootstrap_speed:end -->"
JOBS = {
    "demo": (250, {"person": 722, "rider": 100, "car": 1500, "bus": 47, "bicycle": 171}),
    "Cityscapes val": (500, {"person": 3419, "rider": 556, "car": 4660, "truck": 93, "bus": 98, "train": 23,
                             "motorcycle": 149, "bicycle": 1125}),
}
N_STUFF = 11


def job(rng: np.random.Generator, n_images: int, things: dict[str, int], n_models: int):
    """Per-image PQ statistics and, per model, the data of a Context Error index."""
    thing_cats = tuple(Category(24 + j, name, True) for j, name in enumerate(things))
    sizes = np.array(list(things.values()))
    cls = np.repeat(np.arange(len(sizes)), sizes)
    n = cls.size
    img = rng.integers(0, n_images, n)
    n_ctx = N_STUFF + len(things)
    dist = rng.dirichlet(np.full(n_ctx, 0.3), size=(n, 8))
    dist[dist < 0.02] = 0.0
    dist /= dist.sum(-1, keepdims=True)
    ce_inputs = []
    for _ in range(n_models):
        emb = rng.normal(size=(n, 32)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        ce_inputs.append((thing_cats, 20, n_images, cls, img, np.arange(n), emb, dist))
    cats = tuple(Category(j, f"stuff{j}", False) for j in range(N_STUFF)) + thing_cats
    c = len(cats)
    images = []
    for _ in range(n_models):
        tp = rng.poisson(2.0, (n_images, c))
        images.append(PQImageStats(cats, tuple(range(n_images)), tp * rng.uniform(0.6, 0.9, (n_images, c)), tp,
                                   rng.poisson(1.0, (n_images, c)), rng.poisson(1.0, (n_images, c))))
    return ce_inputs, images


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    settings = BootstrapSettings(args.resamples)
    rng = np.random.default_rng(0)
    rows = []
    for job_name, (n_images, things) in JOBS.items():
        for n_models in (1, 2):
            ce_inputs, images = job(rng, n_images, things, n_models)
            times = {"index": [], "PQ": [], "CE": [], "both": []}
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                indexes = [build_ce_index(*x) for x in ce_inputs]
                t1 = time.perf_counter()
                bootstrap_pq(images, settings=settings)
                t2 = time.perf_counter()
                bootstrap_context_error(indexes, settings=settings)
                t3 = time.perf_counter()
                times["index"].append(t1 - t0)
                times["PQ"].append(t2 - t1)
                times["CE"].append(t3 - t2)
                times["both"].append(t3 - t0)
            rows.append((job_name, n_images, int(sum(things.values())), n_models,
                         {k: statistics.median(v) for k, v in times.items()}))
            print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    lines = [
        MARK_START,
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}; {args.resamples} resamples, median of "
        f"{args.repeats} runs; PQ: the job's images x {N_STUFF} stuff + its thing classes; 1-minute load average "
        f"{load:.1f} at the end (other jobs share this machine).",
        "",
        f"Command: `python bench/bootstrap_speed.py --resamples {args.resamples} --repeats {args.repeats}`",
        "",
        "| job | images | CE queries | models (paired) | CE index, once (s) | PQ bootstrap (s) | CE bootstrap (s) | "
        "all (s) | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for job_name, n_images, n_q, n_models, med in rows:
        ok = ("under 30 s" if med["both"] < 30 else "**over 30 s**") if job_name == "demo" else ""
        lines.append(f"| {job_name} | {n_images} | {n_q:,} | {n_models} | {med['index']:.2f} | {med['PQ']:.2f} | "
                     f"{med['CE']:.2f} | {med['both']:.2f} | {ok} |")
    lines.append(MARK_END)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        replace_block(block, MARK_START, MARK_END, "Bootstrap speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
