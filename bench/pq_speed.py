"""PQ speed: pss-bench against cityscapesscripts' evaluator, side by side in one run.

Builds a Cityscapes-size set (the real 2048x1024 sample frames, replicated
under new image ids) with cityscapesscripts' own converter, a shifted
prediction of it, then times, alternating, R times each:

* cityscapesscripts ``evaluatePanoptic`` (its process pool over all cores),
* ``pss_bench.evaluate_pq`` without the GT cache,
* ``pss_bench.evaluate_pq`` with a warm GT cache,

and, per image on in-memory maps, pss-bench's ``PanopticQuality.update``
against torchmetrics' ``PanopticQuality`` (when torchmetrics is installed).
Medians and ratios go into docs/benchmarks.md between the pq_speed markers.

Usage::

    python bench/pq_speed.py [--frames 48] [--repeats 5] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MARK_START, MARK_END = "<!-- pq_speed:start -->", "<!-- pq_speed:end -->"


def shifted_prediction(gt_json: Path, gt_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """A prediction directory: each GT map rolled by a random offset, the top rows VOID."""
    from pss_bench.io.panoptic import load_panoptic_json, read_id_png
    from pss_bench.io.prediction import PredictionWriter

    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    rng = np.random.default_rng(seed)
    with PredictionWriter(out_dir, model="shifted-gt", overwrite=True, gt_json=str(gt_json)) as w:
        for ann in gt.annotations:
            ids = read_id_png(gt.png_path(ann))
            dy, dx = (int(v) for v in rng.integers(-12, 13, size=2))
            shifted = np.roll(ids, (dy, dx), axis=(0, 1))
            shifted[: ids.shape[0] // 40] = 0
            present = set(np.unique(shifted).tolist())
            segs = [{"id": int(s), "category_id": int(c)}
                    for s, c in zip(ann.segments.ids, ann.segments.category_ids) if int(s) in present]
            w.add_panoptic(ann.image_id, ann.file_name, shifted, segs)
        w.commit()
    return out_dir


def build_set(sample: Path, work: Path, frames: int) -> tuple[Path, Path, Path]:
    from pss_bench.data.cityscapes import build_panoptic_gt

    base_json, base_dir = build_panoptic_gt(sample / "cityscapes" / "gtFine", "train", work / "base")
    base = json.loads(base_json.read_text())
    gt_dir = work / "gt"
    gt_dir.mkdir()
    anns, images = [], []
    for k in range(frames):
        src = base["annotations"][k % len(base["annotations"])]
        img = dict(base["images"][k % len(base["images"])])
        new_id = f"{src['image_id']}_r{k:03d}"
        fn = f"{new_id}_gtFine_panoptic.png"
        shutil.copyfile(base_dir / src["file_name"], gt_dir / fn)
        anns.append({**src, "image_id": new_id, "file_name": fn})
        images.append({**img, "id": new_id})
    gt_json = work / "gt.json"
    gt_json.write_text(json.dumps({"images": images, "annotations": anns, "categories": base["categories"]}))
    pred = shifted_prediction(gt_json, gt_dir, work / "pred", seed=0)
    return gt_json, gt_dir, pred


def time_once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_cityscapes(gt_json, gt_dir, pred, out_json):
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    with contextlib.redirect_stdout(io.StringIO()):
        return evaluatePanoptic(str(gt_json), str(gt_dir), str(pred / "panoptic.json"), str(pred / "panoptic"), str(out_json))


def max_abs_diff(ours: dict, ref: dict) -> float:
    d = 0.0
    for name in ("All", "Things", "Stuff"):
        for m in ("pq", "sq", "rq"):
            d = max(d, abs(ours[name][m] - float(ref[name][m])))
    for cid, r in ref["per_class"].items():
        for m in ("pq", "sq", "rq"):
            d = max(d, abs(ours["per_class"][str(cid)][m] - float(r[m])))
    return d


def bench_in_memory(gt_json, gt_dir, pred, repeats: int) -> dict | None:
    """Per-image update time on decoded maps: pss-bench vs torchmetrics."""
    import torch

    from pss_bench.io.panoptic import load_panoptic_json, read_id_png
    from pss_bench.metrics.pq import PanopticQuality

    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    pr = load_panoptic_json(pred / "panoptic.json", pred / "panoptic", role="prediction", categories=gt.categories)
    by_id = {a.image_id: a for a in pr.annotations}
    items = []
    for ann in gt.annotations[:8]:
        p = by_id[ann.image_id]
        items.append((read_id_png(gt.png_path(ann)), ann.segments, read_id_png(pr.png_path(p)), p.segments))

    ours_t = []
    for _ in range(repeats):
        m = PanopticQuality(gt.categories)
        for g, gs, q, qs in items:
            ours_t.append(time_once(lambda: m.update(g, gs, q, qs)))
    out = {"ours_ms": 1000 * statistics.median(ours_t)}
    try:
        from torchmetrics.detection import PanopticQuality as TMPanopticQuality
    except ImportError:
        return out

    things = {c.id for c in gt.categories.values() if c.isthing}
    stuffs = {c.id for c in gt.categories.values() if not c.isthing}

    def to_tm(ids, segs):
        # torchmetrics input: (1, H, W, 2) = (category, instance); VOID -> an unknown category
        lut = {int(s): (int(c), k + 1) for k, (s, c) in enumerate(zip(segs.ids, segs.category_ids))}
        cat = np.full(ids.shape, -1, np.int64)
        inst = np.zeros(ids.shape, np.int64)
        for s, (c, k) in lut.items():
            mask = ids == s
            cat[mask] = c
            inst[mask] = k
        return torch.from_numpy(np.stack([cat, inst], -1)[None])

    tm_items = [(to_tm(q, qs), to_tm(g, gs)) for g, gs, q, qs in items]
    tm_t = []
    for _ in range(max(1, repeats // 2)):
        tm = TMPanopticQuality(things=things, stuffs=stuffs, allow_unknown_preds_category=True)
        for pt, gtt in tm_items:
            tm_t.append(time_once(lambda: tm.update(pt, gtt)))
    out["torchmetrics_ms"] = 1000 * statistics.median(tm_t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=os.environ.get("PSS_BENCH_SAMPLE_DATA", "../shared/data"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()

    from pss_bench.evaluation.pq import default_workers, evaluate_pq

    workers = default_workers()
    with tempfile.TemporaryDirectory(prefix="pss-bench-pq-speed-") as tmp:
        work = Path(tmp)
        gt_json, gt_dir, pred = build_set(Path(args.data), work, args.frames)
        cache = work / "cache"
        ours_kw = dict(gt_dir=gt_dir, workers=workers)
        # warm-up: imports, page cache, and the GT cache for the cached variant
        ref = run_cityscapes(gt_json, gt_dir, pred, work / "cs.json")
        ours = evaluate_pq(pred, gt_json, use_cache=False, **ours_kw).to_dict()
        evaluate_pq(pred, gt_json, cache_dir=cache, **ours_kw)
        diff = max_abs_diff(ours, ref)

        times: dict[str, list[float]] = {"cityscapesscripts": [], "pss-bench (no cache)": [], "pss-bench (GT cache)": []}
        for _ in range(args.repeats):
            times["cityscapesscripts"].append(time_once(lambda: run_cityscapes(gt_json, gt_dir, pred, work / "cs.json")))
            times["pss-bench (no cache)"].append(time_once(lambda: evaluate_pq(pred, gt_json, use_cache=False, **ours_kw)))
            times["pss-bench (GT cache)"].append(time_once(lambda: evaluate_pq(pred, gt_json, cache_dir=cache, **ours_kw)))
        mem = bench_in_memory(gt_json, gt_dir, pred, args.repeats)

    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["cityscapesscripts"]
    lines = [
        MARK_START,
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.frames} Cityscapes frames of 2048x1024 (the 8 real sample frames "
        f"replicated), a shifted prediction; median of {args.repeats} alternating runs; {workers} workers/processes each.",
        "",
        f"Command: `python bench/pq_speed.py --frames {args.frames} --repeats {args.repeats}`",
        "",
        "| evaluator | median time (s) | ms / frame | speed-up vs cityscapesscripts |",
        "|---|---:|---:|---:|",
    ]
    for k, v in med.items():
        lines.append(f"| {k} | {v:.2f} | {1000 * v / args.frames:.1f} | {base / v:.2f}x |")
    lines += ["", f"Largest difference from cityscapesscripts over PQ/SQ/RQ rows and classes: {diff:.1e}."]
    if mem:
        lines += ["", "In-memory accumulator, per Cityscapes frame (maps already decoded):", "",
                  "| accumulator | median ms / frame |", "|---|---:|",
                  f"| pss-bench `PanopticQuality.update` | {mem['ours_ms']:.1f} |"]
        if "torchmetrics_ms" in mem:
            lines.append(f"| torchmetrics `PanopticQuality.update` | {mem['torchmetrics_ms']:.1f} |")
    lines.append(MARK_END)
    block = "\n".join(lines)
    print(block)
    if diff > 1e-9:
        print(f"ERROR: results differ from cityscapesscripts by {diff}", file=sys.stderr)
        return 1
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text() if doc.exists() else "# Benchmarks\n"
        if MARK_START in text:
            head, rest = text.split(MARK_START, 1)
            text = head + block + rest.split(MARK_END, 1)[1]
        else:
            text = text.rstrip() + "\n\n## PQ speed\n\n" + block + "\n"
        doc.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
