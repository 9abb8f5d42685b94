"""Shared by the Context Error tests: a plain-loops reference and dump builders.

The reference follows the definition in docs/context_error.md sentence by
sentence, with Python loops and no shared code with pss_bench.metrics.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pss_bench.io.panoptic import write_id_png
from pss_bench.io.prediction import PredictionWriter


def ref_semantic_map(ids, segments_info, cat_order):
    """Each pixel: index of its segment's category in ``cat_order`` (crowd included), -1 otherwise."""
    sem = np.full(ids.shape, -1, np.int64)
    for s in segments_info:
        sem[ids == s["id"]] = cat_order.index(s["category_id"])
    return sem


def ref_instances(ids, segments_info, things):
    """``[(segment_id, category_id, area, (x0, y0, w, h))]`` of non-crowd thing segments."""
    out = []
    for s in segments_info:
        if s.get("iscrowd", 0) or s["category_id"] not in things:
            continue
        ys, xs = np.nonzero(ids == s["id"])
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        out.append((s["id"], s["category_id"], int(ys.size), box))
    return out


def ref_regions(sem, box, n_classes):
    """The 8 region distributions, a list of 8 lists of C floats."""
    height, width = sem.shape
    x0, y0, w, h = box
    regions = []
    for j in (-1, 0, 1):
        for i in (-1, 0, 1):
            if i == 0 and j == 0:
                continue
            rx0, ry0 = max(0, x0 + i * w), max(0, y0 + j * h)
            rx1, ry1 = min(width, x0 + (i + 1) * w), min(height, y0 + (j + 1) * h)
            if rx1 <= rx0 or ry1 <= ry0:
                regions.append([0.0] * n_classes)
                continue
            crop = sem[ry0:ry1, rx0:rx1]
            area = crop.size
            regions.append([float((crop == c).sum()) / area for c in range(n_classes)])
    return regions


def ref_kl(p, q):
    total = 0.0
    for pc, qc in zip(p, q):
        if pc > 0:
            total += pc * math.log(pc / (qc if qc > 0 else 0.1))
    return total


def ref_pair_ce(a, b):
    return sum(ref_kl(p, q) + ref_kl(q, p) for p, q in zip(a, b)) / 8


def ref_context_error(instances, embeddings, k, gallery=None, gallery_embeddings=None, cats=None, labels=None, gallery_labels=None):
    """Reference CE, bounds and precision@K.

    Args:
        instances: list of dicts with "key", "cat", "regions".
        embeddings: list of 1-D arrays, parallel to ``instances``.
        gallery, gallery_embeddings: another set, or None (retrieve from ``instances``).
        cats: thing category ids in order.

    Returns:
        ``{cat: {"ce", "random", "oracle", "queries", "precision", "others"}}`` and the
        plain mean over every class with a query (the paper's).
    """
    same = gallery is None
    if same:
        gallery, gallery_embeddings, gallery_labels = instances, embeddings, labels
    per = {}
    for c in cats:
        rows = {"ce": [], "random": [], "oracle": [], "precision": [], "others": []}
        for qi, q in enumerate(instances):
            if q["cat"] != c:
                continue
            others = [gi for gi, g in enumerate(gallery) if g["cat"] == c and not (same and gi == qi)]
            if not others:
                continue
            ke = min(k, len(others))
            rows["others"].append(len(others))
            qv = embeddings[qi] / np.linalg.norm(embeddings[qi])
            sims = []
            for gi in others:
                gv = gallery_embeddings[gi] / np.linalg.norm(gallery_embeddings[gi])
                sims.append((-float(np.dot(qv, gv)), gi))
            sims.sort()
            retrieved = [gi for _, gi in sims[:ke]]
            pair = {gi: ref_pair_ce(q["regions"], gallery[gi]["regions"]) for gi in others}
            rows["ce"].append(sum(pair[gi] for gi in retrieved) / ke)
            rows["random"].append(sum(pair.values()) / len(others))
            rows["oracle"].append(sum(sorted(pair.values())[:ke]) / ke)
            if labels is not None and labels[qi] is not None:
                rows["precision"].append(sum(gallery_labels[gi] == labels[qi] for gi in retrieved) / ke)
        if rows["ce"]:
            per[c] = {
                "ce": float(np.mean(rows["ce"])), "random": float(np.mean(rows["random"])),
                "oracle": float(np.mean(rows["oracle"])), "queries": len(rows["ce"]),
                "precision": float(np.mean(rows["precision"])) if rows["precision"] else None,
                "others": max(rows["others"]),
            }
    mean = {key: float(np.mean([v[key] for v in per.values()])) for key in ("ce", "random", "oracle")} if per else None
    return per, mean


def ref_instances_of_gt(gt_json: Path, png_dir: Path):
    """Reference instances (with regions) of a GT: list of dicts, and the thing ids."""
    from PIL import Image

    obj = json.loads(Path(gt_json).read_text())
    cat_order = [c["id"] for c in obj["categories"]]
    things = [c["id"] for c in obj["categories"] if c["isthing"]]
    out = []
    for ann in obj["annotations"]:
        rgb = np.asarray(Image.open(png_dir / ann["file_name"]).convert("RGB")).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        sem = ref_semantic_map(ids, ann["segments_info"], cat_order)
        for sid, cid, area, box in ref_instances(ids, ann["segments_info"], things):
            out.append({"key": (ann["image_id"], sid), "cat": cid, "area": area, "box": box,
                        "regions": ref_regions(sem, box, len(cat_order))})
    return out, things


def write_embeddings(out: Path, per_image: dict, model: str = "test", **extra) -> Path:
    """A prediction directory with ``{image_id: (segment_ids, embeddings)}``."""
    with PredictionWriter(out, model, overwrite=True, **extra) as w:
        for image_id, (seg, emb) in per_image.items():
            w.add_embeddings(image_id, np.asarray(seg), np.asarray(emb))
        w.commit()
    return out


def write_tiny_gt(root: Path, images: dict, categories: list[dict]) -> tuple[Path, Path]:
    """A COCO panoptic GT from ``{image_id: (ids (H, W), segments_info)}``."""
    png_dir = root / "gt"
    anns, imgs = [], []
    for image_id, (ids, segs) in images.items():
        write_id_png(png_dir / f"{image_id}.png", ids)
        segs = [dict(s, area=int((ids == s["id"]).sum())) for s in segs]
        anns.append({"image_id": image_id, "file_name": f"{image_id}.png", "segments_info": segs})
        imgs.append({"id": image_id, "file_name": f"{image_id}.jpg", "height": ids.shape[0], "width": ids.shape[1]})
    gt_json = root / "gt.json"
    gt_json.write_text(json.dumps({"images": imgs, "annotations": anns, "categories": categories}))
    return gt_json, png_dir


def reset_cli_debug(monkeypatch) -> None:
    """``--debug`` sets a module-level flag that outlives the command: clear it for exit-code tests."""
    from pss_bench.cli import options

    monkeypatch.setitem(options._state, "debug", False)
