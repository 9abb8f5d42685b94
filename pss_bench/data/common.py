"""What every reader shares: image decoding with checks, and a random-access panoptic reader.

A reader is a sequence of :class:`~pss_bench.data.sample.PanopticSample`
(``len(reader)``, ``reader[i]``) with ``categories`` and ``image_ids``. Bad
input raises a :class:`~pss_bench.errors.FormatError` whose one-line message
names the file (and image id) at fault.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from pss_bench.data.sample import PanopticSample
from pss_bench.errors import FormatError, GroundTruthFormatError
from pss_bench.io.panoptic import PanopticJson, load_panoptic_json, read_id_png
from pss_bench.io.safe_read import open_image
from pss_bench.structures import Category, ImageId


def read_rgb(path: str | os.PathLike, where: str | None = None) -> np.ndarray:
    """Decodes an image file to ``(H, W, 3)`` uint8 RGB (grey and RGBA are converted).

    Raises:
        FormatError: missing, unreadable, or of a mode that is not an image (16-bit, float).
    """
    from PIL import UnidentifiedImageError

    path = Path(path)
    where = where or str(path)
    try:
        with open_image(path, where, FormatError, "image file") as im:
            if im.mode not in ("RGB", "RGBA", "L", "P", "LA", "CMYK", "YCbCr"):
                raise FormatError(f"{where}: expected an 8-bit RGB image, found PIL mode {im.mode}")
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FormatError(f"{where}: not a readable image ({exc})") from None
    return arr


def read_label_png(path: str | os.PathLike, modes: tuple[str, ...], where: str | None = None) -> np.ndarray:
    """Decodes a single-channel label PNG, refusing any PIL mode not in ``modes``.

    Returns:
        ``(H, W)`` array as stored (uint8 for ``L``/``P``, uint16 or int32 for 16-bit).

    Raises:
        FormatError: missing, unreadable, or of the wrong mode.
    """
    from PIL import UnidentifiedImageError

    path = Path(path)
    where = where or str(path)
    try:
        with open_image(path, where, FormatError, "label PNG") as im:
            if im.mode not in modes:
                raise FormatError(f"{where}: expected a label PNG of mode {' or '.join(modes)}, found {im.mode}")
            return np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FormatError(f"{where}: not a readable PNG ({exc})") from None


def check_same_size(image: np.ndarray, label: np.ndarray, image_path: Path, label_path: Path) -> None:
    """Raises when an image and its label map differ in size."""
    if image.shape[:2] != label.shape[:2]:
        raise FormatError(
            f"{label_path}: label is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
            f"{image_path} is {image.shape[1]}x{image.shape[0]}"
        )


class PanopticJsonReader:
    """Random access to images + COCO panoptic ground truth.

    Args:
        gt: the parsed ground truth (its categories are the dataset's table
            unless ``categories`` is given).
        image_path: image id -> image file.
        categories: overrides the JSON's category table (Cityscapes: the
            table from cityscapesscripts).
    """

    def __init__(
        self,
        gt: PanopticJson,
        image_path: Callable[[ImageId], Path],
        categories: dict[int, Category] | None = None,
    ) -> None:
        self.gt = gt
        self._image_path = image_path
        self.categories = categories if categories is not None else gt.categories
        if not self.categories:
            raise GroundTruthFormatError(f"{gt.path}: no categories")
        for ann in gt.annotations:
            unknown = [int(c) for c in ann.segments.category_ids if int(c) not in self.categories]
            if unknown:
                raise GroundTruthFormatError(f"{gt.path}: image {ann.image_id!r}: unknown category_id {unknown[0]}")

    @property
    def image_ids(self) -> list[ImageId]:
        return [a.image_id for a in self.gt.annotations]

    def __len__(self) -> int:
        return len(self.gt.annotations)

    def __iter__(self) -> Iterator[PanopticSample]:
        for i in range(len(self)):
            yield self[i]

    def image_file(self, i: int) -> Path:
        return self._image_path(self.gt.annotations[i].image_id)

    def __getitem__(self, i: int) -> PanopticSample:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        ann = self.gt.annotations[i]
        png = self.gt.png_path(ann)
        img_path = self._image_path(ann.image_id)
        image = read_rgb(img_path, where=f"{img_path}: image {ann.image_id!r}")
        pan = read_id_png(png, where=f"{png}: image {ann.image_id!r}").astype(np.int64)
        check_same_size(image, pan, img_path, png)
        # Every non-VOID pixel must carry a declared id (a sorted lookup, cheaper than np.unique).
        ids = np.sort(ann.segments.ids)
        if len(ids):
            pos = np.minimum(np.searchsorted(ids, pan), len(ids) - 1)
            bad = (ids[pos] != pan) & (pan != 0)
        else:
            bad = pan != 0
        if bad.any():
            raise GroundTruthFormatError(
                f"{png}: image {ann.image_id!r}, segment {int(pan[bad][0])}: in the PNG but not in the JSON")
        return PanopticSample(image=image, panoptic=pan, segments=ann.segments, image_id=ann.image_id,
                              categories=self.categories)


def load_gt(json_path: str | os.PathLike, png_dir: str | os.PathLike | None = None) -> PanopticJson:
    """Loads a ground-truth panoptic JSON, refusing a missing PNG folder up front."""
    gt = load_panoptic_json(json_path, png_dir, role="gt")
    if not gt.png_dir.is_dir():
        raise GroundTruthFormatError(f"{gt.png_dir}: PNG folder of {gt.path} not found")
    if not gt.annotations:
        raise GroundTruthFormatError(f"{gt.path}: no annotations (empty dataset)")
    return gt
