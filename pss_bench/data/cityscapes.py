"""Cityscapes panoptic ground truth, built with cityscapesscripts' own converter."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from pss_bench.errors import PssBenchError
from pss_bench.structures import Category

log = logging.getLogger(__name__)


def panoptic_gt_paths(gtfine_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """``(json, png_dir)`` where cityscapesscripts' converter writes a split by default."""
    root = Path(gtfine_dir)
    return root / f"cityscapes_panoptic_{split}.json", root / f"cityscapes_panoptic_{split}"


def build_panoptic_gt(gtfine_dir: str | os.PathLike, split: str, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Runs ``cityscapesscripts.preparation.createPanopticImgs.convert2panoptic`` on one split.

    Args:
        gtfine_dir: the ``gtFine`` folder holding ``{split}/{city}/*_instanceIds.png``.
        split: ``train``, ``val`` or ``test``.
        out_dir: where to write (default ``gtfine_dir``, the converter's default).

    Returns:
        ``(json, png_dir)`` of the written ground truth.

    Raises:
        PssBenchError: the split has no ``*_instanceIds.png``.
    """
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    gtfine_dir = Path(gtfine_dir)
    out = Path(out_dir) if out_dir is not None else gtfine_dir
    pattern = gtfine_dir / split / "*" / "*_instanceIds.png"
    if not any(gtfine_dir.glob(f"{split}/*/*_instanceIds.png")):
        raise PssBenchError(f"{pattern}: no Cityscapes instanceIds PNG found for split {split!r}")
    out.mkdir(parents=True, exist_ok=True)
    # The converter prints progress on stdout; our stdout carries results only.
    with contextlib.redirect_stdout(sys.stderr if log.isEnabledFor(logging.INFO) else open(os.devnull, "w")):
        convert2panoptic(cityscapesPath=str(gtfine_dir), outputFolder=str(out), setNames=[split])
    return panoptic_gt_paths(out, split)


# --------------------------------------------------------------------------- layout checks and reader

_IMAGE_SUFFIX = "_leftImg8bit.png"
_INSTANCE_SUFFIX = "_gtFine_instanceIds.png"


def cityscapes_categories() -> dict[int, Category]:
    """The evaluated Cityscapes classes (label ids, not train ids), as cityscapesscripts' converter lists them."""
    from cityscapesscripts.helpers.labels import labels

    return {int(l.id): Category(id=int(l.id), name=l.name, isthing=bool(l.hasInstances))
            for l in labels if not l.ignoreInEval}


def _split_files(folder: Path, suffix: str, what: str) -> dict[str, Path]:
    """``{image id: file}`` for ``folder/{city}/*{suffix}``; raises on a missing or empty split."""
    if not folder.is_dir():
        raise PssBenchError(f"{folder}: split folder not found ({what})")
    files = sorted(folder.glob(f"*/*{suffix}"))
    if not files:
        raise PssBenchError(f"{folder}: no {'*' + suffix} files in any city folder ({what})")
    return {f.name[: -len(suffix)]: f for f in files}


def match_images(root: str | os.PathLike, split: str) -> dict[str, tuple[Path, Path]]:
    """Pairs ``leftImg8bit`` images with ``gtFine`` instanceIds PNGs of one split.

    Returns:
        ``{image id: (image, instanceIds png)}`` in sorted order.

    Raises:
        PssBenchError: a split folder is missing or empty, or a file has no twin.
    """
    root = Path(root)
    images = _split_files(root / "leftImg8bit" / split, _IMAGE_SUFFIX, "leftImg8bit")
    labels = _split_files(root / "gtFine" / split, _INSTANCE_SUFFIX, "gtFine instanceIds")
    for image_id, f in images.items():
        if image_id not in labels:
            raise PssBenchError(f"{f}: image {image_id!r} has no gtFine label ({image_id}{_INSTANCE_SUFFIX})")
    for image_id, f in labels.items():
        if image_id not in images:
            raise PssBenchError(f"{f}: label of image {image_id!r} has no leftImg8bit image ({image_id}{_IMAGE_SUFFIX})")
    return {k: (images[k], labels[k]) for k in sorted(images)}


def check_instance_png(path: Path, image_size: tuple[int, int] | None = None) -> None:
    """Checks one ``*_instanceIds.png``: 16-bit grayscale, right size, known label ids.

    Args:
        path: the PNG.
        image_size: ``(width, height)`` of its image, when known.

    Raises:
        FormatError: wrong mode, size, or a value that is no Cityscapes label id.
    """
    import numpy as np
    from cityscapesscripts.helpers.labels import id2label

    from pss_bench.errors import FormatError
    from pss_bench.io.panoptic import read_png_header

    width, height, depth, color = read_png_header(path)
    if color != 0 or depth != 16:
        kinds = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}
        raise FormatError(f"{path}: expected a 16-bit grayscale instanceIds PNG, found {depth}-bit "
                          f"{kinds.get(color, f'colour type {color}')}")
    if image_size is not None and (width, height) != tuple(image_size):
        raise FormatError(f"{path}: label is {width}x{height} but its leftImg8bit image is "
                          f"{image_size[0]}x{image_size[1]} (WxH)")
    from pss_bench.data.common import read_label_png

    values = read_label_png(path, ("I;16", "I;16B", "I", "I;16L"))
    valid = np.zeros(1 << 16, dtype=bool)
    for lid in id2label:
        if 0 <= lid < 1000:
            valid[lid] = True
            valid[lid * 1000: min(lid * 1000 + 1000, 1 << 16)] = True
    bad = ~valid[values.astype(np.int64) & 0xFFFF]
    if bad.any():
        v = int(values[bad].flat[0])
        raise FormatError(f"{path}: value {v} is not a Cityscapes label id (or label id * 1000 + instance)")


