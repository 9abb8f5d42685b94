"""Where a whole ``pss-bench pq`` process spends its time, cold and warm.

Samples one ``pss-bench pq --no-cache`` run and one run with a warm GT cache
with py-spy (``pip install py-spy``; it samples every thread of the process
and of its forked workers, idle ones included, without changing the code),
on the same set as ``bench/pq_speed.py`` (48 Cityscapes frames, or ``--set coco``: 500
COCO-size frames), and sorts every sample by
the innermost pss-bench step on its stack. The main process: interpreter and
CLI, imports, JSON parsing and validation, starting and waiting for the
workers, output. The workers (threads or forked processes): PNG decoding, PNG
file reading, runs, pair counts, matching, cache key / read / write, idle. A
thread waiting for the GIL is counted in the step it waits in.

Prints markdown tables (seconds of samples per step: py-spy takes ``--rate``
samples per second of each thread) and, unless ``--no-write``, puts them into
docs/benchmarks.md between the pq_profile markers.

Usage::

    python bench/pq_profile.py [--set cityscapes|coco] [--frames N] [--rate 250] [--compare-ref main] [--no-write]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pq_speed import (  # noqa: E402
    build_coco_set,
    build_set,
    export_ref,
    load_avg,
    machine_info,
    precompile,
    pss_bench_command,
    write_block,
)

MARK_START, MARK_END = "<!-- pq_profile:start -->", "<!-- pq_profile:end -->"
COCO_START, COCO_END = "<!-- pq_profile_coco:start -->", "<!-- pq_profile_coco:end -->"

# A stack belongs to a worker when it runs in a pool thread or in a forked worker process.
WORKER_MARKS = ["Thread._bootstrap", "_worker (pss_bench/threads.py"]

# (category, substrings of a frame); the first category whose substring is on
# the stack wins, innermost steps first.
WORKER_CATEGORIES = [
    ("PNG decode", ["decode_id_words", "_decode_png_pil", "_decode_png_wuffs", "(pyspng/", "_decode_png ("]),
    ("imports", ["_find_and_load"]),
    ("PNG file read and header check", ["read_png_file", "check_id_png", "read_png_header"]),
    # main's steps before e1cb981: RGB to ids, a 2**24 lookup table to dense indices, a per-pixel pair histogram
    ("ids to runs", ["id_runs", "run_starts", "dense_index", "_hwc_bytes_to_ids", "IdIndexer"]),
    ("pair counts (joint runs)", ["confusion_from_runs", "confusion_matrix"]),
    ("matching", ["match_image"]),
    ("GT cache key (hash of the PNG)", ["GTCache.key"]),
    ("GT cache read and check", ["GTCache.get", "decode_entry"]),
    ("GT cache write", ["GTCache.put", "encode_entry"]),
    ("other per-image work", ["_Evaluator"]),
    ("sending results to the main process", ["_worker (pss_bench/threads.py"]),
    ("idle (waiting for work)", ["_worker (concurrent", "Thread._bootstrap"]),
]
MAIN_CATEGORIES = [
    ("imports", ["_find_and_load"]),
    ("JSON parsing and validation", ["load_pair", "load_panoptic_json", "read_json_file", "match_annotations"]),
    ("waiting for the workers", ["map_forked", "Future.result", "_score", "ThreadPoolExecutor", "as_completed",
                                 "ex.map", "result_iterator"]),
    ("summing, per-image statistics", ["evaluate_pq"]),
    ("output (JSON file, table)", ["emit_json", "write_json_atomic", "pq_table", "Console.print"]),
]
OTHER = "CLI, interpreter"


def categorize(stack: str, categories) -> str:
    for name, needles in categories:
        if any(n in stack for n in needles):
            return name
    return OTHER


def profile(cmd: list[str], out: Path, rate: int, env: dict | None = None) -> tuple[collections.Counter, collections.Counter, float]:
    """Runs ``cmd`` under py-spy; returns seconds per category of the workers and of the main thread, and the wall time."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    t = time.perf_counter()
    subprocess.run([py_spy, "record", "--idle", "--threads", "--subprocesses", "--nonblocking", "-r", str(rate),
                    "-f", "raw", "-o", str(out), "--", *cmd], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t
    workers, main = collections.Counter(), collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if any(m in stack for m in WORKER_MARKS):
            workers[categorize(stack, WORKER_CATEGORIES)] += int(n) / rate
        else:
            main[categorize(stack, MAIN_CATEGORIES)] += int(n) / rate
    return workers, main, wall


# CPU breakdown: (step, "file:function" entries whose cumulative times it sums), from cProfile of a
# --workers 1 process; "importlib:_find_and_load" counts the outermost import of each import chain.
CPU_STEPS = [
    ("imports (after interpreter start-up)", ["importlib._bootstrap>:_find_and_load"]),
    ("JSON parsing and validation", ["evaluation/pq.py:load_pair", "evaluation/pq.py:match_annotations"]),
    ("PNG file read and header check", ["io/panoptic.py:read_png_file"]),
    ("PNG decode", ["io/panoptic.py:decode_id_words"]),
    ("ids to runs", ["metrics/pq.py:id_runs"]),
    ("pair counts (joint runs)", ["metrics/pq.py:confusion_from_runs"]),
    ("matching", ["metrics/pq.py:match_image"]),
    ("GT cache key, read and check", ["evaluation/cache.py:key", "evaluation/cache.py:get"]),
    ("GT cache write", ["evaluation/cache.py:put"]),
    ("output (JSON file, table)", ["cli/options.py:emit_json", "report.py:pq_table", "rich/console.py:print"]),
]
CPROFILE_SCRIPT = """
import cProfile, sys, time
out, argv = sys.argv[1], sys.argv[2:]
prof = cProfile.Profile(time.process_time)  # CPU time: other jobs on the machine do not count
prof.enable()
from pss_bench.cli import main
rc = main(argv)
prof.disable()
prof.dump_stats(out)
sys.exit(rc)
"""


def cpu_breakdown(argv: list[str], out: Path, env: dict | None = None) -> tuple[dict[str, float], float]:
    """CPU seconds per step of ``pss-bench ARGV --workers 1`` (one thread: every step in one profile).

    cProfile sees what runs after the interpreter started: the total is the
    process's user + system time, and "other" is the rest (interpreter
    start-up, CLI, cProfile's own overhead).
    """
    import pstats

    t0 = os.times()
    subprocess.run([sys.executable, "-c", CPROFILE_SCRIPT, str(out), *argv, "--workers", "1"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    t1 = os.times()
    total = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
    stats = pstats.Stats(str(out)).stats  # (file, line, name) -> (calls, primitive calls, own time, cumulative, callers)
    steps = {step: sum(ct for (file, _, name), (_, _, _, ct, _) in stats.items() if _qualifies(file, name, names))
             for step, names in CPU_STEPS}
    return steps, total


def tiny_set(work: Path) -> tuple[Path, Path]:
    """A 1-image 64x48 GT and prediction: a process on it costs what every run costs besides its frames."""
    import json

    import numpy as np

    from pss_bench.io.panoptic import write_id_png

    ids = np.full((48, 64), 7, np.int64)
    ids[10:30, 20:40] = 1000
    cats = [{"id": 1, "name": "car", "isthing": 1}, {"id": 2, "name": "road", "isthing": 0}]
    for name, with_area in (("tiny_gt", True), ("tiny_pred", False)):
        (work / name).mkdir()
        write_id_png(work / name / "a.png", ids)
        segs = [{"id": 7, "category_id": 2}, {"id": 1000, "category_id": 1}]
        if with_area:
            segs = [{**s, "area": int((ids == s["id"]).sum()), "iscrowd": 0} for s in segs]
        obj = {"annotations": [{"image_id": "a", "file_name": "a.png", "segments_info": segs}],
               "images": [{"id": "a", "height": 48, "width": 64, "file_name": "a.jpg"}]}
        if with_area:
            obj["categories"] = cats
        (work / f"{name}.json").write_text(json.dumps(obj))
    return work / "tiny_gt.json", work / "tiny_pred.json"


def process_cpu(cmds: dict[str, tuple[list[str], dict | None]], rounds: int) -> dict[str, float]:
    """Median user + system seconds of each command (and the children it waited for), in alternating rounds."""
    import statistics

    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    names = list(cmds)
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            cmd, env = cmds[k]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            if status:
                raise RuntimeError(f"{' '.join(cmd)} failed ({status})")
            cpu[k].append(usage.ru_utime + usage.ru_stime)
    return {k: statistics.median(v) for k, v in cpu.items()}


def _qualifies(file: str, name: str, entries: list[str]) -> bool:
    """Whether the profiled function ``name`` of ``file`` is one of ``entries`` ("file suffix:function")."""
    return any(file.endswith(suffix) and name == fn for suffix, fn in (e.split(":") for e in entries))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="set_name", choices=("cityscapes", "coco"), default="cityscapes",
                    help="Cityscapes frames or COCO-size frames (as bench/pq_speed.py --set)")
    ap.add_argument("--frames", type=int, default=None, help="default 48 Cityscapes, 500 COCO")
    ap.add_argument("--rate", type=int, default=250, help="samples per second")
    ap.add_argument("--data", default=os.environ.get("PSS_BENCH_SAMPLE_DATA", "../shared/data"))
    ap.add_argument("--compare-ref", metavar="REF", default=None,
                    help="also profile the pss_bench package of this git ref (e.g. main)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    coco = args.set_name == "coco"
    if args.frames is None:
        args.frames = 500 if coco else 48
    try:
        from pss_bench.io.panoptic import png_decoder_name
    except ImportError:  # profiling an older pss-bench (PYTHONPATH=...)
        def png_decoder_name() -> str:
            return "PIL"

    precompile()
    pss = pss_bench_command()
    runs: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory(prefix="pss-bench-pq-profile-") as tmp:
        work = Path(tmp)
        gt_json, gt_dir, pred = (build_coco_set if coco else build_set)(Path(args.data), work, args.frames)
        base = pss + ["pq", str(pred), "--gt", str(gt_json), "--gt-dir", str(gt_dir), "--json", str(work / "o.json")]
        variants = [("", None, work / "cache")]
        if args.compare_ref:
            label, env = export_ref(args.compare_ref, work / "ref")
            variants.insert(0, (f" at {label}", env, work / "ref_cache"))
        tiny_gt, tiny_pred = tiny_set(work)
        load = [load_avg()]
        fixed_cmds = {"`python -c pass`": ([sys.executable, "-c", "pass"], None)}
        cpu_steps: dict[str, tuple[dict[str, float], float]] = {}
        for label, env, cache in variants:
            cold_cmd = base + ["--no-cache"]
            warm_cmd = base + ["--cache-dir", str(cache)]
            for cmd in (cold_cmd, warm_cmd):  # page cache, .pyc files, the GT cache
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            runs["cold" + label] = profile(cold_cmd, work / "cold.txt", args.rate, env)
            runs["warm" + label] = profile(warm_cmd, work / "warm.txt", args.rate, env)
        for label, env, cache in variants:
            fixed_cmds[f"`pss-bench pq` on one 64x48 image{label}"] = (
                pss + ["pq", str(tiny_pred), "--gt", str(tiny_gt), "--no-cache", "--json", str(work / "t.json")], env)
            for kind, extra in (("cold", ["--no-cache"]), ("warm", ["--cache-dir", str(cache)])):
                cpu_steps[kind + label] = cpu_breakdown(base[len(pss):] + extra, work / "cpu.prof", env)
        fixed = process_cpu(fixed_cmds, 15)
        load.append(load_avg())

    start, end = (COCO_START, COCO_END) if coco else (MARK_START, MARK_END)
    what = "COCO-size frames (as bench/pq_speed.py --set coco)" if coco else "Cityscapes frames"
    machine = machine_info()
    lines = [
        start,
        f"Profiled {time.strftime('%Y-%m-%d %H:%M')} on {machine}; PNG decoder {png_decoder_name()}; "
        f"{args.frames} {what}; "
        f"py-spy at {args.rate} Hz over every thread of the process and of its forked workers, idle included "
        f"(load average before {load[0]}, after {load[1]}).",
        "",
        f"Command: `python bench/pq_profile.py {'--set coco ' if coco else ''}--frames {args.frames} --rate {args.rate}"
        + (f" --compare-ref {args.compare_ref}`" if args.compare_ref else "`"),
        "",
        "Wall time under py-spy (which slows every process down): "
        + ", ".join(f"{k} {v[2]:.2f} s" for k, v in runs.items()) + ".",
    ]
    for title, idx, categories in (
        ("main process (its main thread)", 1, MAIN_CATEGORIES),
        ("workers (threads or forked processes, all together)", 0, WORKER_CATEGORIES),
    ):
        names = [c for c, _ in categories] + [OTHER]
        lines += ["", f"Seconds of samples of the {title}:", "",
                  "| step | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
        for name in names:
            cells = [f"{v[idx][name]:.2f}" for v in runs.values()]
            if any(c != "0.00" for c in cells):
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("| **total** | " + " | ".join(f"{sum(v[idx].values()):.2f}" for v in runs.values()) + " |")
    lines += ["", "CPU seconds of each step, from cProfile (CPU clock) of the same runs with `--workers 1` (every "
              "step in one thread; other jobs on the machine do not count). cProfile's cost per Python call "
              "inflates Python-heavy steps (imports above all) several times; the C steps (decoding, the numpy "
              "work) are measured as they are:", "",
              "| step | " + " | ".join(cpu_steps) + " |", "|---|" + "---:|" * len(cpu_steps)]
    for step, _ in CPU_STEPS:
        lines.append(f"| {step} | " + " | ".join(f"{v[0][step]:.2f}" for v in cpu_steps.values()) + " |")
    lines.append("| **process total (user + system)** | " + " | ".join(f"{v[1]:.2f}" for v in cpu_steps.values()) + " |")
    lines += ["", "What every process costs besides its frames, without a profiler (CPU seconds, medians of 15 "
              "alternating rounds):", "",
              "| process | CPU (s) |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in fixed.items()]
    lines.append(end)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block(block, start, end, "<!-- pq_profile:end -->" if coco else "<!-- pq_speed:end -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
