"""Per-frame cost of the framework integrations on Cityscapes-size frames.

On the 8 real 2048x1024 Cityscapes sample frames (GT built by
cityscapesscripts' converter, a shifted prediction of each), times per frame,
alternating, R rounds over the frames, medians:

* ``pss_bench.integrations.torchmetrics.PanopticQuality.update`` on
  ``(1, H, W, 2)`` tensors on ``--device`` (cpu here; cuda on a GPU machine),
  the path that keeps the maps on the device;
* ``pss_bench.metrics.pq.PanopticQuality.update`` on numpy id maps (host path);
* ``pss_bench.integrations.detectron2.PanopticEvaluator.process`` on a
  Panoptic-DeepLab-style int32 label map (its GT PNG decoded each time, as in
  an evaluation loop).

Writes a table between the integration_speed markers of docs/benchmarks.md.

Usage::

    PSS_BENCH_SAMPLE_DATA=../shared/data python bench/integration_speed.py [--repeats 5] [--device cpu] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MARK_START, MARK_END = "<!-- integration_speed:start -->", "<!-- integration_speed:end -->"


def _frames(sample: Path, tmp: Path):
    from pss_bench.convert.labels import panoptic_to_semantic_instance
    from pss_bench.data.cityscapes import build_panoptic_gt
    from pss_bench.io.panoptic import load_panoptic_json, read_id_png

    gt_json, gt_dir = build_panoptic_gt(sample / "cityscapes" / "gtFine", "train", tmp)
    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    things = [c.id for c in gt.categories.values() if c.isthing]
    rng = np.random.default_rng(0)
    frames = []
    for ann in gt.annotations:
        ids = read_id_png(gt.png_path(ann))
        dy, dx = (int(v) for v in rng.integers(-12, 13, size=2))
        pred = np.roll(ids, (dy, dx), axis=(0, 1))
        pred[: ids.shape[0] // 40] = 0
        present = set(np.unique(pred).tolist())
        segs = [{"id": int(s), "category_id": int(c), "iscrowd": int(k)} for s, c, k in
                zip(ann.segments.ids, ann.segments.category_ids, ann.segments.iscrowd)]
        pred_segs = [dict(s, iscrowd=0) for s in segs if s["id"] in present]
        gs, gi = panoptic_to_semantic_instance(ids, segs, thing_ids=things, void_label=255)
        ps, pi = panoptic_to_semantic_instance(pred, pred_segs, thing_ids=things, void_label=255)
        frames.append({"ann": ann, "gt_ids": ids, "pred_ids": pred, "pred_segs": pred_segs,
                       "gt_pairs": np.stack([gs, gi], -1), "pred_pairs": np.stack([ps, pi], -1)})
    return gt_json, gt_dir, gt, frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    sample = Path(os.environ.get("PSS_BENCH_SAMPLE_DATA", ROOT.parent / "shared" / "data"))

    import torch

    from pss_bench.integrations.detectron2 import PanopticEvaluator
    from pss_bench.integrations.torchmetrics import PanopticQuality as TMPanopticQuality
    from pss_bench.metrics.pq import PanopticQuality

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        gt_json, gt_dir, gt, frames = _frames(sample, Path(tmp))
        cats = list(gt.categories.values())
        things = [c.id for c in cats if c.isthing]
        stuffs = [c.id for c in cats if not c.isthing]
        from cityscapesscripts.helpers.labels import labels as cs_labels

        train_id = {lab.id: lab.trainId for lab in cs_labels}
        meta = {"thing_dataset_id_to_contiguous_id": {c: train_id[c] for c in things},
                "stuff_dataset_id_to_contiguous_id": {c: train_id[c] for c in stuffs},
                "panoptic_json": str(gt_json), "panoptic_root": str(gt_dir), "label_divisor": 1000}
        for f in frames:
            f["gt_t"] = torch.from_numpy(f["gt_pairs"])[None].to(device)
            f["pred_t"] = torch.from_numpy(f["pred_pairs"])[None].to(device)
            contiguous = {**meta["thing_dataset_id_to_contiguous_id"], **meta["stuff_dataset_id_to_contiguous_id"]}
            label = np.full(f["pred_ids"].shape, -1, np.int32)
            for k, s in enumerate(f["pred_segs"]):
                label[f["pred_ids"] == s["id"]] = contiguous[s["category_id"]] * 1000 + k + 1
            f["d2_out"] = {"panoptic_seg": (torch.from_numpy(label), None)}
            f["d2_in"] = {"image_id": f["ann"].image_id, "file_name": f["ann"].file_name}

        tm = TMPanopticQuality(things, stuffs, crowd_instance_id=0, allow_unknown_preds_category=True).to(device)
        host = PanopticQuality(cats)
        d2 = PanopticEvaluator(metadata=meta)

        def sync():
            if device.type == "cuda":
                torch.cuda.synchronize()

        runners = {
            f"torchmetrics integration `update`, {device.type}": lambda f: tm.update(f["pred_t"], f["gt_t"]),
            "pss-bench `PanopticQuality.update` (numpy)": lambda f: host.update(
                f["gt_ids"], f["ann"].segments, f["pred_ids"], f["pred_segs"]),
            "detectron2 `PanopticEvaluator.process` (+ GT PNG decode)": lambda f: d2.process([f["d2_in"]], [f["d2_out"]]),
        }
        for run in runners.values():  # warm-up
            run(frames[0])
        sync()
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.repeats):
            for name, run in runners.items():
                for f in frames:
                    t0 = time.perf_counter()
                    run(f)
                    sync()
                    times[name].append(time.perf_counter() - t0)
        # The three paths must agree.
        ref = host.compute().to_dict()["All"]
        assert abs(float(tm.compute()["pq"]) - ref["pq"]) < 1e-12
        assert abs(d2.evaluate()["panoptic_seg"]["PQ"] / 100 - ref["pq"]) < 1e-12

    h, w = frames[0]["gt_ids"].shape
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}, device {device}; the {len(frames)} real "
        f"Cityscapes frames ({w}x{h}), a shifted prediction each; median over {args.repeats} rounds x "
        f"{len(frames)} frames; load average {os.getloadavg()[0]:.1f} when it ended (other jobs shared the 2 cores).",
        "",
        f"Command: `python bench/integration_speed.py --repeats {args.repeats} --device {args.device}`",
        "",
        "| per frame | median ms | min ms |",
        "|---|---:|---:|",
    ]
    for name, ts in times.items():
        lines.append(f"| {name} | {1000 * statistics.median(ts):.1f} | {1000 * min(ts):.1f} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text()
        block = f"{MARK_START}\n{table}\n{MARK_END}"
        if MARK_START in text:
            start, end = text.index(MARK_START), text.index(MARK_END) + len(MARK_END)
            text = text[:start] + block + text[end:]
        else:
            text = text.rstrip("\n") + "\n\n## Integration update speed\n\n" + (
                "Per-frame cost of the torchmetrics metric (maps stay on their device: segments and the pixel "
                "histogram are computed there, only the small confusion matrix reaches the host), the host "
                "accumulator, and the detectron2 evaluator. Reproduce with "
                "`python bench/integration_speed.py`.\n\n") + block + "\n"
        doc.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
