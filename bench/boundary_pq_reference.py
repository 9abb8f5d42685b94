"""Boundary PQ the way boundary-iou-api ships it, for timing ``pss-bench pq --metrics boundary-pq`` against.

Runs in the bench's own environment (``python -m venv bench-opencv &&
bench-opencv/bin/pip install opencv-python-headless numpy pillow``), never
pss-bench's: OpenCV is no dependency of pss-bench, and this file imports
nothing from it.

The algorithm of boundary-iou-api's ``coco_panoptic_api/evaluation.py`` with
``iou_type="boundary"`` and ``utils/boundary_utils.py`` (written here from
its description, not copied): the images are split into one chunk per CPU
core, each scored in a ``multiprocessing.Pool`` worker; per image both PNGs
are decoded with PIL, and for every segment of each side the binary mask is
padded by one zero pixel and eroded ``d`` times with a 3x3 square by
OpenCV (``d = max(1, round(ratio * diagonal))``), the eroded mask subtracted,
and the id map rewritten (interior pixels to ``max category id + 1``,
boundary pixels to the segment id); the mask and boundary confusion counts
come from ``np.unique``, and matching, false negatives and false positives
follow panopticapi with ``IoU = min(mask IoU, boundary IoU)``.

Usage::

    bench-opencv/bin/python bench/boundary_pq_reference.py GT_JSON GT_DIR PRED_JSON PRED_DIR OUT_JSON [RATIO]

Writes ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}}`` to OUT_JSON.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections import defaultdict

import cv2
import numpy as np
from PIL import Image

OFFSET = 256 ** 3


def to_ids(path: str) -> np.ndarray:
    rgb = np.array(Image.open(path), dtype=np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def boundary_of(mask: np.ndarray, ratio: float) -> np.ndarray:
    h, w = mask.shape
    d = max(1, int(round(ratio * np.sqrt(h ** 2 + w ** 2))))
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return mask - eroded


def pair_counts(a: np.ndarray, b: np.ndarray) -> dict:
    keys, counts = np.unique(a.astype(np.uint64) * OFFSET + b.astype(np.uint64), return_counts=True)
    return {(int(k) // OFFSET, int(k) % OFFSET): int(c) for k, c in zip(keys, counts)}


def boundary_map(ids: np.ndarray, segments: list, interior_id: int, ratio: float) -> tuple[np.ndarray, dict]:
    out = ids.copy()
    areas = {}
    for s in segments:
        mask = (out == s["id"]).astype(np.uint8)
        b = boundary_of(mask, ratio)
        out[mask > 0] = interior_id
        out[b > 0] = s["id"]
        areas[s["id"]] = int((b > 0).sum())
    return out, areas


def score_chunk(args) -> dict:
    pairs, gt_dir, pred_dir, categories, ratio = args
    stat: dict = defaultdict(lambda: [0.0, 0, 0, 0])  # iou, tp, fp, fn
    interior_id = max(categories) + 1
    for gt_ann, pred_ann in pairs:
        gt_ids = to_ids(os.path.join(gt_dir, gt_ann["file_name"]))
        pred_ids = to_ids(os.path.join(pred_dir, pred_ann["file_name"]))
        gt_segs = {s["id"]: s for s in gt_ann["segments_info"]}
        pred_segs = {s["id"]: dict(s) for s in pred_ann["segments_info"]}
        labels, counts = np.unique(pred_ids, return_counts=True)
        for label, c in zip(labels.tolist(), counts.tolist()):
            if label:
                pred_segs[label]["area"] = c
        gb, gb_area = boundary_map(gt_ids, gt_ann["segments_info"], interior_id, ratio)
        pb, pb_area = boundary_map(pred_ids, pred_ann["segments_info"], interior_id, ratio)
        mask_pairs, b_pairs = pair_counts(gt_ids, pred_ids), pair_counts(gb, pb)
        gt_hit, pred_hit = set(), set()
        for (g, p), inter in mask_pairs.items():
            if g not in gt_segs or p not in pred_segs:
                continue
            gs, ps = gt_segs[g], pred_segs[p]
            if gs.get("iscrowd", 0) == 1 or gs["category_id"] != ps["category_id"]:
                continue
            iou = inter / (ps["area"] + gs["area"] - inter - mask_pairs.get((0, p), 0))
            bi = b_pairs.get((g, p), 0)
            biou = bi / (pb_area[p] + gb_area[g] - bi - b_pairs.get((0, p), 0))
            iou = min(iou, biou)
            if iou > 0.5:
                st = stat[gs["category_id"]]
                st[0] += iou
                st[1] += 1
                gt_hit.add(g)
                pred_hit.add(p)
        crowd = {}
        for g, gs in gt_segs.items():
            if g in gt_hit:
                continue
            if gs.get("iscrowd", 0) == 1:
                crowd[gs["category_id"]] = g
                continue
            stat[gs["category_id"]][3] += 1
        for p, ps in pred_segs.items():
            if p in pred_hit:
                continue
            ignored = mask_pairs.get((0, p), 0)
            if ps["category_id"] in crowd:
                ignored += mask_pairs.get((crowd[ps["category_id"]], p), 0)
            if ignored / ps["area"] > 0.5:
                continue
            stat[ps["category_id"]][2] += 1
    return dict(stat)


def main() -> int:
    gt_json, gt_dir, pred_json, pred_dir, out_json = sys.argv[1:6]
    ratio = float(sys.argv[6]) if len(sys.argv) > 6 else 0.02
    gt = json.load(open(gt_json))
    pred = json.load(open(pred_json))
    categories = {c["id"]: c for c in gt["categories"]}
    by_id = {a["image_id"]: a for a in pred["annotations"]}
    pairs = [(a, by_id[a["image_id"]]) for a in gt["annotations"]]
    cores = multiprocessing.cpu_count()
    chunks = [pairs[i::cores] for i in range(cores)]
    with multiprocessing.Pool(cores) as pool:
        parts = pool.map(score_chunk, [(c, gt_dir, pred_dir, categories, ratio) for c in chunks])
    total: dict = defaultdict(lambda: [0.0, 0, 0, 0])
    for part in parts:
        for cid, s in part.items():
            for j in range(4):
                total[cid][j] += s[j]
    result = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        pq = sq = rq = 0.0
        n = 0
        for cid, c in categories.items():
            if isthing is not None and bool(c["isthing"]) != isthing:
                continue
            iou, tp, fp, fn = total[cid] if cid in total else (0.0, 0, 0, 0)
            if tp + fp + fn == 0:
                continue
            n += 1
            pq += iou / (tp + 0.5 * fp + 0.5 * fn)
            sq += iou / tp if tp else 0.0
            rq += tp / (tp + 0.5 * fp + 0.5 * fn)
        result[name] = {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n} if n else None
    with open(out_json, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
