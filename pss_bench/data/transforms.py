"""Training transforms applied to an image and its panoptic labels together (pure numpy).

Geometry is shared exactly: the image is resampled bilinearly and the label
maps by nearest neighbour on the same pixel-centre grid, so a label never
moves relative to its pixels. Randomness comes only from the
``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pss_bench.data.sample import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, PanopticSample


@dataclass(frozen=True)
class AugmentConfig:
    """Random scale, then crop (padding with VOID), then horizontal flip.

    Attributes:
        crop_size: ``(height, width)`` of the training crop; ``None``: no crop.
        scale_range: ``(min, max)`` of the uniform random scale factor.
        flip: flip horizontally with probability 0.5.
    """

    crop_size: tuple[int, int] | None = (256, 512)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each output pixel centre (half-pixel convention, as bilinear resizing)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize(image: np.ndarray, panoptic: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resizes an image bilinearly and its id map by nearest neighbour.

    Args:
        image: ``(H, W, 3)`` uint8.
        panoptic: ``(H, W)`` int64 segment ids.
        size: ``(height, width)`` of the output.

    Returns:
        ``(image, panoptic)`` at ``size``.
    """
    from PIL import Image

    h, w = size
    if (h, w) == panoptic.shape:
        return image, panoptic
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    pan = panoptic[_nearest_index(h, panoptic.shape[0])][:, _nearest_index(w, panoptic.shape[1])]
    return img, pan


def pad_crop(image: np.ndarray, panoptic: np.ndarray, crop: tuple[int, int], rng: np.random.Generator,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pads to at least ``crop`` (image with the ImageNet mean, labels with VOID), then crops at random.

    Returns:
        ``(image, panoptic, valid)``: the crop and a bool mask of the pixels
        that came from the image (False on padding).
    """
    ch, cw = crop
    h, w = panoptic.shape
    ph, pw = max(ch, h), max(cw, w)
    valid = np.ones((h, w), dtype=bool)
    if (ph, pw) != (h, w):
        mean = np.round(np.array(IMAGENET_MEAN) * 255).astype(np.uint8)
        img = np.empty((ph, pw, 3), dtype=np.uint8)
        img[:] = mean
        img[:h, :w] = image
        pan = np.zeros((ph, pw), dtype=panoptic.dtype)
        pan[:h, :w] = panoptic
        v = np.zeros((ph, pw), dtype=bool)
        v[:h, :w] = True
        image, panoptic, valid = img, pan, v
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    return image[y0:y0 + ch, x0:x0 + cw], panoptic[y0:y0 + ch, x0:x0 + cw], valid[y0:y0 + ch, x0:x0 + cw]


def augment(image: np.ndarray, panoptic: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, pad-and-crop and flip, identical for image and labels.

    Args:
        image: ``(H, W, 3)`` uint8.
        panoptic: ``(H, W)`` int64 segment ids, 0 = VOID.
        cfg: the transform settings.
        rng: the only source of randomness.

    Returns:
        ``(image, panoptic)``, contiguous; padding is VOID.
    """
    lo, hi = cfg.scale_range
    s = float(rng.uniform(lo, hi))
    h, w = panoptic.shape
    image, panoptic = resize(image, panoptic, (max(1, round(h * s)), max(1, round(w * s))))
    if cfg.crop_size is not None:
        image, panoptic, _ = pad_crop(image, panoptic, tuple(cfg.crop_size), rng)
    if cfg.flip and rng.random() < 0.5:
        image, panoptic = image[:, ::-1], panoptic[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(panoptic)


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
