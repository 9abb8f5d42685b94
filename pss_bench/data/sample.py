"""The one sample type every reader yields, and the tensor dict the Dataset wrappers return.

Readers (Cityscapes, COCO panoptic, VOC, SynthStreets) yield
:class:`PanopticSample`. The torch ``Dataset`` wrappers turn a sample, after
training transforms, into a dict of tensors (the *training item*) that the
models consume::

    {
      "image":     float32 (3, H, W), RGB scaled to [0, 1] then normalised with
                   IMAGENET_MEAN / IMAGENET_STD,
      "panoptic":  int64 (H, W) GT segment ids, 0 = VOID (also crop padding),
      "semantic":  int64 (H, W) contiguous class index (position in the dataset's
                   category list), IGNORE_INDEX (255) on VOID and padding,
      "crowd":     bool (H, W) True on pixels of crowd segments,
      "image_id":  str,
    }

Whether a class is a thing is ``categories[semantic].isthing``; a thing
instance is a non-crowd segment of a thing class (pixels with equal
``panoptic`` id). Batches are collated by stacking the tensors and listing the
image ids (all crops of a batch share one size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pss_bench.structures import Category, ImageId, Segments

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PanopticSample:
    """One image with its panoptic ground truth.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        panoptic: ``(H, W)`` int64 segment ids, 0 = VOID.
        segments: the image's segments (ids, category ids, crowd flags).
        image_id: the dataset's image id.
        categories: the dataset's category table, id -> Category, in the
            dataset's order (the contiguous class index is the position).
    """

    image: np.ndarray
    panoptic: np.ndarray
    segments: Segments
    image_id: ImageId
    categories: dict[int, Category]

    def isthing(self) -> np.ndarray:
        """``(N,)`` bool: whether each segment's category is a thing class."""
        return np.array([self.categories[int(c)].isthing for c in self.segments.category_ids], dtype=bool)
