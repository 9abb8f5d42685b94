"""Where a whole ``pss-bench pq`` process spends its time, cold and warm.

Samples one ``pss-bench pq --no-cache`` run and one run with a warm GT cache
with py-spy (``pip install py-spy``; it samples every thread of the process,
idle ones included, without changing the code), on the same 48-frame set as
``bench/pq_speed.py``, and sorts every sample by the innermost pss-bench step
on its stack: PNG decoding, PNG file reading, runs, pair counts, matching,
cache key / read / write, JSON parsing and validation, imports, idle threads.

Prints a markdown table and, unless ``--no-write``, puts it into
docs/benchmarks.md between the pq_profile markers.

Usage::

    python bench/pq_profile.py [--frames 48] [--rate 250] [--no-write]
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pq_speed import ROOT, build_set, load_avg, pss_bench_command  # noqa: E402

MARK_START, MARK_END = "<!-- pq_profile:start -->", "<!-- pq_profile:end -->"

# (category, substrings of a frame); the first category whose substring is on
# the stack wins, innermost steps first.
CATEGORIES = [
    ("PNG decode", ["decode_id_words", "_decode_png_pil", "(pyspng/", "_decode_png ("]),
    ("imports", ["_find_and_load"]),
    ("PNG file read and header check", ["read_png_file", "check_id_png", "read_png_header"]),
    ("id map to runs", ["id_runs", "run_starts", "dense_index", "_hwc_bytes_to_ids", "IdIndexer"]),
    ("joint runs to pair counts", ["confusion_from_runs", "confusion_matrix"]),
    ("matching", ["match_image"]),
    ("GT cache key (hash of the PNG)", ["GTCache.key"]),
    ("GT cache read and check", ["GTCache.get", "decode_entry"]),
    ("GT cache write", ["GTCache.put", "encode_entry"]),
    ("JSON parsing and validation", ["load_pair", "load_panoptic_json", "read_json_file", "match_annotations"]),
    ("other per-image work", ["_Evaluator"]),
    ("summing results, thread pool", ["evaluate_pq"]),
    ("idle (waiting for work)", ["_worker (concurrent", "Thread._bootstrap"]),
]


def categorize(stack: str) -> str:
    for name, needles in CATEGORIES:
        if any(n in stack for n in needles):
            return name
    return "CLI, output, interpreter"


def profile(cmd: list[str], out: Path, rate: int) -> tuple[collections.Counter, collections.Counter, float]:
    """Runs ``cmd`` under py-spy; returns per-category samples of worker threads and of the main thread."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    t = time.perf_counter()
    subprocess.run([py_spy, "record", "--idle", "--threads", "--nonblocking", "-r", str(rate), "-f", "raw",
                    "-o", str(out), "--", *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    workers, main = collections.Counter(), collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        # worker threads start in threading's bootstrap; py-spy does not always know their names
        (workers if "Thread._bootstrap" in stack else main)[categorize(stack)] += int(n)
    return workers, main, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--rate", type=int, default=250, help="samples per second")
    ap.add_argument("--data", default=os.environ.get("PSS_BENCH_SAMPLE_DATA", "../shared/data"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    try:
        from pss_bench.io.panoptic import png_decoder_name
    except ImportError:  # profiling an older pss-bench (PYTHONPATH=...)
        def png_decoder_name() -> str:
            return "PIL"

    pss = pss_bench_command()
    with tempfile.TemporaryDirectory(prefix="pss-bench-pq-profile-") as tmp:
        work = Path(tmp)
        gt_json, gt_dir, pred = build_set(Path(args.data), work, args.frames)
        base = pss + ["pq", str(pred), "--gt", str(gt_json), "--gt-dir", str(gt_dir), "--json", str(work / "o.json")]
        cold_cmd = base + ["--no-cache"]
        warm_cmd = base + ["--cache-dir", str(work / "cache")]
        for cmd in (cold_cmd, warm_cmd):  # page cache, .pyc files, the GT cache
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        load = [load_avg()]
        res = {"cold": profile(cold_cmd, work / "cold.txt", args.rate),
               "warm": profile(warm_cmd, work / "warm.txt", args.rate)}
        load.append(load_avg())

    names = [c for c, _ in CATEGORIES] + ["CLI, output, interpreter"]
    lines = [
        MARK_START,
        f"Profiled {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, PNG decoder {png_decoder_name()}; {args.frames} Cityscapes frames; "
        f"py-spy at {args.rate} Hz over every thread, idle included (load average before {load[0]}, after {load[1]}). "
        f"Wall time under py-spy: cold {res['cold'][2]:.2f} s, warm {res['warm'][2]:.2f} s.",
        "",
        f"Command: `python bench/pq_profile.py --frames {args.frames} --rate {args.rate}`",
        "",
        "Share of samples: worker threads (the per-image work, all workers together) and main thread.",
        "",
        "| step | cold: workers | cold: main | warm: workers | warm: main |",
        "|---|---:|---:|---:|---:|",
    ]
    tot = {k: (sum(w.values()) or 1, sum(m.values()) or 1) for k, (w, m, _) in res.items()}
    for name in names:
        cells = []
        for k in ("cold", "warm"):
            w, m, _ = res[k]
            cells += [f"{100 * w[name] / tot[k][0]:.1f}%", f"{100 * m[name] / tot[k][1]:.1f}%"]
        if any(c != "0.0%" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(MARK_END)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text()
        if MARK_START in text:
            head, rest = text.split(MARK_START, 1)
            text = head + block + rest.split(MARK_END, 1)[1]
        else:
            text = text.replace("<!-- pq_speed:end -->", "<!-- pq_speed:end -->\n\n" + block, 1)
        doc.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
