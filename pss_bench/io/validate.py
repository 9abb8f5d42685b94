"""``pss-bench validate``: every problem of a panoptic dataset, not just the first."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from pss_bench.errors import FormatError, GroundTruthFormatError
from pss_bench.io.panoptic import (
    PanopticAnnotation,
    PanopticJson,
    ProblemLog,
    load_panoptic_json,
    read_id_png,
    segment_problems_against_png,
)


@dataclass
class ValidationReport:
    """What :func:`validate_panoptic` found."""

    images: int = 0
    segments: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _image_problems(pj: PanopticJson, ann: PanopticAnnotation, check_area: bool) -> list[str]:
    path = pj.png_path(ann)
    where = f"{path}: image {ann.image_id!r}"
    try:
        ids = read_id_png(path, where=where)
    except FormatError as exc:
        return [str(exc)]
    problems = []
    size = pj.image_sizes.get(ann.image_id)
    if size is not None and tuple(size) != ids.shape:
        problems.append(f"{where}: PNG is {ids.shape[1]}x{ids.shape[0]} but 'images' says {size[1]}x{size[0]} (WxH)")
    uniq, counts = np.unique(ids, return_counts=True)
    problems += segment_problems_against_png(uniq, counts, ann.segments, where, check_area, ann.refused_ids)
    return problems


def validate_panoptic(
    json_path: str | os.PathLike,
    png_dir: str | os.PathLike | None = None,
    *,
    workers: int | None = None,
    check_area: bool = True,
    progress: Callable[[int, int], None] | None = None,
    categories: dict | None = None,
) -> ValidationReport:
    """Checks a ground-truth COCO panoptic JSON and all its PNGs.

    ``categories`` (id -> :class:`~pss_bench.structures.Category`) replace
    the JSON's own, for a GT without ``categories``.

    Returns:
        A report listing every problem, in file order.
    """
    from pss_bench.threads import map_ordered

    log = ProblemLog(GroundTruthFormatError, collect=True)
    try:
        pj = load_panoptic_json(json_path, png_dir, role="gt", log=log, categories=categories)
    except FormatError as exc:  # unreadable JSON: nothing more to check
        return ValidationReport(problems=[str(exc)])
    report = ValidationReport(images=len(pj.annotations), segments=sum(len(a.segments) for a in pj.annotations))
    report.problems.extend(log.problems)
    if not pj.png_dir.is_dir():
        report.problems.append(f"{pj.png_dir}: PNG folder of {pj.path} not found")
        return report
    path_problems = pj.png_path_problems()
    report.problems.extend(msg for _, msg in path_problems)
    bad = {image_id for image_id, _ in path_problems}
    anns = [a for a in pj.annotations if a.image_id not in bad]
    for probs in map_ordered(lambda a: _image_problems(pj, a, check_area), anns, workers, progress, "pss-validate"):
        report.problems.extend(probs)
    return report
