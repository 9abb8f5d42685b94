"""SynthStreets' label tables: Cityscapes label ids, train ids and colours, and the hidden context labels.

Ids, train ids and colours all come from ``cityscapesscripts.helpers.labels``;
this module only looks them up. It must not draw random numbers or pixels.
"""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import id2label, name2label
from cityscapesscripts.helpers.labels import labels as _CS_LABELS

#: The hidden context labels each thing category can get. Crowd segments get none.
CONTEXTS: dict[str, tuple[str, ...]] = {
    "person": ("crossing on a crosswalk", "alone on a sidewalk", "in a group", "next to a parked car"),
    "car": ("parked at the curb", "driving in a lane", "stopped at a crosswalk"),
    "bus": ("driving in a lane", "stopped at a crosswalk"),
    "rider": ("in traffic", "alone"),
    "bicycle": ("ridden", "parked on a sidewalk"),
}

#: Cityscapes label id of every category the generator draws, by name.
LABEL_ID: dict[str, int] = {name: name2label[name].id for name in (
    "road", "sidewalk", "building", "pole", "traffic light", "traffic sign", "vegetation", "sky",
    "person", "rider", "car", "bus", "bicycle",
)}


def _lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    train = np.full(256, 255, dtype=np.uint8)
    color = np.zeros((256, 4), dtype=np.uint8)
    for lab in _CS_LABELS:
        if 0 <= lab.id < 256:
            train[lab.id] = lab.trainId if 0 <= lab.trainId < 255 else 255
            color[lab.id] = (*lab.color, 255)
    return train, color


#: ``(256,)`` uint8 label id -> train id (255: ignored), and ``(256, 4)`` uint8 label id -> RGBA
#: colour; index them with a ``(H, W)`` uint8 label-id map.
TRAIN_ID_LUT, COLOR_LUT = _lookup_tables()


def label_name(label_id: int) -> str:
    """The Cityscapes name of ``label_id`` (``26`` -> ``"car"``)."""
    return id2label[label_id].name
