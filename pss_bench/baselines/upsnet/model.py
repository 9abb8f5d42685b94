"""A UPSNet-style two-branch panoptic model on current torch / torchvision.

Backbone: the same torchvision ResNet-FPN as the PSS reference model. Instance
branch: torchvision's Mask R-CNN parts (RPN, RoI heads with box and mask
heads) on P2-P5 (+ P6 for the RPN). Semantic branch: UPSNet's semantic head
(the shared deformable convs on every FPN level, upsampled to stride 4 and
concatenated: the 4 x 128-channel ``fcn_feat``, then a 1x1 classifier).
Panoptic head: :mod:`pss_bench.baselines.upsnet.panoptic_head`.

``forward(batch)`` in training mode returns the loss dict (RPN, box, mask,
semantic, panoptic x 0.5); :meth:`UPSNetStyle.predict` returns panoptic
results and the stride-4 features used as embeddings for the Context Error
(``upsnet.embedding``: the semantic head's ``fcn_feat``, the FPN's P2, or P2-P5).
:class:`UPSNetTrainingModule` and :func:`predict` are what the generic trainer
and predictor call (registered by :mod:`pss_bench.baselines.upsnet.registration`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pss_bench.baselines.upsnet.panoptic_head import (
    PanopticOutput,
    class_agnostic_nms_keep,
    paste_in_boxes,
    panoptic_from_logits,
    panoptic_logits,
    remove_overlapped,
)
from pss_bench.data.sample import IGNORE_INDEX
from pss_bench.baselines.upsnet.config import EMBEDDINGS, UPSNetConfig
from pss_bench.models.backbone import PyramidHead, ResNetFPN
from pss_bench.models.config import Config, ModelConfig
from pss_bench.structures import Category


def instance_targets(panoptic: torch.Tensor, semantic: torch.Tensor, crowd: torch.Tensor,
                     thing_label: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mask R-CNN targets of one training item.

    Args:
        panoptic: ``(H, W)`` int64 segment ids.
        semantic: ``(H, W)`` int64 class index, ``IGNORE_INDEX`` on void.
        crowd: ``(H, W)`` bool.
        thing_label: ``(C,)`` int64: class index -> 1-based thing label, 0 for stuff.

    Returns:
        ``{"boxes": (N, 4) float, "labels": (N,) int64, "masks": (N, H, W) uint8, "ids": (N,) int64}``.
    """
    valid = (semantic != IGNORE_INDEX) & ~crowd
    sem = torch.where(valid, semantic, torch.zeros_like(semantic))
    is_thing = valid & (thing_label[sem] > 0)
    ids = torch.unique(panoptic[is_thing])
    h, w = panoptic.shape
    if ids.numel() == 0:
        return {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64),
                "masks": torch.zeros((0, h, w), dtype=torch.uint8), "ids": ids}
    masks = (panoptic[None] == ids[:, None, None]) & is_thing[None]
    labels = torch.stack([thing_label[sem[m]].mode().values for m in masks])
    ys = torch.arange(h, device=panoptic.device)
    xs = torch.arange(w, device=panoptic.device)
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    y0 = torch.where(rows, ys, h).min(dim=1).values
    y1 = torch.where(rows, ys, -1).max(dim=1).values + 1
    x0 = torch.where(cols, xs, w).min(dim=1).values
    x1 = torch.where(cols, xs, -1).max(dim=1).values + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return {"boxes": boxes, "labels": labels, "masks": masks.to(torch.uint8), "ids": ids}


