"""UPSNet's panoptic head on constructed logits: instance channels, the unknown channel, overlap removal."""

from __future__ import annotations

import torch

from pss_bench.baselines.upsnet.panoptic_head import (
    box_masks,
    class_agnostic_nms_keep,
    panoptic_from_logits,
    panoptic_logits,
    paste_in_boxes,
    remove_overlapped,
)


def test_paste_fills_only_the_box():
    m = torch.ones((1, 4, 4)) * 3.0
    out = paste_in_boxes(m, torch.tensor([[2.0, 1.0, 6.0, 3.0]]), 5, 8)
    assert out.shape == (1, 5, 8)
    assert torch.all(out[0, 1:3, 2:6] == 3.0)
    assert out.sum() == 3.0 * 8
    assert torch.equal(box_masks(torch.tensor([[2.0, 1.0, 6.0, 3.0]]), 5, 8)[0], out[0] != 0)


def _scene():
    """Semantic logits (C=3: road stuff, sky stuff, car thing) on a 6x8 image with one car."""
    sem = torch.full((3, 6, 8), -5.0)
    sem[0, 3:] = 5.0  # road below
    sem[1, :3] = 5.0  # sky above
    sem[2, 2:5, 1:4] = 8.0  # a car the detector found
    sem[2, 2:5, 5:8] = 8.0  # a car it missed
    return sem


def test_instance_channel_is_mask_plus_semantic_logit_in_box_and_unknown_takes_missed_things():
    sem = _scene()
    stuff, things = torch.tensor([0, 1]), torch.tensor([2])
    box = torch.tensor([[1.0, 2.0, 4.0, 5.0]])
    mask = paste_in_boxes(torch.full((1, 3, 3), 2.0), box, 6, 8)
    logits = panoptic_logits(sem, stuff, things, mask, box, torch.tensor([2]), with_unknown=True)
    assert logits.shape == (2 + 1 + 1, 6, 8)
    assert torch.allclose(logits[2, 2:5, 1:4], torch.full((3, 3), 10.0))  # 2 (mask) + 8 (car logit)
    assert torch.all(logits[2, :, 5:] == 0)  # zero outside its box
    # unknown = max thing logit - max instance logit: 8 - 0 on the missed car
    assert torch.allclose(logits[3, 2:5, 5:8], torch.full((3, 3), 8.0))
    out = panoptic_from_logits(logits, [7, 23], [26], [0.9])
    ids = out.ids
    car = [s for s in out.segments if s["category_id"] == 26]
    assert len(car) == 1 and car[0]["isthing"] and car[0]["score"] == 0.9
    assert torch.all(ids[2:5, 1:4] == car[0]["id"])
    assert torch.all(ids[2:5, 5:8] == 0)  # the missed car is void, not road
    assert {s["category_id"] for s in out.segments} == {7, 23, 26}


def test_small_stuff_regions_become_void():
    sem = _scene()
    logits = panoptic_logits(sem, torch.tensor([0, 1]), torch.tensor([2]), torch.zeros((0, 6, 8)),
                             torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.long), with_unknown=True)
    # no instances: the cars go to the unknown channel; road keeps 12 px, sky 18 px
    out = panoptic_from_logits(logits, [7, 23], [], [], stuff_area_limit=10)
    assert {s["category_id"] for s in out.segments} == {7, 23}
    out = panoptic_from_logits(logits, [7, 23], [], [], stuff_area_limit=15)
    assert {s["category_id"] for s in out.segments} == {23}
    assert int((out.ids == 0).sum()) == 48 - 18
    out = panoptic_from_logits(logits, [7, 23], [], [], stuff_area_limit=19)
    assert out.segments == [] and int(out.ids.max()) == 0


def test_overlap_removal_drops_instances_more_than_30_percent_covered():
    masks = torch.zeros((3, 10, 10), dtype=torch.bool)
    masks[0, 0:5, 0:5] = True  # 25 px, best score
    masks[1, 0:5, 3:8] = True  # 25 px, 10 covered by #0 (40%) -> dropped
    masks[2, 5:10, 0:5] = True  # disjoint
    keep = remove_overlapped(masks, torch.tensor([0.9, 0.8, 0.7]), 0.3)
    assert keep.tolist() == [0, 2]
    masks[1, 0:5, 3:8] = False
    masks[1, 0:5, 4:9] = True  # 5 covered (20%) -> kept
    keep = remove_overlapped(masks, torch.tensor([0.9, 0.8, 0.7]), 0.3)
    assert keep.tolist() == [0, 1, 2]


def test_class_agnostic_nms_and_score_threshold():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 9, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.2])
    keep = class_agnostic_nms_keep(boxes, scores, score_thresh=0.5, iou_thresh=0.5)
    assert keep.tolist() == [0, 2]
