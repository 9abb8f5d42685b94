"""Speed of `pss-bench pq --metrics all` against plain `pq`, and of Boundary PQ against boundary-iou-api.

Two sets: 48 Cityscapes frames (2048x1024, the real sample frames replicated,
GT built by cityscapesscripts) and 500 COCO-size frames (the two panopticapi
COCO panoptic samples, 640x427 and 640x360, replicated; 133 categories), each
with a shifted prediction (``bench/pq_speed.py``'s). Whole processes, the way
a user runs them, alternating with the order rotating every round; medians:

1. ``pss-bench pq`` against ``pss-bench pq --metrics all``, cold (``--no-cache``)
   and warm (GT cache filled, GT boundaries included); the ``--metrics all``
   JSON must carry the plain run's PQ unchanged;
2. ``pss-bench pq --metrics boundary-pq`` (cold and warm) against
   ``bench/boundary_pq_reference.py``, boundary-iou-api's algorithm as it
   ships (a process per core, an OpenCV erosion per segment), run by
   ``--opencv-python`` (a Python with opencv-python-headless, numpy and
   pillow; not pss-bench's environment). Boundary PQ must agree to 1e-9.

Every table records the load average before and after it and the CPU time
(user + system, workers included) of each command. The tables go into
docs/benchmarks.md between the pq_metrics_speed markers.

Usage::

    python -m venv /tmp/bench-opencv && /tmp/bench-opencv/bin/pip install opencv-python-headless numpy pillow
    python bench/pq_metrics_speed.py --opencv-python /tmp/bench-opencv/bin/python [--frames 48] [--coco-frames 500]
        [--repeats 3] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pq_speed import (  # noqa: E402  (bench/ is not a package)
    CPU,
    alternate,
    build_coco_set,
    build_set,
    machine_info,
    load_avg,
    precompile,
    pss_bench_command,
    run_process,
    shifted_prediction,
    write_block,
)

ROOT = Path(__file__).resolve().parent.parent
MARK_START, MARK_END = "<!-- pq_metrics_speed:start -->", "<!-- pq_metrics_speed:end -->"


def table(rows: list[tuple[str, list[float]]], frames: int, base_name: str) -> list[str]:
    cols = ["command", "median (s)", "ms / frame", "time ratio", "speed-up", "CPU (s)", "CPU ratio", "runs (s)"]
    out = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 2) + "---|"]
    base = dict(rows)[base_name]
    base_t, base_cpu = statistics.median(base), statistics.median(CPU[base_name])
    for name, ts in rows:
        med, cpu = statistics.median(ts), statistics.median(CPU[name])
        out.append(f"| {name} | {med:.2f} | {1000 * med / frames:.1f} | {med / base_t:.2f}x | {base_t / med:.2f}x | "
                   f"{cpu:.2f} | {cpu / base_cpu:.2f}x | {', '.join(f'{t:.2f}' for t in ts)} |")
    return out


def measure(commands: dict, repeats: int) -> tuple[dict[str, list[float]], str]:
    """Alternating rounds of ``commands`` (names -> argv), after a warm-up run of each; and the load averages."""
    CPU.clear()
    for argv in commands.values():
        run_process(argv)
    CPU.clear()
    before = load_avg()
    times = alternate({k: (lambda a=a: run_process(a)) for k, a in commands.items()}, repeats)
    # CPU is keyed by the joined argv: re-key by name
    by_argv = {" ".join(a): k for k, a in commands.items()}
    for key in list(CPU):
        CPU[by_argv[key]] = CPU.pop(key)
    return times, f"load average 1/5/15 min before {before}, after {load_avg()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48, help="Cityscapes frames")
    ap.add_argument("--coco-frames", type=int, default=500, help="COCO-size frames")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--opencv-python", default=None,
                    help="a Python with opencv-python-headless, numpy, pillow, for boundary-iou-api's algorithm "
                         "(without it the second table is skipped)")
    ap.add_argument("--data", default=os.environ.get("PSS_BENCH_SAMPLE_DATA", "../shared/data"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()

    from pss_bench.evaluation.pq import default_workers
    from pss_bench.io.panoptic import png_decoder_name

    precompile()

    pss = pss_bench_command()
    ref_script = str(ROOT / "bench" / "boundary_pq_reference.py")
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine_info()}; PNG decoder {png_decoder_name()}, "
        f"{default_workers()} workers "
        f"(`pss-bench pq`: forked processes; the reference: a pool of {os.cpu_count()} processes); "
        f"{args.repeats} alternating rounds, medians.",
        "",
        f"Command: `python bench/pq_metrics_speed.py --frames {args.frames} --coco-frames {args.coco_frames} "
        f"--repeats {args.repeats}{' --opencv-python PY' if args.opencv_python else ''}`",
    ]
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="pss-bench-metrics-speed-") as tmp:
        work = Path(tmp)
        sets = [(f"{args.frames} Cityscapes frames (2048x1024)", args.frames,
                 build_set(Path(args.data), work / "cs", args.frames)),
                (f"{args.coco_frames} COCO-size frames (640x427 / 640x360, 133 categories)", args.coco_frames,
                 build_coco_set(Path(args.data), work / "coco", args.coco_frames))]
        for label, frames, (gt_json, gt_dir, pred) in sets:
            tag = "cs" if "Cityscapes" in label else "coco"
            cache = work / f"cache_{tag}"
            base = pss + ["pq", str(pred), "--gt", str(gt_json), "--gt-dir", str(gt_dir)]
            outs = {k: work / f"{tag}_{k}.json" for k in ("pq_cold", "all_cold", "pq_warm", "all_warm", "b_cold",
                                                          "b_warm", "ref")}
            cmds = {
                "`pss-bench pq --no-cache`": base + ["--no-cache", "--json", str(outs["pq_cold"])],
                "`pss-bench pq --no-cache --metrics all`": base + ["--no-cache", "--metrics", "all", "--json",
                                                                   str(outs["all_cold"])],
                "`pss-bench pq` (warm)": base + ["--cache-dir", str(cache), "--json", str(outs["pq_warm"])],
                "`pss-bench pq --metrics all` (warm)": base + ["--cache-dir", str(cache), "--metrics", "all",
                                                               "--json", str(outs["all_warm"])],
            }
            times, load = measure(cmds, args.repeats)
            plain = json.loads(outs["pq_cold"].read_text())
            for k in ("all_cold", "all_warm"):
                full = json.loads(outs[k].read_text())
                if {key: full[key] for key in plain} != plain:
                    print(f"{k}: PQ differs from the plain run", file=sys.stderr)
                    return 1
            lines += ["", f"**`--metrics all` against plain `pq`**, {label} ({load}):", ""]
            lines += table([(k, times[k]) for k in list(cmds)[:2]], frames, "`pss-bench pq --no-cache`")
            lines += [""]
            lines += table([(k, times[k]) for k in list(cmds)[2:]], frames, "`pss-bench pq` (warm)")
            if args.opencv_python:
                bcmds = {
                    "boundary-iou-api's algorithm (OpenCV, a process per core)": [
                        args.opencv_python, ref_script, str(gt_json), str(gt_dir), str(pred / "panoptic.json"),
                        str(pred / "panoptic"), str(outs["ref"])],
                    "`pss-bench pq --no-cache --metrics boundary-pq`": base + [
                        "--no-cache", "--metrics", "boundary-pq", "--json", str(outs["b_cold"])],
                    "`pss-bench pq --metrics boundary-pq` (warm)": base + [
                        "--cache-dir", str(cache), "--metrics", "boundary-pq", "--json", str(outs["b_warm"])],
                }
                btimes, bload = measure(bcmds, args.repeats)
                ref = json.loads(outs["ref"].read_text())
                for k in ("b_cold", "b_warm"):
                    ours = json.loads(outs[k].read_text())["boundary_pq"]
                    for row in ("All", "Things", "Stuff"):
                        if (ref[row] is None) != (ours[row] is None):
                            print(f"{k} {row}: null in one only", file=sys.stderr)
                            return 1
                        if ref[row] is not None:
                            for m in ("pq", "sq", "rq"):
                                worst = max(worst, abs(ref[row][m] - ours[row][m]))
                if worst > 1e-9:
                    print(f"Boundary PQ differs from the reference by {worst:.3g}", file=sys.stderr)
                    return 1
                lines += ["", f"**Boundary PQ against boundary-iou-api's algorithm**, {label} ({bload}):", ""]
                lines += table([(k, btimes[k]) for k in bcmds], frames, list(bcmds)[0])
    if args.opencv_python:
        lines += ["", f"Boundary PQ (All / Things / Stuff PQ, SQ, RQ) equals the reference's to {worst:.1e} "
                      f"on every run."]
    lines += ["", "Time ratio: median wall time over the first row's (lower is faster); speed-up: its inverse; "
                  "CPU: user + system seconds of the process and its workers (less disturbed by other jobs than "
                  "wall time), and its ratio to the first row's."]
    block = "\n".join([MARK_START, *lines, MARK_END])
    print(block)
    if not args.no_write:
        write_block(block, MARK_START, MARK_END, "## Further metrics: `--metrics all` and Boundary PQ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
