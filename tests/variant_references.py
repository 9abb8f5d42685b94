"""Test-only references for Boundary PQ, PQ†, Parsing Covering and PQ by size, written from the published algorithms.

Each follows its source step by step, on plain id maps and ``segments_info``
dicts, with dictionaries and loops (slow, obvious):

* Boundary PQ: boundary-iou-api's ``coco_panoptic_api/evaluation.py``
  (``iou_type="boundary"``) and ``utils/boundary_utils.py::mask_to_boundary``:
  pad the binary mask with one zero pixel, erode it ``d`` times by a 3x3
  square (OpenCV's erosion, whose default border leaves the outside of the
  padded mask neutral), subtract;
* PQ†: Porzi et al.'s definition (things: PQ; stuff: IoU > 0 sums over GT
  segments against the merged prediction of the class);
* Parsing Covering: tf-models' ``parsing_covering.py::compare_and_accumulate``
  with category and instance arrays, VOID and crowd as the ignored label;
* PQ by size: panopticapi's loop with each count put in an area range.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

VOID = 0


def erode_3x3(mask: np.ndarray, iterations: int) -> np.ndarray:
    """OpenCV ``erode(mask, ones((3, 3)), iterations)`` with its default (neutral) border."""
    m = mask.astype(np.uint8)
    h, w = m.shape
    for _ in range(iterations):
        p = np.pad(m, 1, constant_values=1)
        out = np.ones_like(m)
        for dy in range(3):
            for dx in range(3):
                out = np.minimum(out, p[dy:dy + h, dx:dx + w])
        m = out
    return m


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    h, w = mask.shape
    img_diag = np.sqrt(h ** 2 + w ** 2)
    dilation = int(round(dilation_ratio * img_diag))
    if dilation < 1:
        dilation = 1
    new_mask = np.pad(mask.astype(np.uint8), 1)
    eroded = erode_3x3(new_mask, dilation)[1:h + 1, 1:w + 1]
    return mask.astype(np.uint8) - eroded


def _pair_counts(a: np.ndarray, b: np.ndarray) -> dict:
    offset = 1 << 32
    joint = a.astype(np.uint64).reshape(-1) * np.uint64(offset) + b.astype(np.uint64).reshape(-1)
    labels, counts = np.unique(joint, return_counts=True)
    return {(int(k) // offset, int(k) % offset): int(c) for k, c in zip(labels, counts)}


class Stat:
    def __init__(self) -> None:
        self.iou = 0.0
        self.tp = self.fp = self.fn = 0


def ref_boundary_pq(images, categories: dict, dilation_ratio: float = 0.02, iou_type: str = "boundary") -> dict:
    """``{category_id: Stat}`` summed over ``images`` of ``(gt_map, gt_segs, pred_map, pred_segs)``."""
    stat: dict = defaultdict(Stat)
    boundary_id = max(categories) + 1
    for pan_gt, gt_info, pan_pred, pred_info in images:
        gt_segms = {el["id"]: dict(el) for el in gt_info}
        pred_segms = {el["id"]: dict(el) for el in pred_info}
        for el in gt_segms.values():
            el.setdefault("area", int((pan_gt == el["id"]).sum()))
            el.setdefault("iscrowd", 0)
        labels, cnt = np.unique(pan_pred, return_counts=True)
        for label, c in zip(labels, cnt):
            if label != VOID:
                pred_segms[int(label)]["area"] = int(c)
        if iou_type == "boundary":
            gb = pan_gt.copy()
            for el in gt_info:
                m = (gb == el["id"]).astype(np.uint8)
                b = mask_to_boundary(m, dilation_ratio)
                gb[m > 0] = boundary_id
                gb[b > 0] = el["id"]
                gt_segms[el["id"]]["boundary_area"] = int((b > 0).sum())
            pb = pan_pred.copy()
            for el in pred_info:
                m = (pb == el["id"]).astype(np.uint8)
                b = mask_to_boundary(m, dilation_ratio)
                pb[m > 0] = boundary_id
                pb[b > 0] = el["id"]
                pred_segms[el["id"]]["boundary_area"] = int((b > 0).sum())
            bmap = _pair_counts(gb, pb)
        gmap = _pair_counts(pan_gt, pan_pred)
        gt_matched, pred_matched = set(), set()
        for (g, p), inter in gmap.items():
            if g not in gt_segms or p not in pred_segms:
                continue
            if gt_segms[g]["iscrowd"] == 1 or gt_segms[g]["category_id"] != pred_segms[p]["category_id"]:
                continue
            union = pred_segms[p]["area"] + gt_segms[g]["area"] - inter - gmap.get((VOID, p), 0)
            iou = inter / union
            if iou_type == "boundary":
                bi = bmap.get((g, p), 0)
                bu = pred_segms[p]["boundary_area"] + gt_segms[g]["boundary_area"] - bi - bmap.get((VOID, p), 0)
                iou = min(iou, bi / bu)
            if iou > 0.5:
                s = stat[gt_segms[g]["category_id"]]
                s.tp += 1
                s.iou += iou
                gt_matched.add(g)
                pred_matched.add(p)
        crowd = {}
        for g, info in gt_segms.items():
            if g in gt_matched:
                continue
            if info["iscrowd"] == 1:
                crowd[info["category_id"]] = g
                continue
            stat[info["category_id"]].fn += 1
        for p, info in pred_segms.items():
            if p in pred_matched:
                continue
            inter = gmap.get((VOID, p), 0)
            if info["category_id"] in crowd:
                inter += gmap.get((crowd[info["category_id"]], p), 0)
            if inter / info["area"] > 0.5:
                continue
            stat[info["category_id"]].fp += 1
    return stat


def pq_scores(stat: dict, categories: dict) -> dict:
    """panopticapi's ``pq_average`` for All / Things / Stuff (``None`` for an empty row) and per class."""
    out: dict = {"per_class": {}}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        vals = []
        for cid, info in categories.items():
            if isthing is not None and bool(info["isthing"]) != isthing:
                continue
            s = stat[cid] if cid in stat else Stat()
            if s.tp + s.fp + s.fn == 0:
                out["per_class"][cid] = 0.0
                continue
            pq = s.iou / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
            out["per_class"][cid] = pq
            vals.append(pq)
        out[name] = (sum(vals) / len(vals), len(vals)) if vals else None
    return out


