"""Where a trained PSS checkpoint loses its PQ-Th: each stage of the post-processing swapped for its ideal.

On validation frames (``--data``, split ``val``), the network runs once per
frame; then, on the same outputs:

1. **as shipped**: the checkpoint's own inference settings (``--set KEY=VALUE``
   changes them);
2. **ideal seeds**: the centre heatmap replaced by the GT centres (the
   oracle's, :func:`~pss_bench.reference_model.oracle.ideal_outputs`), the
   rest as shipped: what a perfect seeding branch would add;
3. **over-segmentation cap**: the learned k-means segments (after dynamic
   partitioning), each given the GT id holding most of its pixels: the best
   any classification and merging could do with these segments (``--grids``
   repeats it at other k-means grids);
4. **classification on ideal groups, each segment alone**: the same
   majority-GT grouping, but each segment's class from the learned classifier
   (a GT instance split between two predicted classes becomes two segments);
5. **each group as a whole**: the classifier applied once per ideal group, to
   its summed embedding: what the classifier loses when the grouping is right;
6. **ideal grouping of the segments classified as things**: segments the
   classifier calls stuff stay stuff (merged by class, as shipped), the
   others are grouped by their GT instance and each group classified as a
   whole among the thing classes: what the per-segment thing / stuff call
   loses; the rest of the gap to "as shipped" is the merging's.

Then each GT thing instance of the as-shipped output is sorted by what
became of it (matched, merged into a larger segment, split, taken by stuff).

Usage::

    python bench/reference_diagnose.py CHECKPOINT --data DIR [--frames 50] [--grids 12x24,24x48]
        [--set inference.KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _majority(labels: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(K,)`` the GT id holding most pixels of each label ``0..K-1`` (``labels`` and ``gt`` of one shape)."""
    k = int(labels.max()) + 1
    base = int(gt.max()) + 1
    u, c = np.unique(labels.astype(np.int64) * base + gt, return_counts=True)
    seg, gid = u // base, u % base
    best = np.zeros(k, np.int64)
    order = np.lexsort((c, seg))  # by segment, then count: the last write per segment is its largest
    best[seg[order]] = gid[order]
    return best


OUTCOMES = (
    "matched (IoU > 0.5, its class)",
    "IoU > 0.5 with a segment of another class",
    "merged: its best segment is over twice its size and holds most of it",
    "split: no predicted segment holds half of it",
    "its best overlap is a stuff segment",
    "other (best segment holds most of it, IoU <= 0.5)",
    "all VOID",
)


