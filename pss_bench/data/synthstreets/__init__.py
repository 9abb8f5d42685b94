"""SynthStreets: generated street scenes in the Cityscapes layout, with hidden context labels.

A frame is a pinhole view down a straight street: sky, building and vegetation
blocks on both sides, sidewalks, a road with lane marks and sometimes a zebra
crosswalk (labelled road, as in Cityscapes), poles with signs and traffic
lights, and instances of car, bus, person, rider and bicycle whose size
follows depth and which occlude each other in depth order. Every instance is
placed *for a reason* (a person crossing on the crosswalk, a car stopped in
front of it, ...) and that reason is its hidden **context label**.

This package is pure compute plus file writing; :func:`render_frame` is a
function of ``(seed, split, index, height, width)`` only, so the output does
not depend on the number of worker processes. Label ids, train ids and colours
all come from ``cityscapesscripts.helpers.labels``.

* :mod:`.labels`: the label tables (ids, train ids, colours, context labels);
* :mod:`.layout`: the camera, the street and where each object stands and why;
* :mod:`.render`: a layout to image, label and instance maps (:func:`render_frame`);
* this module: writing frames and whole datasets (:func:`generate`).

What it must not do: print, or use any randomness other than the per-frame
``numpy.random.Generator``.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pss_bench.data.limits import MAX_FRAMES, MAX_SIDE
from pss_bench.data.synthstreets.labels import COLOR_LUT, CONTEXTS, TRAIN_ID_LUT, label_name
from pss_bench.data.synthstreets.render import SPLIT_CODES, SynthFrame, render_frame
from pss_bench.errors import PssBenchError

log = logging.getLogger(__name__)

CITY = "synth"
GENERATOR_VERSION = 1

__all__ = ["CITY", "CONTEXTS", "GENERATOR_VERSION", "SPLIT_CODES", "SynthFrame", "SynthSummary", "frame_paths",
           "generate", "image_id_for", "render_frame", "write_frame"]


def image_id_for(split: str, index: int) -> str:
    """Cityscapes-style image id: ``synth_{split code:06d}_{index:06d}``."""
    return f"{CITY}_{SPLIT_CODES[split]:06d}_{index:06d}"


def frame_paths(root: Path, split: str, image_id: str) -> dict[str, Path]:
    """Where a frame's files go, in the Cityscapes layout."""
    img_dir = root / "leftImg8bit" / split / CITY
    gt_dir = root / "gtFine" / split / CITY
    return {
        "image": img_dir / f"{image_id}_leftImg8bit.png",
        "instanceIds": gt_dir / f"{image_id}_gtFine_instanceIds.png",
        "labelIds": gt_dir / f"{image_id}_gtFine_labelIds.png",
        "labelTrainIds": gt_dir / f"{image_id}_gtFine_labelTrainIds.png",
        "color": gt_dir / f"{image_id}_gtFine_color.png",
    }


def write_frame(frame: SynthFrame, root: Path, split: str, image_id: str) -> None:
    """Writes the image and the four gtFine PNGs (instanceIds 16-bit, as Cityscapes)."""
    from PIL import Image

    paths = frame_paths(root, split, image_id)
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame.image, mode="RGB").save(paths["image"], compress_level=1)
    Image.fromarray(frame.instance_ids.astype(np.uint16)).save(paths["instanceIds"])
    Image.fromarray(frame.label_ids, mode="L").save(paths["labelIds"])
    Image.fromarray(TRAIN_ID_LUT[frame.label_ids], mode="L").save(paths["labelTrainIds"])
    Image.fromarray(COLOR_LUT[frame.label_ids], mode="RGBA").save(paths["color"])