def ref_pq_dagger(images, categories: dict) -> dict:
    """``{"All"|"Things"|"Stuff": (pq, n) or None, "per_class": {cid: pq}}``."""
    thing_stat = ref_boundary_pq(images, categories, iou_type="segm")
    num: dict = defaultdict(float)
    den: dict = defaultdict(int)
    for pan_gt, gt_info, pan_pred, pred_info in images:
        for g in gt_info:
            cid = g["category_id"]
            if categories[cid]["isthing"] or g.get("iscrowd", 0):
                continue
            gmask = pan_gt == g["id"]
            pmask = np.zeros_like(gmask)
            for p in pred_info:
                if p["category_id"] == cid:
                    pmask |= pan_pred == p["id"]
            inter = int((gmask & pmask).sum())
            union = int(pmask.sum()) + int(gmask.sum()) - inter - int((pmask & (pan_gt == VOID)).sum())
            den[cid] += 1
            if inter > 0:
                num[cid] += inter / union
    out: dict = {"per_class": {}}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        vals = []
        for cid, info in categories.items():
            if isthing is not None and bool(info["isthing"]) != isthing:
                continue
            if info["isthing"]:
                s = thing_stat[cid] if cid in thing_stat else Stat()
                d = s.tp + 0.5 * s.fp + 0.5 * s.fn
                v = s.iou / d if d else None
            else:
                v = num[cid] / den[cid] if den[cid] else None
            out["per_class"][cid] = v if v is not None else 0.0
            if v is not None:
                vals.append(v)
        out[name] = (sum(vals) / len(vals), len(vals)) if vals else None
    return out


