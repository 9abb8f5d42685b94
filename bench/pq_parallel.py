"""Threads or processes, pyspng or PIL: the per-image PQ work of 48 frames, in one process.

pyspng holds the GIL while it decodes, PIL releases it; this checks whether
``evaluate_pq``'s thread pool with pyspng is the right choice, against the
same thread pool with PIL and against a fork-based process pool with pyspng
(each worker process scores whole images and returns only their statistics).
Cold (no GT cache) and warm, alternating, medians. Linux only (fork).

Prints a markdown table and, unless ``--no-write``, puts it into
docs/benchmarks.md between the pq_parallel markers.

Usage::

    python bench/pq_parallel.py [--frames 48] [--repeats 5] [--no-write]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pq_speed import alternate, build_set, load_avg, write_block  # noqa: E402

MARK_START, MARK_END = "<!-- pq_parallel:start -->", "<!-- pq_parallel:end -->"
_STATE: dict = {}


def _score(i: int):
    return _STATE["evaluator"](_STATE["pairs"][i])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=os.environ.get("PSS_BENCH_SAMPLE_DATA", "../shared/data"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from pss_bench.evaluation.cache import GTCache
    from pss_bench.evaluation.pq import _Evaluator, load_pair, match_annotations
    from pss_bench.threads import default_workers

    workers = default_workers()
    with tempfile.TemporaryDirectory(prefix="pss-bench-pq-parallel-") as tmp:
        work = Path(tmp)
        gt_json, gt_dir, pred = build_set(Path(args.data), work, args.frames)
        gt, pr = load_pair(pred, gt_json, None, gt_dir)
        pairs = match_annotations(gt, pr)

        def run(decoder: str, pool: str, warm: bool):
            def go() -> float:
                os.environ["PSS_BENCH_PNG_DECODER"] = decoder
                cache = GTCache(work / "cache") if warm else None
                evaluator = _Evaluator(gt, pr, cache, False)
                t = time.perf_counter()
                if pool == "threads":
                    with ThreadPoolExecutor(workers) as ex:
                        list(ex.map(evaluator, pairs))
                else:
                    _STATE.update(evaluator=evaluator, pairs=pairs)
                    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
                        list(ex.map(_score, range(len(pairs)), chunksize=4))
                return time.perf_counter() - t
            return go

        variants = {f"{pool}, {dec}": (dec, pool) for dec, pool in
                    (("pyspng", "threads"), ("pil", "threads"), ("pyspng", "processes"))}
        tables = {}
        for warm in (False, True):
            cmds = {k: run(dec, pool, warm) for k, (dec, pool) in variants.items()}
            for c in cmds.values():  # warm-up (and the GT cache)
                c()
            load = [load_avg()]
            tables["warm GT cache" if warm else "cold"] = (alternate(cmds, args.repeats), load + [load_avg()])
        os.environ.pop("PSS_BENCH_PNG_DECODER", None)

    lines = [MARK_START,
             f"Measured {time.strftime('%Y-%m-%d %H:%M')}, {args.frames} frames, {workers} workers, "
             f"{args.repeats} alternating rounds, medians (per-image work only: no start-up, no JSON parsing).",
             "", f"Command: `python bench/pq_parallel.py --frames {args.frames} --repeats {args.repeats}`", ""]
    for name, (times, load) in tables.items():
        lines += [f"{name} (load average before {load[0]}, after {load[1]}):", "",
                  "| workers, decoder | median (s) | runs (s) |", "|---|---:|---|"]
        lines += [f"| {k} | {statistics.median(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} |" for k, v in times.items()]
        lines.append("")
    lines.append(MARK_END)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block(block, MARK_START, MARK_END, "<!-- pq_steps:end -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
