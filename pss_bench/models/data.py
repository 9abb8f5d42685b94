"""Data plumbing for training any model: dataset hook, augmented items, resumable sampling.

Training items follow ``pss_bench/data/sample.py``. :func:`build_dataset` is
the one hook that maps ``--data ROOT`` and a config's ``data.dataset`` to a
torch ``Dataset`` of un-augmented training items (from the readers of
:mod:`pss_bench.data`) plus its category list.

The augmentation is :class:`~pss_bench.data.transforms.TrainTransform`.
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

from pss_bench.data.transforms import TrainTransform, item_generator
from pss_bench.errors import PssBenchError
from pss_bench.structures import Category, Segments

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
        return self.transform(item, item_generator(self.seed, epoch, index))


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