def ref_parsing_covering(images, categories: dict, normalize_by_image_size: bool = True) -> dict:
    """tf-models' ParsingCovering over ``images``: ``{"pc": mean or None, "per_class": {cid: pc}}``.

    Category arrays use dense class numbers ``1 .. C`` with 0 as the ignored
    label (GT VOID, GT crowd, predicted VOID); instances are segment positions.
    """
    cids = sorted(categories)
    num = {c: i + 1 for i, c in enumerate(cids)}
    n_cat = len(cids) + 1
    max_inst = 1 + max(max(len(g), len(p)) for _, g, _, p in images)
    offset = n_cat * max_inst
    weighted = np.zeros(n_cat)
    gt_area_per_class = np.zeros(n_cat)
    ignored = 0
    for pan_gt, gt_info, pan_pred, pred_info in images:
        def arrays(pan, info, crowd_ignored):
            cat = np.zeros(pan.shape, np.int64)
            inst = np.zeros(pan.shape, np.int64)
            for k, s in enumerate(info, 1):
                m = pan == s["id"]
                cat[m] = ignored if (crowd_ignored and s.get("iscrowd", 0)) else num[s["category_id"]]
                inst[m] = k
            return cat, inst
        gcat, ginst = arrays(pan_gt, gt_info, True)
        pcat, pinst = arrays(pan_pred, pred_info, False)
        max_ious = np.zeros((n_cat, max_inst))
        gt_areas = np.zeros((n_cat, max_inst))
        pred_areas = np.zeros((n_cat, max_inst))
        inters = defaultdict(list)
        pred_id = pcat * max_inst + pinst
        gt_id = gcat * max_inst + ginst
        ids, areas = np.unique(gt_id * offset + pred_id, return_counts=True)
        for iid, area in zip(ids, areas):
            g = iid // offset
            gc, gi = g // max_inst, g % max_inst
            if gc == ignored:
                continue
            gt_areas[gc, gi] += area
            p = iid % offset
            pc, pi = p // max_inst, p % max_inst
            pred_areas[pc, pi] += area
            if pc != gc:
                continue
            inters[gc, gi].append((pi, area))
        for (c, gi), lst in inters.items():
            ga = gt_areas[c, gi]
            max_ious[c, gi] = max(a / (ga + pred_areas[c, pi] - a) for pi, a in lst)
        if normalize_by_image_size:
            gt_areas /= gcat.size
        weighted += np.sum(max_ious * gt_areas, axis=-1)
        gt_area_per_class += np.sum(gt_areas, axis=-1)
    per_class = {c: (weighted[num[c]] / gt_area_per_class[num[c]] if gt_area_per_class[num[c]] else 0.0) for c in cids}
    valid = [per_class[c] for c in cids if gt_area_per_class[num[c]] != 0]
    return {"pc": float(np.mean(valid)) if valid else None, "per_class": per_class}


def ref_pq_area(images, categories: dict, ranges=((0, 1024), (1024, 9216), (9216, None))) -> list[dict]:
    """One ``{category_id: Stat}`` per range: GT-side counts by GT area, FPs by their own area."""
    def rng(a):
        for k, (lo, hi) in enumerate(ranges):
            if a >= lo and (hi is None or a < hi):
                return k
        raise AssertionError(a)
    stats = [defaultdict(Stat) for _ in ranges]
    for pan_gt, gt_info, pan_pred, pred_info in images:
        gt_segms = {el["id"]: dict(el, area=int((pan_gt == el["id"]).sum()), iscrowd=el.get("iscrowd", 0))
                    for el in gt_info}
        pred_segms = {el["id"]: dict(el, area=int((pan_pred == el["id"]).sum())) for el in pred_info}
        gmap = _pair_counts(pan_gt, pan_pred)
        gm, pm = set(), set()
        for (g, p), inter in gmap.items():
            if g not in gt_segms or p not in pred_segms:
                continue
            gs, ps = gt_segms[g], pred_segms[p]
            if gs["iscrowd"] or gs["category_id"] != ps["category_id"]:
                continue
            iou = inter / (ps["area"] + gs["area"] - inter - gmap.get((VOID, p), 0))
            if iou > 0.5:
                s = stats[rng(gs["area"])][gs["category_id"]]
                s.tp += 1
                s.iou += iou
                gm.add(g)
                pm.add(p)
        crowd = {}
        for g, gs in gt_segms.items():
            if g in gm:
                continue
            if gs["iscrowd"]:
                crowd[gs["category_id"]] = g
                continue
            stats[rng(gs["area"])][gs["category_id"]].fn += 1
        for p, ps in pred_segms.items():
            if p in pm:
                continue
            inter = gmap.get((VOID, p), 0)
            if ps["category_id"] in crowd:
                inter += gmap.get((crowd[ps["category_id"]], p), 0)
            if inter / ps["area"] > 0.5:
                continue
            stats[rng(ps["area"])][ps["category_id"]].fp += 1
    return stats
