"""The PSS network: embedding and seeding heads on the shared ResNet-FPN, segment classifier.

``forward`` maps images to per-pixel embeddings and a centre heatmap at stride
4; the segment classifier is applied to prototypes by the loss and by the
post-processing (``pss_bench.reference_model.postprocess``), never here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pss_bench.models.backbone import PyramidHead, ResNetFPN
from pss_bench.models.config import ModelConfig


class StrideTwoDecoder(nn.Module):
    """Lifts stride-4 embeddings to stride 2 with the stem's stride-2 features.

    ``out = up2(e4) + conv1x1(relu(gn(conv3x3([up2(e4), proj(c1)]))))``: the
    bilinear upsampling carries the stride-4 embedding, the residual adds the
    detail of thin and small objects that a stride-4 map cannot hold. The last
    conv starts at zero, so a fresh decoder outputs the upsampled embedding.
    Output: ``(B, D, H/2, W/2)`` (not normalised).
    """

    def __init__(self, embed_dim: int, stem_channels: int, head_channels: int) -> None:
        super().__init__()
        proj = max(8, head_channels // 2)
        self.proj = nn.Sequential(nn.Conv2d(stem_channels, proj, 1, bias=False), nn.GroupNorm(min(8, proj), proj), nn.ReLU(inplace=True))
        self.conv = nn.Sequential(
            nn.Conv2d(embed_dim + proj, head_channels, 3, padding=1, bias=False),
            nn.GroupNorm(min(32, head_channels), head_channels),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(head_channels, embed_dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, emb4: torch.Tensor, stem: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(emb4, size=stem.shape[-2:], mode="bilinear", align_corners=False)
        return up + self.out(self.conv(torch.cat([up, self.proj(stem)], dim=1)))


def with_coords(x: torch.Tensor) -> torch.Tensor:
    """``x`` with two more channels: each cell's centre y and x, scaled to [-1, 1]."""
    b, _, h, w = x.shape
    ys = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) * (2.0 / w) - 1.0
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")).to(x.dtype)  # positions in float32, then x's dtype
    return torch.cat([x, grid.expand(b, 2, h, w)], dim=1)


class SegmentClassifier(nn.Module):
    """Two 1x1 convs (= linear layers) on prototypes: ``(N, D) -> (N, C)`` logits."""

    def __init__(self, embed_dim: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, prototypes: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(prototypes)))


class PSSNet(nn.Module):
    """Panoptic Segment Sorting network.

    ``forward(images)`` with images ``(B, 3, H, W)`` float32 (H, W multiples of
    32 are best; others are padded internally by the convs' rounding) returns::

        {"embedding": (B, D, H/s, W/s) float32, L2-normalised over D, with
                      s = ``cfg.output_stride`` (4, or 2 through :class:`StrideTwoDecoder`),
         "seed":      (B, 1, H/4, W/4) float32 centre logits (``loss.seed_loss``
                      ``focal``; a regressed heatmap for ``mse`` checkpoints)}

    ``self.classifier`` maps prototypes ``(N, D)`` to class logits ``(N, C)``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.num_classes <= 0:
            raise ValueError("ModelConfig.num_classes must be set (the dataset's class count)")
        if cfg.output_stride not in (2, 4):
            raise ValueError(f"ModelConfig.output_stride must be 4 or 2, found {cfg.output_stride}")
        self.cfg = cfg
        self.backbone = ResNetFPN(cfg.backbone, cfg.norm, cfg.fpn_channels)
        self.embed_head = PyramidHead(cfg.fpn_channels + (2 if cfg.coord_conv else 0), cfg.head_channels,
                                      cfg.embed_dim, cfg.deformable)
        self.decoder = (
            StrideTwoDecoder(cfg.embed_dim, self.backbone.stem_channels, cfg.head_channels) if cfg.output_stride == 2 else None
        )
        self.seed_head = PyramidHead(cfg.fpn_channels, cfg.head_channels, 1, cfg.deformable)
        # Centre logits start at the prior 0.01 (CenterNet's -4.6 bias, a
        # stable start for the focal loss, where most pixels are negatives).
        nn.init.constant_(self.seed_head.fuse.bias, -math.log((1 - 0.01) / 0.01))
        self.classifier = SegmentClassifier(cfg.embed_dim, cfg.classifier_hidden, cfg.num_classes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = images.shape[-2:]
        feats, stem = self.backbone(images, stem=True)
        emb = self.embed_head([with_coords(f) for f in feats] if self.cfg.coord_conv else feats)
        seed = self.seed_head(feats).float()
        size = ((h + 3) // 4, (w + 3) // 4)
        if emb.shape[-2:] != size:
            emb = F.interpolate(emb, size=size, mode="bilinear", align_corners=False)
            seed = F.interpolate(seed, size=size, mode="bilinear", align_corners=False)
        if self.decoder is not None:
            emb = self.decoder(emb, stem)
            size2 = ((h + 1) // 2, (w + 1) // 2)
            if emb.shape[-2:] != size2:
                emb = F.interpolate(emb, size=size2, mode="bilinear", align_corners=False)
        return {"embedding": F.normalize(emb.float(), dim=1), "seed": seed}
