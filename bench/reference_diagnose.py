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
4. **classification on ideal groups**: the same majority-GT grouping, but each
   segment's class from the learned classifier (a GT instance split between
   two predicted classes becomes two segments): what the classifier alone
   loses.

Usage::

    python bench/reference_diagnose.py CHECKPOINT --data DIR [--frames 50] [--grids 12x24,24x48]
        [--set inference.KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
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

    def shipped(ideal_seeds: bool):
        m = PanopticQuality(cats)
        for emb, seed, gt_seed, sample in frames:
            res = panoptic_inference(emb, net.classifier, thing, cfg.inference, seed_map=gt_seed if ideal_seeds else seed,
                                     iterations=cfg.kmeans.iterations, coord_weight=cfg.kmeans.coord_weight,
                                     kmeans_pool=pool)
            ids, info = to_panoptic(res, cat_ids.tolist(), sample.panoptic.shape)
            m.update(sample.panoptic, sample.segments, ids.numpy(), info)
        return m.compute()

    def grouped(grid, classify: bool):
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
                    cls = net.classifier(F.normalize(sums, dim=1)).argmax(1).numpy()
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
        rows.append((f"over-segmentation cap, grid {g[0]}x{g[1]}", grouped(g, False)))
    rows.append((f"classification on ideal groups, grid {grids[0][0]}x{grids[0][1]}", grouped(grids[0], True)))
    print(f"{args.checkpoint}, {n} val frames of {args.data}, inference {json.dumps(dataclasses.asdict(cfg.inference))}"
          f" ({time.perf_counter() - t0:.0f} s)\n")
    print("| stage | PQ | PQ-Th | PQ-St |\n|---|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {100 * r.all.pq:.1f} | {100 * r.things.pq:.1f} | {100 * r.stuff.pq:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
