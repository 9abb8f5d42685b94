"""Data plumbing for the reference model: dataset hook, augmentation, resumable sampling.

Training items follow ``pss_bench/data/sample.py``. :func:`build_dataset` is
the one hook that maps ``--data ROOT`` and a config's ``data.dataset`` to a
torch ``Dataset`` of un-augmented training items (from the readers of
:mod:`pss_bench.data`) plus its category list.

Augmentation and data order depend only on ``(seed, epoch, index)``, never on
global random state, so ``--resume`` continues with exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pss_bench.data.sample import IGNORE_INDEX
from pss_bench.errors import PssBenchError
from pss_bench.types import Category, Segments

log = logging.getLogger(__name__)


def segments_from_item(panoptic: torch.Tensor, semantic: torch.Tensor, crowd: torch.Tensor, categories: Sequence[Category]) -> Segments:
    """GT :class:`Segments` of one training item (for the in-memory PQ)."""
    flat = panoptic.reshape(-1)
    ids, first = np.unique(flat.cpu().numpy(), return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    sem = semantic.reshape(-1).cpu().numpy()[first]
    cr = crowd.reshape(-1).cpu().numpy()[first]
    cats = np.array([categories[int(s)].id for s in sem], dtype=np.int64)
    return Segments(ids.astype(np.int64), cats, cr.astype(bool))


class _Items(torch.utils.data.Dataset):
    """Un-augmented training items of a ``pss_bench.data`` reader."""

    def __init__(self, reader) -> None:
        from pss_bench.data.torch_dataset import PanopticTorchDataset

        self.inner = PanopticTorchDataset(reader, train=False)
        self.categories = list(reader.categories.values())
        self.gt_json = getattr(reader, "json_path", None) or getattr(getattr(reader, "gt", None), "path", None)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> dict:
        return self.inner[i]


def build_dataset(dataset: str, root: str | os.PathLike, split: str):
    """THE DATA HOOK: ``(dataset name, --data ROOT, split)`` -> ``(Dataset, categories)``.

    The Dataset yields un-augmented training items (``pss_bench/data/sample.py``)
    from the readers of :mod:`pss_bench.data`: ``cityscapes`` and
    ``synthstreets`` (``ROOT`` holds ``leftImg8bit/`` and ``gtFine/`` with the
    panoptic GT of ``pss-bench prepare cityscapes``), ``voc`` (``ROOT`` is the
    ``VOC2012`` folder), ``coco`` (``ROOT/panoptic_{split}2017.json``, its PNG
    folder and ``ROOT/{split}2017/`` images).

    Raises:
        PssBenchError: unknown dataset or missing files.
    """
    root = Path(root)
    if dataset in ("cityscapes", "synthstreets"):
        from pss_bench.data.cityscapes import CityscapesPanoptic

        reader = CityscapesPanoptic(root, split)
    elif dataset == "voc":
        from pss_bench.data.voc import VocPanoptic

        reader = VocPanoptic(root, split)
    elif dataset == "coco":
        from pss_bench.data.coco import CocoPanoptic

        reader = CocoPanoptic(root / f"panoptic_{split}2017.json", root / f"{split}2017")
    else:
        raise PssBenchError(f"unknown dataset {dataset!r} (cityscapes, synthstreets, voc, coco)")
    items = _Items(reader)
    return items, items.categories


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


class AugmentedItems(torch.utils.data.Dataset):
    """Indexed by ``(epoch, index)`` keys; the augmentation RNG is seeded from ``(seed, epoch, index)``."""

    def __init__(self, base, transform: TrainTransform | None, seed: int) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key) -> dict:
        epoch, index = key
        item = self.base[index]
        if self.transform is None:
            return item
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_033 + index)
        return self.transform(item, gen)


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Endless per-rank batches of ``(epoch, index)`` keys, starting at any iteration.

    The global stream is the concatenation of per-epoch permutations
    (``torch.randperm`` seeded with ``seed + epoch``); global batch ``i`` is
    stream positions ``[i G, (i + 1) G)`` with ``G = batch_size * world``, and
    rank ``r`` takes the ``r``-th slice of it.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start_iter: int = 0) -> None:
        if n <= 0:
            raise PssBenchError("the training set is empty")
        self.n, self.batch, self.seed, self.rank, self.world, self.start = n, batch_size, seed, rank, world, start_iter
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))}
        return self._perms[epoch]

    def batch_at(self, it: int) -> list[tuple[int, int]]:
        g = self.batch * self.world
        first = it * g + self.rank * self.batch
        keys = []
        for p in range(first, first + self.batch):
            e, o = divmod(p, self.n)
            keys.append((e, int(self._perm(e)[o])))
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        it = self.start
        while True:
            yield self.batch_at(it)
            it += 1

    def __len__(self) -> int:  # endless; DataLoader only needs it for len()
        return 2**31


def collate(items: list[dict]) -> dict:
    """Stacks the tensors of same-size items and lists the image ids."""
    out = {k: torch.stack([it[k] for it in items]) for k in ("image", "panoptic", "semantic", "crowd")}
    out["image_id"] = [it["image_id"] for it in items]
    return out
