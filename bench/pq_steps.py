"""Thread CPU time of each per-image step of ``pss-bench pq``, now and at another git ref.

On the same 48-frame set as ``bench/pq_speed.py``, times each step of the
per-image work on 8 frames (3 passes, medians) with ``time.thread_time`` (CPU
time of the calling thread, which other jobs on the machine disturb much less
than wall time): PNG decoding with each available decoder, turning the id map
into what is counted, the pair counts. ``--compare-ref REF`` runs the same
measurement for the ``pss_bench`` package of a git ref (its own functions).

Prints a markdown table and, unless ``--no-write``, puts it into
docs/benchmarks.md between the pq_steps markers.

Usage::

    python bench/pq_steps.py [--compare-ref main] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pq_speed import build_set, export_ref, load_avg, machine_info, write_block  # noqa: E402

MARK_START, MARK_END = "<!-- pq_steps:start -->", "<!-- pq_steps:end -->"


def measure(gt_json: str, gt_dir: str, pred_dir: str, frames: int = 8, passes: int = 3) -> dict[str, float]:
    """Median thread CPU milliseconds per step, with whatever API this pss_bench has."""
    from pss_bench.io import panoptic
    from pss_bench.io.panoptic import load_panoptic_json
    from pss_bench.metrics import pq

    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    pr = load_panoptic_json(Path(pred_dir) / "panoptic.json", Path(pred_dir) / "panoptic", role="prediction",
                            categories=gt.categories)
    times: dict[str, list[float]] = {}

    def t(name, f, *a, **k):
        s = time.thread_time()
        r = f(*a, **k)
        times.setdefault(name, []).append(1000 * (time.thread_time() - s))
        return r

    pairs = list(zip(gt.annotations, pr.annotations))[:frames]
    new_api = hasattr(pq, "id_runs")
    # every decoder installed, fastest first (an older pss_bench knows pyspng and PIL only)
    decoders = [name for name, ok in (
        ("wuffs", getattr(panoptic, "_wuffs_module", lambda: None)() is not None),
        ("pyspng", new_api and panoptic._spng_module() is not None)) if ok] + ["pil"]
    for _ in range(passes):
        for g, p in pairs:
            if new_api:
                for dec in decoders:
                    os.environ["PSS_BENCH_PNG_DECODER"] = dec
                    png = t("read the PNG file", panoptic.read_png_file, gt.png_path(g))
                    words = t(f"decode ({'PIL' if dec == 'pil' else dec})", panoptic.decode_id_words, png)
                os.environ.pop("PSS_BENCH_PNG_DECODER")
                runs = t("ids to runs", pq.id_runs, words, g.segments.ids, id_mask=panoptic.MAX_SEGMENT_ID)
                from pss_bench.evaluation import cache as gt_cache

                key = t("GT cache key (SHA-256 of the PNG)", gt_cache.GTCache.key, png, g.segments.ids)
                entry = gt_cache.encode_entry(key, png.height, png.width, len(g.segments), runs)
                t("GT cache entry check (from its bytes)", gt_cache.decode_entry, entry, key, png.height, png.width,
                  len(g.segments))
                times.setdefault("GT cache entry size (KB, not ms)", []).append(len(entry) / 1000)
                pw = panoptic.decode_id_words(panoptic.read_png_file(pr.png_path(p)))
                pruns = pq.id_runs(pw, p.segments.ids, id_mask=panoptic.MAX_SEGMENT_ID)
                t("pair counts", pq.confusion_from_runs, runs, pruns, len(g.segments), len(p.segments))
            else:
                hwc = t("decode (PIL)", panoptic._decode_png, gt.png_path(g))
                ids = t("RGB to ids", panoptic._hwc_bytes_to_ids, hwc)
                dense = t("ids to dense index map", pq.thread_indexer(), ids, g.segments.ids, ids_below_2_24=True)
                pids = panoptic._hwc_bytes_to_ids(panoptic._decode_png(pr.png_path(p)))
                pdense = pq.thread_indexer()(pids, p.segments.ids, ids_below_2_24=True)
                t("pair counts", pq.confusion_matrix, dense, pdense, len(g.segments), len(p.segments))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("PSS_BENCH_SAMPLE_DATA", "../shared/data"))
    ap.add_argument("--compare-ref", metavar="REF", default=None)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--measure", nargs=3, metavar=("GT_JSON", "GT_DIR", "PRED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:  # child process: print the measurement as JSON
        print(json.dumps(measure(*args.measure)))
        return 0

    with tempfile.TemporaryDirectory(prefix="pss-bench-pq-steps-") as tmp:
        work = Path(tmp)
        gt_json, gt_dir, pred = build_set(Path(args.data), work, 8)
        variants = [("this code", None)]
        if args.compare_ref:
            label, env = export_ref(args.compare_ref, work / "ref")
            variants.insert(0, (label, env))
        load = [load_avg()]
        results = {}
        for label, env in variants:
            out = subprocess.run([sys.executable, __file__, "--measure", str(gt_json), str(gt_dir), str(pred)],
                                 capture_output=True, text=True, check=True, env=env).stdout
            results[label] = json.loads(out.strip().splitlines()[-1])
        load.append(load_avg())

    lines = [MARK_START,
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine_info()}; thread CPU time per 2048x1024 "
             "frame, medians over 8 "
             f"frames x 3 passes (load average before {load[0]}, after {load[1]}).",
             "",
             "Command: `python bench/pq_steps.py" + (f" --compare-ref {args.compare_ref}`" if args.compare_ref else "`"),
             ""]
    for label, res in results.items():
        lines += [f"| step ({label}) | ms |", "|---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in res.items()]
        lines.append("")
    lines.append(MARK_END)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block(block, MARK_START, MARK_END, "<!-- pq_profile:end -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
