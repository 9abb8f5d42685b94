"""Dense feature maps, ``<image_id>.npy`` (``D x h x w`` float): read and check their layout.

The format that ``pss-bench embed`` and ``import-upsnet --features`` pool
over the GT segments; no pooling here.
"""

from __future__ import annotations

import math
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


#: ``layout`` values: ``auto`` decides from the shape (refusing what is
#: ambiguous), ``dhw`` / ``hwd`` say the axis order outright.
FEATURE_LAYOUTS = ("auto", "dhw", "hwd")
#: In ``auto``, a map whose aspect ratio fits no axis order within one stride
#: cell (a model that resized the image to a fixed input, e.g. a ViT's 37 x 37)
#: is taken as ``D x h x w`` only when that reading's aspect ratio is at least
#: this factor closer to the image's than every other reading's.
AUTO_LAYOUT_MARGIN = 1.5


def _aspect_distance(h: int, w: int, height: int, width: int) -> float:
    """``|log((w / h) / (width / height))|``: how far an ``h x w`` map's aspect ratio is from the image's."""
    return abs(math.log((w * height) / (h * width)))


def apply_feature_layout(feats: np.ndarray, layout: str) -> np.ndarray:
    """``feats`` as ``D x h x w``: transposed from ``h x w x D`` for ``layout="hwd"``, else as it is."""
    if layout not in FEATURE_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(FEATURE_LAYOUTS)}, found {layout!r}")
    return np.ascontiguousarray(feats.transpose(2, 0, 1)) if layout == "hwd" else feats


def check_feature_layout(shape: tuple[int, ...], image_hw: tuple[int, int], where: str, layout: str = "auto") -> None:
    """Refuses a ``D x h x w`` feature map whose axis order is wrong or cannot be told from its shape.

    A channels-last ``(h, w, D)`` array read as ``(D, h, w)`` pools the wrong
    axis without any error, and so does one with ``h`` and ``w`` swapped; the
    aspect ratio gives both away (unless the image is square). With
    ``layout="auto"``:

    * a map with the image's aspect ratio within one stride cell is accepted;
    * one that another axis order fits that closely is refused, naming the fix;
    * one that no order fits (a model that resized to a fixed input: a
      ``4 x 20 x 30`` map of a ``360 x 640`` image, a ViT's ``768 x 37 x 37``)
      is accepted when the ``D x h x w`` reading is :data:`AUTO_LAYOUT_MARGIN`
      times closer to the image's aspect ratio than every other reading, and
      refused as ambiguous otherwise.

    ``layout="dhw"`` (or a map already transposed from ``hwd``) says the order
    outright: nothing is checked.

    Raises:
        PredictionFormatError: a wrong or ambiguous layout; the message says
            which axis looks wrong and how to say the layout with ``--layout``.
    """
    if layout != "auto":
        return
    d, h, w = shape
    height, width = image_hw
    if _aspect_fits(h, w, height, width):
        return
    found = f"{d} x {h} x {w}"
    say = "or pass --layout dhw|hwd to say the layout outright"
    if _aspect_fits(d, h, height, width):
        hint = (f"it looks channels-last (h x w x D = {found}): the last axis should be the first; "
                f"save features.transpose(2, 0, 1) or pass --layout hwd")
    elif _aspect_fits(w, h, height, width):
        hint = f"its h and w axes look swapped (D x w x h): save features.transpose(0, 2, 1), {say}"
    elif _aspect_fits(d, w, height, width) or _aspect_fits(w, d, height, width):
        hint = f"its channel axis looks like a spatial one: expected D x h x w, {say}"
    else:
        mine = _aspect_distance(h, w, height, width)
        others = {(a, b): _aspect_distance(a, b, height, width)
                  for a, b in ((w, h), (d, h), (h, d), (d, w), (w, d)) if (a, b) != (h, w)}
        if all(mine + math.log(AUTO_LAYOUT_MARGIN) <= o for o in others.values()):
            return  # unambiguous: D x h x w of a model that resized the image
        if min(others, key=others.get) == (d, h) and others[(d, h)] < mine:
            hint = (f"it looks channels-last (h x w x D = {found}), its first two axes being closest to the "
                    f"image's aspect ratio: save features.transpose(2, 0, 1) or pass --layout hwd")
        else:
            hint = (f"no axis order fits the image within one stride cell, and D x h x w is not clearly the "
                    f"closest: expected D x h x w; {say}")
    raise PredictionFormatError(
        f"{where}: feature map {found} (D x h x w) does not have the image's aspect ratio "
        f"{height} x {width} (H x W) within one stride cell: {hint}"
    )
