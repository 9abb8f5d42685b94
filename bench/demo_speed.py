"""Time of the demo job (``pss-bench demo``), by stage, before and after.

Runs ``pss-bench demo --frames N`` as whole processes, the way ``make demo``
does, for this tree and (``--baseline-tree DIR``) another checkout, in
alternating rounds; records wall time, the CPU time of the process and its
children, the load average before and after each run (the machine may be
shared: a load near the core count or above means other jobs competed), and,
for trees whose demo prints its stages on a non-terminal stderr, the seconds
of each stage.

    python bench/demo_speed.py [--frames 250] [--repeats 1] [--baseline-tree DIR] [--write NAME | --no-write]

Writes its table into docs/benchmarks.md between the demo_speed:NAME markers
(default NAME: ``before_after`` with --baseline-tree, else ``demo``).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _docs import replace_block  # noqa: E402

STAGE = re.compile(r"^demo: (.+): \d+/\d+ done in (\d+) s$")


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run_demo(tree: Path, frames: int, work: Path) -> dict:
    """One ``pss-bench demo`` process with ``tree``'s package: wall, CPU, load, stages."""
    out = work / f"demo_{tree.name}"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = "import sys; from pss_bench.cli import main; sys.exit(main(sys.argv[1:]))"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = _load()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "demo", "--frames", str(frames), "--out", str(out)],
                          env=env, capture_output=True, text=True, cwd=tree)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"demo failed in {tree}:\n{proc.stderr[-2000:]}")
    stages = {m.group(1): int(m.group(2)) for m in map(STAGE.match, proc.stderr.splitlines()) if m}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load": f"{load_before} -> {_load()}", "stages": stages}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=250, help="the demo's --frames (default: the demo's own 250)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--baseline-tree", type=Path, help="another checkout of pss-bench (the 'before')")
    ap.add_argument("--write", default=None, help="name of the block in docs/benchmarks.md")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()

    trees = [("this tree", ROOT)]
    if args.baseline_tree:
        trees.insert(0, (f"before ({args.baseline_tree.name})", args.baseline_tree.resolve()))
    runs: dict[str, list[dict]] = {name: [] for name, _ in trees}
    with tempfile.TemporaryDirectory(prefix="pss-demo-speed-") as tmp:
        for r in range(args.repeats):
            for name, tree in (trees if r % 2 == 0 else trees[::-1]):
                res = run_demo(tree, args.frames, Path(tmp))
                print(f"{name}: {res['wall']:.1f} s wall, {res['cpu']:.1f} s CPU, load {res['load']}", flush=True)
                runs[name].append(res)

    cmd = f"python bench/demo_speed.py --frames {args.frames} --repeats {args.repeats}"
    if args.baseline_tree:
        cmd += f" --baseline-tree {args.baseline_tree}"
    name = args.write or ("before_after" if args.baseline_tree else "demo")
    start, end = f"<!-- demo_speed:{name}:start -->", f"<!-- demo_speed:{name}:end -->"
    lines = [start,
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; `pss-bench demo --frames {args.frames}` as a whole process (stderr a "
             f"pipe, as in a `make` log), {args.repeats} alternating round(s), medians. The load average "
             "(1/5/15 min) before and after each run says how busy the shared machine was.",
             "", f"Command: `{cmd}`", "",
             "| code | wall (s) | CPU (s) | runs: wall (s), load before -> after |", "|---|---:|---:|---|"]
    for label, rs in runs.items():
        detail = "; ".join(f"{x['wall']:.0f} s, {x['load']}" for x in rs)
        lines.append(f"| {label} | {statistics.median(x['wall'] for x in rs):.1f} | "
                     f"{statistics.median(x['cpu'] for x in rs):.1f} | {detail} |")
    stages = runs["this tree"][0]["stages"]
    if stages:
        lines += ["", "Stages of this tree's first run (seconds, from its progress lines):", "",
                  "| stage | s |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in stages.items()]
    lines.append(end)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        replace_block(block, start, end, "Demo speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
