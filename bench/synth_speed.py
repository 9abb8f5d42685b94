"""SynthStreets generation speed: ``pss-bench make-synthetic`` end to end.

Generates N frames (default 2,000 train, at 256x512) with W worker processes
into a temporary folder, timing the whole command (rendering, PNG writing,
cityscapesscripts' panoptic conversion, context.json), and prints one JSON
line: frames, workers, seconds, frames per second, and the context counts.

Usage::

    python bench/synth_speed.py [--frames 2000] [--workers 2] [--height 256 --width 512] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="train frames to generate")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args()

    from pss_bench.data.synthstreets import generate

    tmp = Path(tempfile.mkdtemp(prefix="synth-speed-"))
    try:
        t0 = time.perf_counter()
        summary = generate(tmp / "ds", args.frames, 0, seed=args.seed, height=args.height, width=args.width,
                           workers=args.workers)
        seconds = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (tmp / "ds").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "frames": args.frames, "height": args.height, "width": args.width, "workers": args.workers,
        "seconds": round(seconds, 2), "frames_per_second": round(args.frames / seconds, 2),
        "bytes_on_disk": size, "instances": summary.instances, "context_counts": summary.context_counts,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
    }
    line = json.dumps(result)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
