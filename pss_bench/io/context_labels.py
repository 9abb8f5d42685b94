"""SynthStreets' hidden context labels, ``context.json``: the one reader.

``{"<image_id>": {"<segment id>": "<label>"}}``, written by
:func:`pss_bench.data.synthstreets.generate` next to the GT folders and read
by the Context Error (its precision) and the detectron2 evaluator.
"""

from __future__ import annotations

import os
from pathlib import Path

from pss_bench.errors import GroundTruthFormatError
from pss_bench.io.safe_read import read_json_file

CONTEXT_FILE = "context.json"


def find_context_labels(gt_json: str | os.PathLike) -> Path | None:
    """SynthStreets' ``context.json``: in the GT JSON's folder, else its parent."""
    p = Path(gt_json).resolve().parent
    for folder in (p, p.parent):
        f = folder / CONTEXT_FILE
        if f.is_file():
            return f
    return None


def read_context_labels(path: str | os.PathLike) -> dict[str, dict[int, str]]:
    """Reads ``context.json``: image id -> {panoptic segment id: context label}, checked.

    Raises:
        GroundTruthFormatError: unreadable, or not that shape (naming the
            image and segment).
    """
    obj = read_json_file(path, GroundTruthFormatError)
    if not isinstance(obj, dict):
        raise GroundTruthFormatError(f"{path}: expected an object {{image_id: {{segment_id: label}}}}")
    out: dict[str, dict[int, str]] = {}
    for image_id, segs in obj.items():
        if not isinstance(segs, dict):
            raise GroundTruthFormatError(f"{path}: image {image_id!r}: expected an object {{segment_id: label}}")
        table: dict[int, str] = {}
        for sid, lab in segs.items():
            if not isinstance(lab, str):
                raise GroundTruthFormatError(f"{path}: image {image_id!r}, segment {sid}: label must be a string, found {lab!r}")
            try:
                table[int(sid)] = lab
            except ValueError:
                raise GroundTruthFormatError(f"{path}: image {image_id!r}: segment id {sid!r} is not an integer") from None
        out[image_id] = table
    return out
