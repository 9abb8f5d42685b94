"""Plain value types shared by readers, metrics and reports (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

ImageId = Union[int, str]


@dataclass(frozen=True)
class Category:
    """One entry of a panoptic JSON's ``categories`` list."""

    id: int
    name: str
    isthing: bool


@dataclass(frozen=True)
class Segments:
    """The ``segments_info`` of one image as parallel arrays.

    Attributes:
        ids: ``(N,)`` int64 panoptic segment ids (``R + 256*G + 256**2*B``).
        category_ids: ``(N,)`` int64 category ids.
        iscrowd: ``(N,)`` bool.
        areas: ``(N,)`` int64 declared areas, or ``None`` when not declared
            (predictions: panopticapi recomputes them from the PNG).
    """

    ids: np.ndarray
    category_ids: np.ndarray
    iscrowd: np.ndarray
    areas: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def from_records(cls, records) -> "Segments":
        """Builds from a list of ``{"id", "category_id", "iscrowd"?, "area"?}`` dicts."""
        records = list(records)
        ids = np.array([int(r["id"]) for r in records], dtype=np.int64)
        cats = np.array([int(r["category_id"]) for r in records], dtype=np.int64)
        crowd = np.array([bool(r.get("iscrowd", 0)) for r in records], dtype=bool)
        areas = None
        if records and all("area" in r for r in records):
            areas = np.array([int(r["area"]) for r in records], dtype=np.int64)
        return cls(ids, cats, crowd, areas)
