"""segments_info parsing: the usual segments (one fast test) and every other kind (the named checks) side by side."""

from __future__ import annotations

import json

import numpy as np

from pss_bench.errors import GroundTruthFormatError
from pss_bench.io.panoptic import ProblemLog, load_panoptic_json
from pss_bench.structures import Category

CATS = [{"id": 1, "name": "car", "isthing": 1}, {"id": 7, "name": "road", "isthing": 0}]


def _load(tmp_path, segs, role="gt"):
    obj = {"annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": segs}], "categories": CATS}
    (tmp_path / "x.json").write_text(json.dumps(obj))
    log = ProblemLog(GroundTruthFormatError, collect=True)
    cats = None if role == "gt" else {c["id"]: Category(c["id"], c["name"], bool(c["isthing"])) for c in CATS}
    pj = load_panoptic_json(tmp_path / "x.json", tmp_path, role=role, categories=cats, log=log)
    return pj.annotations[0], log.problems


def test_usual_and_unusual_segments_in_one_list(tmp_path):
    segs = [
        {"id": 5, "category_id": 1, "area": 10},                   # usual, iscrowd absent
        {"id": 6, "category_id": 7, "area": 3, "iscrowd": True},   # bool crowd
        {"id": 8, "category_id": 1, "area": 4.0, "iscrowd": 1.0},  # float area and crowd that are integers
        {"id": True, "category_id": 1, "area": 1},                 # a bool is not an id
        {"id": 5, "category_id": 1, "area": 2},                    # listed twice
        {"id": 9, "category_id": 3, "area": 2},                    # unknown category
        {"id": 10, "category_id": 1, "area": 0},                   # area 0
        {"id": 11, "category_id": 1, "area": 2, "iscrowd": 2},     # bad crowd
        {"id": 2**24, "category_id": 1, "area": 2},                # out of the RGB range
        {"id": 12, "category_id": False, "area": 2},               # a bool is not a category
        [1, 2],                                                    # not an object
        {"id": 13, "category_id": 7, "area": 2**53},               # the largest area
        {"id": 14, "category_id": 7, "area": 2**53 + 1},           # past it
    ]
    ann, problems = _load(tmp_path, segs)
    assert ann.segments.ids.tolist() == [5, 6, 8, 13]
    assert ann.segments.category_ids.tolist() == [1, 7, 1, 7]
    assert ann.segments.iscrowd.tolist() == [False, True, True, False]
    assert ann.segments.areas.tolist() == [10, 3, 4, 2**53] and ann.segments.areas.dtype == np.int64
    assert ann.refused_ids == frozenset({9, 10, 11, 12, 14})
    expected = ["segments_info[3] has no integer 'id'", "segment 5: segment id listed twice",
                "segment 9: unknown category_id 3", "segment 10: 'area' must be a pixel count",
                "segment 11: 'iscrowd' must be 0 or 1", "segment 16777216: id out of the RGB range",
                "segment 12: no integer 'category_id'", "segments_info[10] is not an object",
                "segment 14: 'area' must be a pixel count"]
    assert len(problems) == len(expected)
    for p, e in zip(problems, expected):
        assert e in p, (p, e)


def test_predictions_need_no_area(tmp_path):
    ann, problems = _load(tmp_path, [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 7, "area": "x"}],
                          role="prediction")
    assert problems == [] and ann.segments.ids.tolist() == [5, 6] and ann.segments.areas is None
