"""The one training augmentation, and the label maps and normalisation of a training item.

Geometry is shared exactly: the image is resampled bilinearly and the label
maps by nearest neighbour on the same pixel-centre grid, so a label never
moves relative to its pixels. Randomness comes only from the
``torch.Generator`` passed in (:func:`item_generator`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pss_bench.data.sample import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, PanopticSample


class TrainTransform:
    """Random rescale, random crop (padding with VOID) and horizontal flip of a training item.

    Args:
        crop_size: ``(H, W)`` output size.
        scale_range: ``(min, max)`` uniform rescale factor.
        flip: random horizontal flip with probability 0.5.
    """

    def __init__(self, crop_size: Sequence[int], scale_range: Sequence[float], flip: bool) -> None:
        self.crop = (int(crop_size[0]), int(crop_size[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.flip = flip

    def __call__(self, item: dict, gen: torch.Generator) -> dict:
        img, pan, sem, crowd = item["image"], item["panoptic"], item["semantic"], item["crowd"]
        lo, hi = self.scale_range
        s = lo + (hi - lo) * float(torch.rand((), generator=gen))
        h, w = pan.shape
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        if (nh, nw) != (h, w):
            img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
            rows = ((torch.arange(nh) + 0.5) * h / nh).long().clamp_(max=h - 1)
            cols = ((torch.arange(nw) + 0.5) * w / nw).long().clamp_(max=w - 1)
            pan, sem, crowd = (t[rows[:, None], cols[None, :]] for t in (pan, sem, crowd))
        ch, cw = self.crop
        y0 = int(torch.randint(0, max(nh - ch, 0) + 1, (), generator=gen))
        x0 = int(torch.randint(0, max(nw - cw, 0) + 1, (), generator=gen))
        out_img = torch.zeros(3, ch, cw)
        out_pan = torch.zeros(ch, cw, dtype=torch.long)
        out_sem = torch.full((ch, cw), IGNORE_INDEX, dtype=torch.long)
        out_crowd = torch.zeros(ch, cw, dtype=torch.bool)
        hh, ww = min(ch, nh - y0), min(cw, nw - x0)
        out_img[:, :hh, :ww] = img[:, y0 : y0 + hh, x0 : x0 + ww]
        out_pan[:hh, :ww] = pan[y0 : y0 + hh, x0 : x0 + ww]
        out_sem[:hh, :ww] = sem[y0 : y0 + hh, x0 : x0 + ww]
        out_crowd[:hh, :ww] = crowd[y0 : y0 + hh, x0 : x0 + ww]
        if self.flip and bool(torch.rand((), generator=gen) < 0.5):
            out_img, out_pan, out_sem, out_crowd = (t.flip(-1) for t in (out_img, out_pan, out_sem, out_crowd))
        return {"image": out_img, "panoptic": out_pan, "semantic": out_sem, "crowd": out_crowd, "image_id": item["image_id"]}


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The augmentation RNG of item ``index`` in ``epoch``: a function of ``(seed, epoch, index)`` only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + index)


def label_maps(panoptic: np.ndarray, sample: PanopticSample) -> tuple[np.ndarray, np.ndarray]:
    """Semantic class indices and the crowd mask of an id map.

    Args:
        panoptic: ``(H, W)`` int64 segment ids of ``sample`` (possibly transformed).
        sample: gives the segments and the category order.

    Returns:
        ``(semantic, crowd)``: ``(H, W)`` int64 class index (position in
        ``sample.categories``; IGNORE_INDEX on VOID) and ``(H, W)`` bool.
    """
    segs = sample.segments
    cat_pos = {cid: i for i, cid in enumerate(sample.categories)}
    order = np.argsort(segs.ids)
    ids = segs.ids[order]
    cls = np.array([cat_pos[int(c)] for c in segs.category_ids[order]], dtype=np.int64)
    crowd = segs.iscrowd[order].astype(bool)
    if len(ids) == 0:
        return np.full(panoptic.shape, IGNORE_INDEX, dtype=np.int64), np.zeros(panoptic.shape, dtype=bool)
    pos = np.clip(np.searchsorted(ids, panoptic), 0, len(ids) - 1)
    known = ids[pos] == panoptic
    semantic = np.where(known, cls[pos], IGNORE_INDEX)
    return semantic, known & crowd[pos]


def normalize(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32, scaled to [0, 1] and ImageNet-normalised."""
    x = image.astype(np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))