def _make_one(task: tuple[Path, int, str, int, int, int]) -> tuple[str, dict[int, str]]:
    root, seed, split, index, height, width = task
    frame = render_frame(seed, split, index, height, width)
    image_id = image_id_for(split, index)
    write_frame(frame, root, split, image_id)
    return image_id, frame.context


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote."""

    root: Path
    frames: dict[str, int]
    instances: int
    context_counts: dict[str, dict[str, int]]

    def to_dict(self) -> dict:
        return {"root": str(self.root), "frames": self.frames, "instances": self.instances,
                "context_counts": self.context_counts}


def generate(
    out: str | os.PathLike,
    train: int,
    val: int,
    seed: int = 0,
    height: int = 256,
    width: int = 512,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Writes a SynthStreets dataset in the Cityscapes layout, atomically.

    The dataset is built in a hidden sibling folder and renamed onto ``out`` at
    the end, so a failure leaves nothing behind. The panoptic ground truth is
    made by cityscapesscripts' converter, exactly as for real Cityscapes.

    Args:
        out: the dataset root to create (must not exist, or be empty).
        train, val: number of frames per split.
        seed: non-negative seed; the same seed gives byte-identical files.
        height, width: image size (at least 64 x 128).
        workers: processes rendering frames, at most one per frame (does not change the output).
        progress: called as ``progress(done, total)`` after each frame.

    Returns:
        A :class:`SynthSummary`.

    Raises:
        PssBenchError: ``out`` is not empty, or the sizes are out of range.
    """
    from pss_bench.data.cityscapes import build_panoptic_gt
    from pss_bench.io.atomic import write_json_atomic

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PssBenchError(f"{out}: output folder exists and is not empty")
    if train < 0 or val < 0 or train + val == 0:
        raise PssBenchError(f"{out}: need at least one frame (got --train {train}, --val {val})")
    if max(train, val) > MAX_FRAMES:
        raise PssBenchError(f"{out}: at most {MAX_FRAMES} frames per split (got --train {train}, --val {val})")
    if height < 64 or width < 128:
        raise PssBenchError(f"{out}: image size {height}x{width} is too small (at least 64x128)")
    if max(height, width) > MAX_SIDE:
        raise PssBenchError(f"{out}: image size {height}x{width} is too large (at most {MAX_SIDE} a side)")
    if not 0 <= seed < 2**63:
        raise PssBenchError(f"{out}: seed must be in [0, 2**63), got {seed}")
    from pss_bench.io.atomic import staged_dir

    # published onto a missing or empty folder; the staging folders of killed runs are removed first
    with staged_dir(out) as tmp:
        tasks = [(tmp, seed, split, i, height, width) for split, n in (("train", train), ("val", val)) for i in range(n)]
        contexts: dict[str, dict[str, str]] = {}
        total = len(tasks)
        # Never more processes than frames, and chunks small enough to use them all.
        workers = max(1, min(workers, total))
        chunksize = max(1, min(8, total // workers))
        if workers <= 1:
            results = map(_make_one, tasks)
            for done, (image_id, ctx) in enumerate(results, 1):
                contexts[image_id] = {str(k): v for k, v in sorted(ctx.items())}
                if progress:
                    progress(done, total)
        else:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                for done, (image_id, ctx) in enumerate(ex.map(_make_one, tasks, chunksize=chunksize), 1):
                    contexts[image_id] = {str(k): v for k, v in sorted(ctx.items())}
                    if progress:
                        progress(done, total)
        for split, n in (("train", train), ("val", val)):
            if n:
                log.info("building the %s panoptic GT with cityscapesscripts (%d frames)", split, n)
                build_panoptic_gt(tmp / "gtFine", split)
        write_json_atomic(tmp / "context.json", contexts, indent=None)
        counts: dict[str, dict[str, int]] = {}
        n_inst = 0
        for ctx in contexts.values():
            for sid, lab in ctx.items():
                name = label_name(int(sid) // 1000)
                counts.setdefault(name, {}).setdefault(lab, 0)
                counts[name][lab] += 1
                n_inst += 1
        counts = {k: dict(sorted(v.items())) for k, v in sorted(counts.items())}
        write_json_atomic(tmp / "synthstreets.json", {
            "generator_version": GENERATOR_VERSION, "seed": seed, "height": height, "width": width,
            "frames": {"train": train, "val": val}, "contexts": {k: list(v) for k, v in CONTEXTS.items()},
            "context_counts": counts,
        })
    return SynthSummary(root=out, frames={"train": train, "val": val}, instances=n_inst, context_counts=counts)