def _instance_outcomes(sample, pred: np.ndarray, info: list[dict], things: set[int]) -> collections.Counter:
    """Each non-crowd GT thing instance of one frame sorted into one of :data:`OUTCOMES`."""
    out: collections.Counter = collections.Counter()
    gt = sample.panoptic
    pred_cat = {int(d["id"]): int(d["category_id"]) for d in info}
    pids, pareas = np.unique(pred, return_counts=True)
    parea = dict(zip(pids.tolist(), pareas.tolist()))
    for gid, cid, crowd in zip(sample.segments.ids, sample.segments.category_ids, sample.segments.iscrowd):
        if crowd or int(cid) not in things:
            continue
        mask = gt == gid
        area = int(mask.sum())
        best = None  # (IoU, pred id, intersection)
        for p, k in zip(*np.unique(pred[mask], return_counts=True)):
            if p == 0:
                continue
            iou = k / (area + parea[int(p)] - k)
            if best is None or iou > best[0]:
                best = (iou, int(p), int(k))
        if best is None:
            out[OUTCOMES[6]] += 1
            continue
        iou, p, k = best
        if pred_cat[p] not in things:
            out[OUTCOMES[0] if iou > 0.5 and pred_cat[p] == cid else OUTCOMES[4]] += 1
        elif iou > 0.5:
            out[OUTCOMES[0] if pred_cat[p] == cid else OUTCOMES[1]] += 1
        elif 2 * k <= area:
            out[OUTCOMES[3]] += 1
        elif parea[p] > 2 * area:
            out[OUTCOMES[2]] += 1
        else:
            out[OUTCOMES[5]] += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--grids", default="", help="extra k-means grids for the cap, e.g. 24x48,48x96")
    ap.add_argument("--set", action="append", default=[], metavar="inference.KEY=VALUE")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from pss_bench.metrics.pq import PanopticQuality
    from pss_bench.models.checkpoint import load_checkpoint
    from pss_bench.models.config import with_overrides
    from pss_bench.models.data import build_dataset
    from pss_bench.reference_model.oracle import ideal_outputs
    from pss_bench.reference_model.postprocess import (dynamic_partition, oversegment, panoptic_inference,
                                                       segment_sums, to_panoptic, upsample_labels)

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    net, cfg, cats, _ = load_checkpoint(args.checkpoint)
    if args.set:
        cfg = with_overrides(cfg, args.set)
    if cfg.model.arch != "pss":
        raise SystemExit(f"{args.checkpoint}: a PSS checkpoint is needed, found {cfg.model.arch}")
    ds, _ = build_dataset(cfg.data.dataset, args.data, "val")
    n = min(args.frames, len(ds))
    thing = torch.tensor([c.isthing for c in cats])
    cat_ids = np.array([c.id for c in cats])
    things = {c.id for c in cats if c.isthing}
    pool = 2 if cfg.model.output_stride == 2 else 1
    frames = []
    with torch.no_grad():
        for i in range(n):
            item = ds[i]
            out = net(item["image"][None])
            seed = out["seed"][0, 0].float()
            if cfg.loss.seed_loss == "focal":
                seed = torch.sigmoid(seed)
            frames.append((out["embedding"][0].float(), seed, ideal_outputs(item, cats, cfg.model.output_stride)[2],
                           ds.inner.reader[i]))

    outcomes: collections.Counter = collections.Counter()

    def shipped(ideal_seeds: bool):
        m = PanopticQuality(cats)
        for emb, seed, gt_seed, sample in frames:
            res = panoptic_inference(emb, net.classifier, thing, cfg.inference, seed_map=gt_seed if ideal_seeds else seed,
                                     iterations=cfg.kmeans.iterations, coord_weight=cfg.kmeans.coord_weight,
                                     kmeans_pool=pool)
            ids, info = to_panoptic(res, cat_ids.tolist(), sample.panoptic.shape)
            m.update(sample.panoptic, sample.segments, ids.numpy(), info)
            if not ideal_seeds:
                outcomes.update(_instance_outcomes(sample, ids.numpy(), info, things))
        return m.compute()

    def grouped(grid, classify: str):
        m = PanopticQuality(cats)
        for emb, _, _, sample in frames:
            lab = oversegment(emb, None, grid, cfg.kmeans.iterations, cfg.kmeans.coord_weight, pool=pool)
            lab = dynamic_partition(emb, lab, cfg.inference.concentration_threshold, cfg.inference.split_k,
                                    cfg.kmeans.iterations, cfg.kmeans.coord_weight)
            full = upsample_labels(lab, sample.panoptic.shape).numpy()
            gt = sample.panoptic
            pred = _majority(full, gt)[full]
            if classify:
                with torch.no_grad():
                    sums, _ = segment_sums(emb, lab, int(lab.max()) + 1)
                    own = net.classifier(F.normalize(sums, dim=1)).argmax(1)
                    cls = own
                    if classify != "segment":  # one class per group, from the group's summed embedding
                        seg_gt = _majority(full, gt)
                        major = torch.from_numpy(seg_gt)
                        if classify == "group-things":  # segments classified as stuff stay stuff, by class
                            major = torch.where(thing[own], major, -1 - own)
                        gid = torch.unique(major, return_inverse=True)[1]
                        gsum = torch.zeros(int(gid.max()) + 1, sums.shape[1]).index_add_(0, gid, sums)[gid]
                        logits = net.classifier(F.normalize(gsum, dim=1))
                        if classify == "group-things":  # thing groups keep a thing class; stuff, one segment per class
                            logits = logits.masked_fill(~thing[None, :], float("-inf"))
                            cls = torch.where(thing[own], logits.argmax(1), own)
                            pred = np.where(thing[own].numpy(), seg_gt, 10**6 + own.numpy())[full]
                        else:
                            cls = logits.argmax(1)
                    cls = cls.numpy()
                cid = cat_ids[cls][full]
                pred = np.where(pred > 0, pred * 1000 + cid, 0)
                present = np.unique(pred[pred > 0])
                psegs = [{"id": int(p), "category_id": int(p % 1000), "iscrowd": 0} for p in present]
            else:
                present = set(np.unique(pred).tolist()) - {0}
                g = sample.segments
                psegs = [{"id": int(i), "category_id": int(c), "iscrowd": int(cr)}
                         for i, c, cr in zip(g.ids, g.category_ids, g.iscrowd) if int(i) in present]
            m.update(gt, sample.segments, pred, psegs)
        return m.compute()

    rows = [("as shipped", shipped(False)), ("ideal seeds (GT centres)", shipped(True))]
    grids = [tuple(cfg.inference.grid)] + [tuple(int(x) for x in g.split("x")) for g in args.grids.split(",") if g]
    for g in grids:
        rows.append((f"over-segmentation cap, grid {g[0]}x{g[1]}", grouped(g, "")))
    rows.append((f"classification on ideal groups, each segment alone, grid {grids[0][0]}x{grids[0][1]}",
                 grouped(grids[0], "segment")))
    rows.append((f"classification on ideal groups, each group as a whole, grid {grids[0][0]}x{grids[0][1]}",
                 grouped(grids[0], "group")))
    rows.append((f"ideal grouping of the segments classified as things, grid {grids[0][0]}x{grids[0][1]}",
                 grouped(grids[0], "group-things")))
    print(f"{args.checkpoint}, {n} val frames of {args.data}, inference {json.dumps(dataclasses.asdict(cfg.inference))}"
          f" ({time.perf_counter() - t0:.0f} s)\n")
    print("| stage | PQ | PQ-Th | PQ-St |\n|---|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {100 * r.all.pq:.1f} | {100 * r.things.pq:.1f} | {100 * r.stuff.pq:.1f} |")
    total = sum(outcomes.values())
    print("\n| GT thing instance, as shipped | count | share |\n|---|---:|---:|")
    for name in OUTCOMES:
        print(f"| {name} | {outcomes[name]} | {100 * outcomes[name] / max(total, 1):.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