class UPSNetStyle(nn.Module):
    """Semantic head + Mask R-CNN + UPSNet's panoptic head.

    Args:
        model_cfg: backbone, FPN and head settings shared with the PSS model
            (``head_channels`` is the semantic head's width, 128 in UPSNet).
        cfg: the baseline's own settings.
        categories: the dataset's categories; the class index is the position.
    """

    def __init__(self, model_cfg: ModelConfig, cfg: UPSNetConfig, categories: Sequence[Category]) -> None:
        super().__init__()
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
        from torchvision.models.detection.roi_heads import RoIHeads
        from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
        from torchvision.ops import MultiScaleRoIAlign

        self.cfg = cfg
        self.categories = tuple(categories)
        things = [i for i, c in enumerate(self.categories) if c.isthing]
        stuff = [i for i, c in enumerate(self.categories) if not c.isthing]
        thing_label = torch.zeros(len(self.categories), dtype=torch.int64)
        for k, i in enumerate(things):
            thing_label[i] = k + 1
        self.register_buffer("thing_label", thing_label, persistent=False)
        self.register_buffer("thing_channels", torch.tensor(things, dtype=torch.int64), persistent=False)
        self.register_buffer("stuff_channels", torch.tensor(stuff, dtype=torch.int64), persistent=False)

        c = model_cfg.fpn_channels
        self.backbone = ResNetFPN(model_cfg.backbone, model_cfg.norm, c)
        self.semantic_head = PyramidHead(c, model_cfg.head_channels, len(self.categories), model_cfg.deformable)

        levels = ["p2", "p3", "p4", "p5"]
        anchors = AnchorGenerator(tuple((s,) for s in cfg.anchor_sizes), ((0.5, 1.0, 2.0),) * len(cfg.anchor_sizes))
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(c, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n=dict(zip(("training", "testing"), cfg.rpn_pre_nms_top_n)),
            post_nms_top_n=dict(zip(("training", "testing"), cfg.rpn_post_nms_top_n)),
            nms_thresh=0.7,
        )
        n_cls = len(things) + 1
        m = cfg.mask_head_channels
        self.roi_heads = RoIHeads(
            MultiScaleRoIAlign(levels, 7, 2), TwoMLPHead(c * 49, cfg.box_head_dim),
            FastRCNNPredictor(cfg.box_head_dim, n_cls),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=cfg.roi_batch_size, positive_fraction=0.25,
            bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5, detections_per_img=100,
            mask_roi_pool=MultiScaleRoIAlign(levels, 14, 2), mask_head=MaskRCNNHeads(c, [m] * 4, 1),
            mask_predictor=MaskRCNNPredictor(m, m, n_cls),
        )

    # ------------------------------------------------------------------ shared
    def _features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], OrderedDict]:
        pyramid = self.backbone(images)
        feats = OrderedDict(zip(["p2", "p3", "p4", "p5"], pyramid))
        feats["pool"] = F.max_pool2d(pyramid[-1], 1, 2)
        return pyramid, feats

    def _detect(self, image_list, feats: OrderedDict, targets=None):
        """RPN and RoI heads in float32, outside any autocast region (detectron2's rule for box maths).

        Under bf16 autocast, anchors, box deltas, decoded boxes, IoU matching,
        NMS and RoIAlign sampling points of 1-2k-pixel frames would be rounded
        to 8 bits of mantissa (steps of 4-8 pixels); the backbone and the
        semantic head keep autocast. Returns ``(proposals, detections, losses, float32 features)``.
        """
        with torch.autocast(image_list.tensors.device.type, enabled=False):
            feats = OrderedDict((k, v.float()) for k, v in feats.items())
            image_list.tensors = image_list.tensors.float()
            proposals, proposal_losses = self.rpn(image_list, feats, targets)
            detections, roi_losses = self.roi_heads(feats, proposals, image_list.image_sizes, targets)
        return proposals, detections, {**proposal_losses, **roi_losses}, feats

    def _semantic(self, pyramid: list[torch.Tensor], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(fcn_feat (B, 4*head, H/4, W/4), logits (B, C, H, W))``."""
        fcn_feat = self.semantic_head.features(pyramid)
        logits = self.semantic_head.fuse(fcn_feat)
        return fcn_feat, F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def _gt_mask_logits(self, feats, boxes: list[torch.Tensor], labels: list[torch.Tensor], sizes) -> list[torch.Tensor]:
        """Mask logits ``(N, M, M)`` of each image's GT instances, in their own class channel."""
        flat = self.roi_heads.mask_roi_pool(feats, boxes, sizes)
        logits = self.roi_heads.mask_predictor(self.roi_heads.mask_head(flat))
        lab = torch.cat(labels)
        picked = logits[torch.arange(lab.numel(), device=lab.device), lab]
        return list(picked.split([b.shape[0] for b in boxes]))

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Training losses for a collated batch of training items (see ``pss_bench.data.sample``)."""
        from torchvision.models.detection.image_list import ImageList

        images = batch["image"]
        b, _, h, w = images.shape
        targets = [instance_targets(batch["panoptic"][i], batch["semantic"][i], batch["crowd"][i], self.thing_label)
                   for i in range(b)]
        targets = [{k: v.to(images.device) for k, v in t.items()} for t in targets]
        image_list = ImageList(images, [(h, w)] * b)
        pyramid, feats = self._features(images)
        _, _, det_losses, feats32 = self._detect(image_list, feats, targets)
        _, sem_logits = self._semantic(pyramid, (h, w))
        with torch.autocast(images.device.type, enabled=False):  # box pasting in float32, as the detection
            sem_logits = sem_logits.float()
            loss_sem = F.cross_entropy(sem_logits, batch["semantic"], ignore_index=IGNORE_INDEX)
            loss_pan = self._panoptic_loss(sem_logits, feats32, targets, batch, (h, w))
        return {**det_losses, "loss_semantic": loss_sem, "loss_panoptic": self.cfg.panoptic_weight * loss_pan}

    def _panoptic_loss(self, sem_logits, feats, targets, batch, size) -> torch.Tensor:
        h, w = size
        boxes = [t["boxes"] for t in targets]
        labels = [t["labels"] for t in targets]
        n_total = sum(int(bx.shape[0]) for bx in boxes)
        mask_logits = self._gt_mask_logits(feats, boxes, labels, [size] * len(boxes)) if n_total else [None] * len(boxes)
        thing_sem = self.thing_channels
        stuff_pos = torch.full((len(self.categories),), -1, dtype=torch.int64, device=sem_logits.device)
        stuff_pos[self.stuff_channels] = torch.arange(self.stuff_channels.numel(), device=sem_logits.device)
        losses = []
        for i, t in enumerate(targets):
            n = t["boxes"].shape[0]
            pasted = paste_in_boxes(mask_logits[i], t["boxes"], h, w) if n else sem_logits.new_zeros((0, h, w))
            logits = panoptic_logits(sem_logits[i], self.stuff_channels, thing_sem, pasted, t["boxes"],
                                     thing_sem[t["labels"] - 1] if n else t["labels"], with_unknown=False)
            sem = batch["semantic"][i]
            target = torch.full_like(sem, -100)
            valid = sem != IGNORE_INDEX
            sp = stuff_pos[torch.where(valid, sem, torch.zeros_like(sem))]
            target = torch.where(valid & (sp >= 0), sp, target)
            for k in range(n):
                target[t["masks"][k].bool()] = self.stuff_channels.numel() + k
            if (target >= 0).any():
                losses.append(F.cross_entropy(logits[None], target[None], ignore_index=-100))
        return torch.stack(losses).mean() if losses else sem_logits.sum() * 0.0

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, images: torch.Tensor,
                cfg: UPSNetConfig | None = None) -> tuple[list[PanopticOutput], torch.Tensor]:
        """Panoptic results and the stride-4 embedding features for a batch of normalised images.

        Args:
            cfg: the inference settings to use (the panoptic head's thresholds
                and ``embedding``); the network's own config if ``None``. Its
                architecture settings are not read: they are the network's.

        Returns:
            ``([PanopticOutput] * B, features (B, D, H/4, W/4))`` with the
            features of ``cfg.embedding`` (:func:`embedding_features`); segment
            category ids are the dataset's category ids.
        """
        from torchvision.models.detection.image_list import ImageList

        cfg = self.cfg if cfg is None else cfg
        b, _, h, w = images.shape
        image_list = ImageList(images, [(h, w)] * b)
        pyramid, feats = self._features(images)
        _, detections, _, _ = self._detect(image_list, feats)
        fcn_feat, sem_logits = self._semantic(pyramid, (h, w))
        with torch.autocast(images.device.type, enabled=False):
            outs = self._fuse(detections, sem_logits.float(), (h, w), cfg)
        return outs, embedding_features(cfg.embedding, fcn_feat, pyramid)

    def _fuse(self, detections, sem_logits, size, cfg: UPSNetConfig) -> list[PanopticOutput]:
        """The panoptic head on the detections, in float32 (boxes pasted at full resolution)."""
        h, w = size
        cat_ids = [c.id for c in self.categories]
        stuff_ids = [cat_ids[i] for i in self.stuff_channels.tolist()]
        thing_ids = [cat_ids[i] for i in self.thing_channels.tolist()]
        outs = []
        for i, det in enumerate(detections):
            keep = class_agnostic_nms_keep(det["boxes"], det["scores"], cfg.score_threshold, cfg.nms_threshold)
            boxes, labels, scores = det["boxes"][keep], det["labels"][keep], det["scores"][keep]
            probs = det["masks"][keep][:, 0] if keep.numel() else sem_logits.new_zeros((0, 28, 28))
            # torchvision pastes probabilities; the head wants logits in the box, 0 outside.
            pasted = paste_in_boxes(torch.logit(probs, eps=1e-6), boxes, h, w)
            keep2 = remove_overlapped(pasted > 0, scores, cfg.max_covered)
            boxes, labels, scores, pasted = boxes[keep2], labels[keep2], scores[keep2], pasted[keep2]
            sem_ch = self.thing_channels[labels - 1] if labels.numel() else labels
            logits = panoptic_logits(sem_logits[i], self.stuff_channels, self.thing_channels, pasted, boxes, sem_ch,
                                     with_unknown=True)
            outs.append(panoptic_from_logits(logits, stuff_ids, [thing_ids[int(l) - 1] for l in labels],
                                             scores.tolist(), stuff_area_limit=cfg.stuff_area_limit))
        return outs


def embedding_features(choice: str, fcn_feat: torch.Tensor, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
    """The per-pixel features ``upsnet.embedding`` names, all at stride 4 (P2's size).

    Args:
        choice: ``fcn`` (the semantic head's ``fcn_feat``, ``(B, 4*head, H/4, W/4)``),
            ``fpn`` (P2, ``(B, C, H/4, W/4)``) or ``fpn-all`` (P2-P5, each
            resized bilinearly to P2's size, concatenated: ``(B, 4*C, H/4, W/4)``).
        fcn_feat: the semantic head's features.
        pyramid: the FPN's ``[P2, P3, P4, P5]``.

    Raises:
        ValueError: an unknown choice (configs refuse it when they are loaded).
    """
    if choice == "fcn":
        return fcn_feat
    if choice == "fpn":
        return pyramid[0]
    if choice == "fpn-all":
        size = pyramid[0].shape[-2:]
        return torch.cat([pyramid[0], *(F.interpolate(p, size=size, mode="bilinear", align_corners=False)
                                         for p in pyramid[1:])], dim=1)
    raise ValueError(f"upsnet.embedding: must be one of {', '.join(EMBEDDINGS)}, found {choice!r}")


class UPSNetTrainingModule(nn.Module):
    """The UPSNet-style baseline's losses (RPN, box, mask, semantic, panoptic) in one ``forward``."""

    def __init__(self, net: nn.Module, cfg: Config) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg

    def forward(self, batch: dict, memory=None):
        amp = self.cfg.train.amp and batch["image"].device.type == "cuda"
        with torch.autocast(batch["image"].device.type, dtype=torch.bfloat16, enabled=amp):
            losses = self.net(batch)
        # torchvision names its losses loss_*; the trainer logs every key as loss_<key>
        losses = {k.removeprefix("loss_"): v.float() for k, v in losses.items()}
        losses["total"] = sum(losses.values())
        return losses, None


@torch.no_grad()
def predict(net: UPSNetStyle, image: torch.Tensor, categories: Sequence[Category], cfg: Config):
    """The baseline's :func:`~pss_bench.models.predict.predict_panoptic`: features are ``cfg.upsnet.embedding``'s.

    The inference settings (thresholds, ``embedding``) are ``cfg.upsnet``'s, so
    ``pss-bench predict`` overrides of them apply to a loaded checkpoint.
    """
    amp = cfg.train.amp and image.device.type == "cuda"
    with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=amp):
        outs, feats = net.predict(image[None], cfg.upsnet)
    out = outs[0]
    areas = torch.bincount(out.ids.reshape(-1), minlength=len(out.segments) + 1)
    info = [{"id": s["id"], "category_id": s["category_id"], "iscrowd": 0, "area": int(areas[s["id"]]),
             "score": s["score"]} for s in out.segments]
    return out.ids, info, feats[0].float(), None
