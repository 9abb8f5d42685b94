"""COCO panoptic reader: a panoptic JSON, its PNG folder and an image folder."""

from __future__ import annotations

import os
from pathlib import Path

from pss_bench.data.common import PanopticJsonReader, load_gt
from pss_bench.errors import PssBenchError
from pss_bench.io.panoptic import safe_join


class CocoPanoptic(PanopticJsonReader):
    """COCO-format panoptic ground truth with its images.

    Each image is found through ``images[*].file_name`` of the JSON (the
    annotation's PNG name with ``.jpg`` when an image entry is missing).

    Args:
        gt_json: the panoptic JSON (``panoptic_{split}.json``).
        image_dir: the folder of the RGB images.
        png_dir: the PNG folder (default: the JSON path without ``.json``).

    Raises:
        PssBenchError: a missing file or folder, or an image that is not there.
    """

    def __init__(self, gt_json: str | os.PathLike, image_dir: str | os.PathLike,
                 png_dir: str | os.PathLike | None = None) -> None:
        image_dir = Path(image_dir)
        if not image_dir.is_dir():
            raise PssBenchError(f"{image_dir}: image folder not found")
        gt = load_gt(gt_json, png_dir)
        names = gt.image_files  # images[*].file_name, parsed and type-checked with the GT
        paths = {}
        for ann in gt.annotations:
            name = names.get(ann.image_id) or str(Path(ann.file_name).with_suffix(".jpg"))
            p = safe_join(image_dir, name, where=f"{gt.path}: image {ann.image_id!r}")
            if not p.is_file():
                raise PssBenchError(f"{p}: image file of image {ann.image_id!r} in {gt.path} not found")
            paths[ann.image_id] = p
        super().__init__(gt, paths.__getitem__)
