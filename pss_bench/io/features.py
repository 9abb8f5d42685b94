"""Dense feature maps, ``<image_id>.npy`` (``D x h x w`` float): read and check their layout.

The format that ``pss-bench embed`` and ``import-upsnet --features`` pool
over the GT segments; no pooling here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pss_bench.errors import PredictionFormatError
from pss_bench.structures import ImageId


def read_feature_map(path: Path, image_id: ImageId) -> np.ndarray:
    """``(D, h, w)`` float32 from ``<image_id>.npy``, checked (:func:`~pss_bench.io.safe_arrays.read_npy`).

    Raises:
        PredictionFormatError: missing, unreadable, a declared size over the
            limit, not 3-D float, or not finite.
    """
    from pss_bench.io.safe_arrays import read_npy

    where = f"{path}: image {image_id!r}"
    try:
        arr = read_npy(path, where, error_cls=PredictionFormatError)
    except FileNotFoundError:
        raise PredictionFormatError(f"{where}: feature map not found (expected <image_id>.npy, D x h x w)") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.dtype.kind != "f" or min(arr.shape) == 0:
        raise PredictionFormatError(f"{where}: expected a D x h x w float array, found {getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise PredictionFormatError(f"{where}: feature map holds NaN or infinite values")
    return arr


def _aspect_fits(h: int, w: int, height: int, width: int) -> bool:
    """Whether an ``h x w`` map covers a ``height x width`` image at one stride, within one stride cell.

    At stride ``s = height / h`` the map should be ``width / s = width * h / height``
    wide; rounding (floor, ceil, padding to a multiple of the stride) moves
    either side by up to one cell: ``|w * height - h * width| <= max(height, width)``.
    """
    return abs(w * height - h * width) <= max(height, width)


def check_feature_layout(shape: tuple[int, ...], image_hw: tuple[int, int], where: str) -> None:
    """Refuses a ``D x h x w`` feature map whose spatial shape cannot be the image's at any stride.

    A channels-last ``(h, w, D)`` array read as ``(D, h, w)`` pools the wrong
    axis without any error, and so does one with ``h`` and ``w`` swapped; the
    aspect ratio gives both away (unless the image is square).

    Raises:
        PredictionFormatError: the aspect ratio differs by more than one
            stride cell; the message says which axis looks wrong.
    """
    d, h, w = shape
    height, width = image_hw
    if _aspect_fits(h, w, height, width):
        return
    found = f"{d} x {h} x {w}"
    if _aspect_fits(d, h, height, width):
        hint = (f"it looks channels-last (h x w x D = {found}): the last axis should be the first; "
                f"save features.transpose(2, 0, 1)")
    elif _aspect_fits(w, h, height, width):
        hint = "its h and w axes look swapped (D x w x h): save features.transpose(0, 2, 1)"
    elif _aspect_fits(d, w, height, width) or _aspect_fits(w, d, height, width):
        hint = "its channel axis looks like a spatial one: expected D x h x w"
    else:
        hint = "no axis order fits the image; expected D x h x w at one stride"
    raise PredictionFormatError(
        f"{where}: feature map {found} (D x h x w) does not have the image's aspect ratio "
        f"{height} x {width} (H x W) within one stride cell: {hint}"
    )