def check_split(root: str | os.PathLike, split: str, workers: int | None = None) -> dict[str, tuple[Path, Path]]:
    """Checks a split's layout, names, PNG modes, sizes and values before conversion.

    Raises:
        PssBenchError: the first bad file, in sorted order.
    """
    from pss_bench.threads import map_ordered

    pairs = match_images(root, split)

    def check(pair: tuple[Path, Path]) -> None:
        img, lab = pair
        from pss_bench.errors import FormatError
        from pss_bench.io.safe_read import open_image

        with open_image(img, str(img), FormatError) as im:
            size = im.size
        check_instance_png(lab, size)

    # PNG decoding releases the GIL; the first failure is re-raised in order.
    for _ in map_ordered(check, list(pairs.values()), workers, None, "pss-prepare"):
        pass
    return pairs


def prepare_cityscapes(root: str | os.PathLike, split: str, out_dir: str | os.PathLike | None = None,
                       check: bool = True, workers: int | None = None) -> tuple[Path, Path]:
    """Checks a split, builds its panoptic GT with cityscapesscripts and validates the result.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``.
        out_dir: where to write (default ``root/gtFine``, the converter's default).
        check: validate the written JSON + PNGs with :func:`~pss_bench.io.validate.validate_panoptic`.
        workers: threads for the checks (default: the usable cores).

    Returns:
        ``(json, png_dir)``.

    Raises:
        PssBenchError: bad layout or files, or a problem in the converted GT.
    """
    from pss_bench.errors import GroundTruthFormatError

    from pss_bench.io.atomic import publish_dir, staging_area

    root = Path(root)
    check_split(root, split, workers)
    out = Path(out_dir) if out_dir is not None else root / "gtFine"
    out.mkdir(parents=True, exist_ok=True)
    final_json, final_png = panoptic_gt_paths(out, split)
    # Convert into a hidden folder next to the target and move the result in at the end:
    # a failure leaves neither a partial JSON nor a half-written PNG folder behind.
    # The converter writes the JSON and the PNG folder side by side; both are moved out of the staging area.
    with staging_area(final_png) as tmp:
        json_path, png_dir = build_panoptic_gt(root / "gtFine", split, tmp)
        if check:
            from pss_bench.io.validate import validate_panoptic

            report = validate_panoptic(json_path, png_dir, workers=workers)
            if not report.ok:
                raise GroundTruthFormatError(f"{final_json}: converted GT fails validation: {report.problems[0]}")
        publish_dir(png_dir, final_png)
        os.replace(json_path, final_json)
    return final_json, final_png


class CityscapesPanoptic:
    """Cityscapes images with their panoptic GT (label ids as category ids).

    Reads ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and
    ``gtFine/cityscapes_panoptic_{split}.json`` + folder (made by
    ``pss-bench prepare cityscapes``). Works unchanged on SynthStreets.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``.
        gt_json: overrides the panoptic JSON (its PNG folder: the path without ``.json``).

    Raises:
        PssBenchError: a missing split or GT, or images and GT that do not match one to one.
    """

    def __init__(self, root: str | os.PathLike, split: str, gt_json: str | os.PathLike | None = None) -> None:
        from pss_bench.data.common import PanopticJsonReader, load_gt

        self.root = Path(root)
        self.split = split
        default_json, default_png = panoptic_gt_paths(self.root / "gtFine", split)
        json_path = Path(gt_json) if gt_json is not None else default_json
        if not json_path.is_file():
            raise PssBenchError(f"{json_path}: panoptic GT not found; run `pss-bench prepare cityscapes {self.root} --split {split}`")
        images = _split_files(self.root / "leftImg8bit" / split, _IMAGE_SUFFIX, "leftImg8bit")
        gt = load_gt(json_path, None if gt_json is not None else default_png)
        ids = {str(a.image_id) for a in gt.annotations}
        for image_id, f in images.items():
            if image_id not in ids:
                raise PssBenchError(f"{f}: image {image_id!r} has no entry in {json_path}")
        for a in gt.annotations:
            if str(a.image_id) not in images:
                raise PssBenchError(f"{json_path}: image {a.image_id!r} has no leftImg8bit file "
                                    f"({a.image_id}{_IMAGE_SUFFIX}) under {self.root / 'leftImg8bit' / split}")
        self.json_path = json_path
        self._reader = PanopticJsonReader(gt, lambda i: images[str(i)], cityscapes_categories())

    @property
    def categories(self):
        return self._reader.categories

    @property
    def image_ids(self):
        return self._reader.image_ids

    def __len__(self) -> int:
        return len(self._reader)

    def __getitem__(self, i: int):
        return self._reader[i]

    def __iter__(self):
        return iter(self._reader)
