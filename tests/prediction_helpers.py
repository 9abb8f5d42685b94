"""Realistic wrong predictions made from real GT, shared by the PQ parity, cache and integration tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pq_oracle import write_dataset
from pss_bench.io.panoptic import load_panoptic_json, read_id_png


def perturbed_prediction(gt_json: Path, gt_dir: Path, out: Path, seed: int, mode: str) -> tuple[Path, Path]:
    """A realistic wrong prediction made from real GT.

    Modes: ``shift`` (roll + VOID band), ``mix`` (shift, then relabel, merge,
    split and drop segments, and scatter VOID), ``gt`` (the GT itself, crowd
    segments included as predictions).
    """
    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    cat_ids = list(gt.categories)
    rng = np.random.default_rng(seed)
    images = []
    for ann in gt.annotations:
        ids = read_id_png(gt.png_path(ann)).astype(np.int64)
        segs = {int(s): int(c) for s, c in zip(ann.segments.ids, ann.segments.category_ids)}
        if mode != "gt":
            dy, dx = (int(v) for v in rng.integers(-15, 16, size=2))
            ids = np.roll(ids, (dy, dx), axis=(0, 1))
            ids[: max(1, ids.shape[0] // 30)] = 0
        if mode == "mix":
            keys = list(segs)
            for s in keys:
                r = rng.random()
                if r < 0.15:  # wrong class
                    segs[s] = int(rng.choice(cat_ids))
                elif r < 0.25:  # split along a column
                    ys, xs = np.nonzero(ids == s)
                    if xs.size > 10:
                        new = max(segs) + 1 + int(rng.integers(1, 1000))
                        cut = int(np.median(xs))
                        m = (ids == s) & (np.arange(ids.shape[1])[None, :] > cut)
                        ids[m] = new
                        segs[new] = segs[s]
                elif r < 0.32:  # dropped: becomes VOID
                    ids[ids == s] = 0
            # merge two segments of the same class, when there are any
            by_cat: dict[int, list[int]] = {}
            for s, c in segs.items():
                by_cat.setdefault(c, []).append(s)
            for c, ss in by_cat.items():
                if len(ss) >= 2 and rng.random() < 0.5:
                    ids[ids == ss[1]] = ss[0]
            # scattered VOID noise
            noise = rng.random(ids.shape) < 0.01
            ids[noise] = 0
        present = set(np.unique(ids).tolist())
        info = [{"id": s, "category_id": c} for s, c in segs.items() if s in present and s != 0]
        images.append((ann.image_id, ids, info))
    return write_dataset(out, "pred", images, categories=None, with_area=False)
