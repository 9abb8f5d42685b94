"""torch ``Dataset`` wrappers: a reader plus training transforms -> the training-item dict.

The item layout is the contract in :mod:`pss_bench.data.sample`. Each item's
randomness comes from ``numpy.random.default_rng([seed, epoch, index])``, so
items do not depend on the DataLoader's worker count or order; call
:meth:`PanopticTorchDataset.set_epoch` before each epoch to get new crops
(with ``persistent_workers=True`` the workers keep the epoch they started with).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pss_bench.data.sample import PanopticSample
from pss_bench.data.transforms import TrainTransform, item_generator, label_maps, normalize
from pss_bench.structures import Category, ImageId


class PanopticReader(Protocol):
    """What the wrappers need from a reader (every reader in :mod:`pss_bench.data` has it)."""

    categories: dict[int, Category]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> PanopticSample: ...


def sample_to_item(sample: PanopticSample, image: np.ndarray | None = None,
                   panoptic: np.ndarray | None = None) -> dict:
    """The training-item dict of a sample (optionally with transformed image and id map)."""
    image = sample.image if image is None else image
    panoptic = sample.panoptic if panoptic is None else panoptic
    semantic, crowd = label_maps(panoptic, sample)
    return {
        "image": torch.from_numpy(normalize(image)),
        "panoptic": torch.from_numpy(np.ascontiguousarray(panoptic, dtype=np.int64)),
        "semantic": torch.from_numpy(np.ascontiguousarray(semantic, dtype=np.int64)),
        "crowd": torch.from_numpy(np.ascontiguousarray(crowd, dtype=bool)),
        "image_id": str(sample.image_id),
    }


class PanopticTorchDataset(Dataset):
    """Wraps a reader; applies :class:`~pss_bench.data.transforms.TrainTransform` when training.

    Args:
        reader: any reader (Cityscapes, COCO, VOC, SynthStreets via Cityscapes).
        train: apply the random transforms; otherwise items are the full images.
        transform: the augmentation (default: 256x512 crops, scale 0.5-2, flips).
        seed: base seed of the per-item generators.
    """

    def __init__(self, reader: PanopticReader, *, train: bool = True,
                 transform: TrainTransform | None = None, seed: int = 0) -> None:
        self.reader = reader
        self.train = train
        self.transform = transform or TrainTransform((256, 512), (0.5, 2.0), True)
        self.seed = int(seed)
        self.epoch = 0

    @property
    def categories(self) -> dict[int, Category]:
        return self.reader.categories

    @property
    def image_ids(self) -> Sequence[ImageId]:
        return self.reader.image_ids

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict:
        sample = self.reader[index]
        if not self.train:
            return sample_to_item(sample)
        return self.transform(sample_to_item(sample), item_generator(self.seed, self.epoch, int(index)))
