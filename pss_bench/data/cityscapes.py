"""Cityscapes panoptic ground truth, built with cityscapesscripts' own converter."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from pss_bench.errors import PssBenchError

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
