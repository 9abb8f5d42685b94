"""UPSNet's parameter-free panoptic head and its post-processing, as pure tensor functions.

Facts from Xiong et al., "UPSNet: A Unified Panoptic Segmentation Network"
(CVPR 2019), section 3.3:

* stuff channels are the semantic head's stuff logits;
* each instance i of class c_i in box B_i gets the channel
  ``Y_i + X_i``: its mask logits pasted into B_i (zero outside) plus the
  semantic logit of c_i inside B_i (zero outside);
* the unknown channel is ``max_c X_thing,c - max_i (Y_i + X_i)`` (the paper's
  "largest thing logit minus largest instance logit"): high where the
  semantic head sees a thing that no instance explains;
* the panoptic prediction is the per-pixel argmax; training adds a
  cross-entropy over these channels with GT instances.

Post-processing before the head (UPSNet's inference): a score threshold,
class-agnostic NMS, and removal of instances whose mask is more than 30%
covered by higher-scoring kept ones; after it, stuff regions smaller than an
area threshold become void.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def paste_in_boxes(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pastes ``(N, M, M)`` mask logits into their boxes on an ``(N, H, W)`` zero canvas.

    Each mask is resized bilinearly to its box (rounded outwards to whole
    pixels, clipped to the image).
    """
    n = masks.shape[0]
    out = masks.new_zeros((n, height, width))
    for i in range(n):  # one resize per instance: instances are few
        x0, y0, x1, y1 = _box_pixels(boxes[i], height, width)
        if x1 <= x0 or y1 <= y0:
            continue
        out[i, y0:y1, x0:x1] = F.interpolate(
            masks[i][None, None], size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False
        )[0, 0]
    return out


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, H, W)`` bool: the pixels inside each box."""
    ys = torch.arange(height, device=boxes.device)
    xs = torch.arange(width, device=boxes.device)
    out = torch.zeros((boxes.shape[0], height, width), dtype=torch.bool, device=boxes.device)
    for i in range(boxes.shape[0]):
        x0, y0, x1, y1 = _box_pixels(boxes[i], height, width)
        out[i] = ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
    return out


def _box_pixels(box: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0 = max(0, min(width, int(x0)))
    y0 = max(0, min(height, int(y0)))
    x1 = max(0, min(width, int(-(-x1 // 1))))
    y1 = max(0, min(height, int(-(-y1 // 1))))
    return x0, y0, x1, y1


def panoptic_logits(
    sem_logits: torch.Tensor,
    stuff_channels: torch.Tensor,
    thing_channels: torch.Tensor,
    inst_mask_logits: torch.Tensor,
    inst_boxes: torch.Tensor,
    inst_sem_channels: torch.Tensor,
    with_unknown: bool,
) -> torch.Tensor:
    """The panoptic head's logits for one image.

    Args:
        sem_logits: ``(C, H, W)`` semantic logits.
        stuff_channels: ``(S,)`` long, which semantic channels are stuff.
        thing_channels: ``(T,)`` long, which semantic channels are things.
        inst_mask_logits: ``(N, H, W)`` mask logits already pasted in their boxes.
        inst_boxes: ``(N, 4)`` boxes (x0, y0, x1, y1).
        inst_sem_channels: ``(N,)`` long, the semantic channel of each instance's class.
        with_unknown: append the unknown channel (inference).

    Returns:
        ``(S + N [+ 1], H, W)``: stuff channels, instance channels, unknown.
    """
    _, h, w = sem_logits.shape
    stuff = sem_logits[stuff_channels]
    n = inst_mask_logits.shape[0]
    if n:
        inside = box_masks(inst_boxes, h, w).to(sem_logits.dtype)
        inst = inst_mask_logits + sem_logits[inst_sem_channels] * inside
    else:
        inst = sem_logits.new_zeros((0, h, w))
    chans = [stuff, inst]
    if with_unknown:
        thing_max = sem_logits[thing_channels].max(dim=0).values if thing_channels.numel() else sem_logits.new_full((h, w), float("-inf"))
        inst_max = inst.max(dim=0).values if n else sem_logits.new_zeros((h, w))
        chans.append((thing_max - inst_max)[None])
    return torch.cat(chans, dim=0)


def class_agnostic_nms_keep(boxes: torch.Tensor, scores: torch.Tensor, score_thresh: float, iou_thresh: float) -> torch.Tensor:
    """Indices of detections above ``score_thresh`` that survive class-agnostic NMS, by score."""
    from torchvision.ops import nms

    cand = torch.nonzero(scores >= score_thresh).flatten()
    if cand.numel() == 0:
        return cand
    keep = nms(boxes[cand].float(), scores[cand].float(), iou_thresh)
    return cand[keep]


def remove_overlapped(masks: torch.Tensor, scores: torch.Tensor, max_covered: float = 0.3) -> torch.Tensor:
    """Greedy by score: drop an instance whose mask is more than ``max_covered`` covered by kept ones.

    Args:
        masks: ``(N, H, W)`` bool instance masks.
        scores: ``(N,)``.

    Returns:
        Indices of kept instances, in descending score.
    """
    order = torch.argsort(scores, descending=True)
    if masks.numel() == 0:
        return order
    taken = torch.zeros(masks.shape[1:], dtype=torch.bool, device=masks.device)
    kept = []
    for i in order.tolist():
        area = int(masks[i].sum())
        if area == 0:
            continue
        covered = int((masks[i] & taken).sum())
        if covered / area > max_covered:
            continue
        kept.append(i)
        taken |= masks[i]
    return torch.tensor(kept, dtype=torch.long, device=masks.device)


@dataclass
class PanopticOutput:
    """One image's panoptic result.

    Attributes:
        ids: ``(H, W)`` int64 segment ids (0 = void).
        segments: ``[{"id", "category_id", "isthing", "score"}]``.
    """

    ids: torch.Tensor
    segments: list[dict]


def panoptic_from_logits(
    logits: torch.Tensor,
    stuff_category_ids: list[int],
    inst_category_ids: list[int],
    inst_scores: list[float],
    stuff_area_limit: int = 0,
) -> PanopticOutput:
    """Per-pixel argmax of the head's logits (with the unknown channel last) to segments.

    Stuff channel k becomes one segment of ``stuff_category_ids[k]`` (void when
    smaller than ``stuff_area_limit`` pixels), instance channel i one segment
    of ``inst_category_ids[i]``, the unknown channel void.
    """
    s, n = len(stuff_category_ids), len(inst_category_ids)
    if logits.shape[0] != s + n + 1:
        raise ValueError(f"expected {s} stuff + {n} instance + 1 unknown channels, found {logits.shape[0]}")
    arg = logits.argmax(dim=0)
    ids = torch.zeros_like(arg, dtype=torch.int64)
    segments = []
    counts = torch.bincount(arg.flatten(), minlength=s + n + 1)
    probs = None
    for ch in range(s + n):
        area = int(counts[ch])
        if area == 0:
            continue
        if ch < s and area < stuff_area_limit:
            continue
        sid = len(segments) + 1
        ids[arg == ch] = sid
        if ch < s:
            if probs is None:
                probs = torch.softmax(logits[:s].float(), dim=0) if s else None
            score = float(probs[ch][arg == ch].mean()) if probs is not None else 1.0
            segments.append({"id": sid, "category_id": int(stuff_category_ids[ch]), "isthing": False, "score": score})
        else:
            i = ch - s
            segments.append({"id": sid, "category_id": int(inst_category_ids[i]), "isthing": True,
                             "score": float(inst_scores[i])})
    return PanopticOutput(ids, segments)
