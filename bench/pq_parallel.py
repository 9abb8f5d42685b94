"""Threads or processes, Wuffs, pyspng or PIL: the per-image PQ work of 48 frames, in one process.

pyspng holds the GIL while it decodes, PIL releases it; this checks whether
``evaluate_pq``'s thread pool with pyspng is the right choice, against the
same thread pool with PIL and against forked worker processes with pyspng
(``pss_bench.threads.map_forked``, what ``pss-bench pq`` uses: each worker
process scores whole images and returns only their statistics). Cold (no GT
cache) and warm, alternating, medians of the wall time and of the CPU time
(this process's threads and its reaped workers), which other jobs on the
machine disturb less. Linux only (fork).

Prints a markdown table and, unless ``--no-write``, puts it into
docs/benchmarks.md between the pq_parallel markers.

Usage::

    python bench/pq_parallel.py [--frames 48] [--repeats 5] [--no-write]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pq_speed import alternate, build_set, load_avg, machine_info, write_block  # noqa: E402

MARK_START, MARK_END = "<!-- pq_parallel:start -->", "<!-- pq_parallel:end -->"


def cpu_seconds() -> float:
    """User + system time of this process (all threads) and of its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=os.environ.get("PSS_BENCH_SAMPLE_DATA", "../shared/data"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from pss_bench.evaluation.cache import GTCache
    from pss_bench.evaluation.pq import _Evaluator, load_pair, match_annotations
    from pss_bench.threads import default_workers, map_forked

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
                t, c = time.perf_counter(), cpu_seconds()
                if pool == "threads":
                    with ThreadPoolExecutor(workers) as ex:
                        list(ex.map(evaluator, pairs))
                else:
                    list(map_forked(evaluator, pairs, workers))
                cpu[(decoder, pool, warm)].append(cpu_seconds() - c)
                return time.perf_counter() - t
            return go

        from pss_bench.io import panoptic

        combos = [("pyspng", "threads"), ("pil", "threads"), ("pyspng", "processes")]
        if panoptic._wuffs_module() is not None:  # Wuffs releases the GIL: threads decode in parallel too
            combos += [("wuffs", "threads"), ("wuffs", "processes")]
        variants = {f"{pool}, {dec}": (dec, pool) for dec, pool in combos}
        cpu: dict = collections.defaultdict(list)
        tables = {}
        for warm in (False, True):
            cmds = {k: run(dec, pool, warm) for k, (dec, pool) in variants.items()}
            for c in cmds.values():  # warm-up (and the GT cache)
                c()
            cpu.clear()
            load = [load_avg()]
            times = alternate(cmds, args.repeats)
            cpu_by_name = {k: cpu[(dec, pool, warm)] for k, (dec, pool) in variants.items()}
            tables["warm GT cache" if warm else "cold"] = (times, cpu_by_name, load + [load_avg()])
        os.environ.pop("PSS_BENCH_PNG_DECODER", None)

    lines = [MARK_START,
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine_info()}; {args.frames} Cityscapes frames, "
             f"{workers} workers, "
             f"{args.repeats} alternating rounds, medians (per-image work only: no start-up, no JSON parsing).",
             "", f"Command: `python bench/pq_parallel.py --frames {args.frames} --repeats {args.repeats}`", ""]
    for name, (times, cpus, load) in tables.items():
        lines += [f"{name} (load average before {load[0]}, after {load[1]}):", "",
                  "| workers, decoder | median (s) | CPU (s) | CPU / wall | runs (s) |", "|---|---:|---:|---:|---|"]
        for k, v in times.items():
            wall, c = statistics.median(v), statistics.median(cpus[k])
            lines.append(f"| {k} | {wall:.2f} | {c:.2f} | {c / wall:.2f} | {', '.join(f'{x:.2f}' for x in v)} |")
        lines.append("")
    lines.append(MARK_END)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block(block, MARK_START, MARK_END, "<!-- pq_steps:end -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
