"""The UPSNet-style baseline's config section ``upsnet`` (registered by :mod:`.registration`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UPSNetConfig:
    """The UPSNet-style baseline's own settings (used when ``model.arch`` is ``upsnet``).

    Attributes:
        box_head_dim: width of the two-layer box head (torchvision: 1024).
        mask_head_channels: channels of the four mask-head convs (Mask R-CNN: 256).
        anchor_sizes: one anchor size per level P2-P6.
        panoptic_weight: weight of the panoptic cross-entropy (UPSNet: 0.5).
        score_threshold: detections below it are dropped before the panoptic head.
        nms_threshold: IoU of the class-agnostic NMS before the head.
        max_covered: drop an instance more than this covered by kept ones (UPSNet: 0.3).
        stuff_area_limit: stuff regions smaller than this many pixels become
            void (UPSNet: 4096 at Cityscapes scale).
        rpn_pre_nms_top_n, rpn_post_nms_top_n: proposals kept per FPN level
            before NMS and per image after it, ``[training, testing]``
            (torchvision's Mask R-CNN: [2000, 1000] and [2000, 1000]).
        roi_batch_size: RoIs sampled per image for the box and mask losses (512).
        embedding: the per-pixel features the Context Error's segment
            embeddings are pooled from (:data:`EMBEDDINGS`): ``fcn``, the
            semantic head's stride-4 ``fcn_feat`` (4 x ``model.head_channels``);
            ``fpn``, the FPN's P2 (stride 4, ``model.fpn_channels``);
            ``fpn-all``, P2-P5 each resized bilinearly to P2's size and
            concatenated (4 x ``model.fpn_channels``). Inference only: the
            panoptic output is the same whichever is chosen.
    """

    box_head_dim: int = 1024
    mask_head_channels: int = 256
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    panoptic_weight: float = 0.5
    score_threshold: float = 0.5
    nms_threshold: float = 0.5
    max_covered: float = 0.3
    stuff_area_limit: int = 4096
    rpn_pre_nms_top_n: list[int] = field(default_factory=lambda: [2000, 1000])
    rpn_post_nms_top_n: list[int] = field(default_factory=lambda: [2000, 1000])
    roi_batch_size: int = 512
    embedding: str = "fcn"


# The choices of ``upsnet.embedding``.
EMBEDDINGS = ("fcn", "fpn", "fpn-all")
# Keys ``pss-bench predict`` may override on a trained checkpoint: they change only what inference does
# after the network (the panoptic head's thresholds, the features written as embeddings), never a weight.
INFERENCE_KEYS = ("upsnet.embedding", "upsnet.score_threshold", "upsnet.nms_threshold", "upsnet.max_covered",
                  "upsnet.stuff_area_limit")

# key -> (lower bound, whether the bound itself is allowed, upper bound or None).
RANGES = {
    "upsnet.box_head_dim": (1, True, None), "upsnet.mask_head_channels": (1, True, None),
    "upsnet.anchor_sizes": (1, True, None), "upsnet.panoptic_weight": (0, True, None),
    "upsnet.score_threshold": (0, True, 1), "upsnet.nms_threshold": (0, True, 1), "upsnet.max_covered": (0, True, 1),
    "upsnet.stuff_area_limit": (0, True, None), "upsnet.rpn_pre_nms_top_n": (1, True, None),
    "upsnet.rpn_post_nms_top_n": (1, True, None), "upsnet.roi_batch_size": (1, True, None),
}
# Lists of a fixed length.
LENGTHS = {"upsnet.anchor_sizes": 5, "upsnet.rpn_pre_nms_top_n": 2, "upsnet.rpn_post_nms_top_n": 2}
# Strings that take one of a few values.
CHOICES = {"upsnet.embedding": EMBEDDINGS}
