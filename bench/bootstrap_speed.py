"""Speed of the bootstrap: 1,000 paired resamples of a Cityscapes-val-sized job.

The job: 500 images and 19 classes (11 stuff, 8 things) for PQ; 10,123
Context Error queries in the 8 thing classes, sized like Cityscapes val's
instances (person 3,419, rider 556, car 4,660, truck 93, bus 98, train 23,
motorcycle 149, bicycle 1,125). The per-image PQ statistics and per-query CEs
are simulated (Poisson counts, gamma CEs): the bootstrap's cost depends only
on their shapes. Timed: ``bootstrap_pq`` and ``bootstrap_context_error`` for
one model and for two paired models, what ``pss-bench compare`` adds to the
evaluation. Median of ``--repeats`` runs.

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
from pss_bench.metrics.context_error import QueryScores  # noqa: E402
from pss_bench.metrics.pq import PQImageStats  # noqa: E402
from pss_bench.structures import Category  # noqa: E402

MARK_START, MARK_END = "<!-- bootstrap_speed:start -->", "<!-- bootstrap_speed:end -->"
THINGS = {"person": 3419, "rider": 556, "car": 4660, "truck": 93, "bus": 98, "train": 23, "motorcycle": 149,
          "bicycle": 1125}
N_IMAGES, N_STUFF = 500, 11


def job(rng: np.random.Generator, n_models: int):
    """Per-query tables and per-image statistics of ``n_models`` simulated models."""
    things = tuple(Category(24 + j, name, True) for j, name in enumerate(THINGS))
    sizes = np.array(list(THINGS.values()))
    cls = np.repeat(np.arange(len(sizes)), sizes)
    n = cls.size
    keys = np.stack([rng.integers(0, N_IMAGES, n), np.arange(n)], axis=1)
    tables = []
    for _ in range(n_models):
        ce = rng.gamma(3.0, 0.4, n)
        tables.append(QueryScores(things, 20, cls, keys, ce, ce + 0.3, ce - 0.4, np.full(n, np.nan), sizes - 1))
    cats = tuple(Category(j, f"stuff{j}", False) for j in range(N_STUFF)) + things
    c = len(cats)
    images = []
    for _ in range(n_models):
        tp = rng.poisson(2.0, (N_IMAGES, c))
        images.append(PQImageStats(cats, tuple(range(N_IMAGES)), tp * rng.uniform(0.6, 0.9, (N_IMAGES, c)), tp,
                                   rng.poisson(1.0, (N_IMAGES, c)), rng.poisson(1.0, (N_IMAGES, c))))
    return tables, images


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    settings = BootstrapSettings(args.resamples)
    rng = np.random.default_rng(0)
    rows = []
    for n_models in (1, 2):
        tables, images = job(rng, n_models)
        bootstrap_pq(images, settings=settings)  # warm-up
        times = {"PQ": [], "CE": [], "both": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            bootstrap_pq(images, settings=settings)
            t1 = time.perf_counter()
            bootstrap_context_error(tables, settings=settings)
            t2 = time.perf_counter()
            times["PQ"].append(t1 - t0)
            times["CE"].append(t2 - t1)
            times["both"].append(t2 - t0)
        rows.append((n_models, {k: statistics.median(v) for k, v in times.items()}))
    n_q = sum(THINGS.values())
    load = os.getloadavg()[0]
    lines = [
        MARK_START,
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}; {args.resamples} resamples, median of "
        f"{args.repeats} runs; {N_IMAGES} images x {N_STUFF + len(THINGS)} classes for PQ, {n_q:,} queries in "
        f"{len(THINGS)} thing classes for the CE; 1-minute load average {load:.1f} at the end (other jobs "
        f"share this machine).",
        "",
        f"Command: `python bench/bootstrap_speed.py --resamples {args.resamples} --repeats {args.repeats}`",
        "",
        "| models (paired) | PQ bootstrap (s) | CE bootstrap (s) | both (s) | target |",
        "|---:|---:|---:|---:|---|",
    ]
    for n_models, med in rows:
        ok = "under 5 s" if med["both"] < 5 else "**over 5 s**"
        lines.append(f"| {n_models} | {med['PQ']:.2f} | {med['CE']:.2f} | {med['both']:.2f} | {ok} |")
    lines.append(MARK_END)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        replace_block(block, MARK_START, MARK_END, "Bootstrap speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
