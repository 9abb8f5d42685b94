"""The PSS network: ResNet-FPN, embedding and seeding heads, segment classifier.

``forward`` maps images to per-pixel embeddings and a centre heatmap at stride
4; the segment classifier is applied to prototypes by the loss and by the
post-processing (``pss_bench.reference_model.postprocess``), never here.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from pss_bench.reference_model.config import ModelConfig

_BACKBONES = {
    "resnet18": (64, 512),
    "resnet34": (64, 512),
    "resnet50": (256, 2048),
    "resnet101": (256, 2048),
    "resnet_tiny": (32, 256),
}

# resnet_tiny: the ResNet-10 layout (one torchvision BasicBlock per stage) at
# half width (32-256 channels): 1.2M parameters, so that a CPU-trained model
# ships in a few MB. Not an ImageNet architecture: no pretrained weights.
_TINY_WIDTHS = (32, 64, 128, 256)


def _tiny_resnet(norm_layer):
    import torchvision
    from torchvision.models.resnet import BasicBlock

    class TinyResNet(torchvision.models.resnet.ResNet):
        def __init__(self) -> None:
            nn.Module.__init__(self)
            # The attributes torchvision's ResNet._make_layer reads.
            self._norm_layer, self.inplanes, self.dilation, self.groups, self.base_width = norm_layer, _TINY_WIDTHS[0], 1, 1, 64
            self.conv1 = nn.Conv2d(3, _TINY_WIDTHS[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = norm_layer(_TINY_WIDTHS[0])
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(BasicBlock, _TINY_WIDTHS[0], 1)
            self.layer2 = self._make_layer(BasicBlock, _TINY_WIDTHS[1], 1, stride=2)
            self.layer3 = self._make_layer(BasicBlock, _TINY_WIDTHS[2], 1, stride=2)
            self.layer4 = self._make_layer(BasicBlock, _TINY_WIDTHS[3], 1, stride=2)

    return TinyResNet()


def _norm_layer(kind: str):
    from torchvision.ops import FrozenBatchNorm2d

    if kind == "frozen_bn":
        return FrozenBatchNorm2d
    if kind == "bn":
        return nn.BatchNorm2d
    if kind == "gn":
        return lambda c: nn.GroupNorm(32, c)
    raise ValueError(f"unknown norm {kind!r} (frozen_bn, bn, gn)")


class ResNetFPN(nn.Module):
    """torchvision ResNet with a torchvision FPN on C2-C5, returning P2-P5.

    Output: list of 4 tensors ``(B, fpn_channels, H/s, W/s)`` for s = 4, 8, 16, 32;
    with ``stem=True`` also the stem's stride-2 activation ``(B, C1, H/2, W/2)``
    (:attr:`stem_channels`).
    """

    def __init__(self, backbone: str, norm: str, fpn_channels: int) -> None:
        super().__init__()
        import torchvision
        from torchvision.models._utils import IntermediateLayerGetter
        from torchvision.ops import FeaturePyramidNetwork

        if backbone not in _BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r} (known: {sorted(_BACKBONES)})")
        if backbone == "resnet_tiny":
            resnet = _tiny_resnet(_norm_layer(norm))
        else:
            resnet = getattr(torchvision.models, backbone)(weights=None, norm_layer=_norm_layer(norm))
        self.body = IntermediateLayerGetter(
            resnet, return_layers={"relu": "c1", "layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}
        )
        self.stem_channels = resnet.conv1.out_channels
        c2, c5 = _BACKBONES[backbone]
        in_channels = [c2, c2 * 2, c2 * 4, c5] if c2 == 256 else [c2, c2 * 2, c2 * 4, c2 * 8]
        self.fpn = FeaturePyramidNetwork(in_channels, fpn_channels)

    def forward(self, x: torch.Tensor, stem: bool = False):
        feats = self.body(x)
        out = self.fpn(OrderedDict((k, feats[k]) for k in ("c2", "c3", "c4", "c5")))
        levels = [out[k] for k in ("c2", "c3", "c4", "c5")]
        return (levels, feats["c1"]) if stem else levels


class DeformBlock(nn.Module):
    """3x3 deformable conv (offsets from a plain 3x3 conv, zero-initialised) + GroupNorm + ReLU."""

    def __init__(self, cin: int, cout: int, deformable: bool) -> None:
        super().__init__()
        from torchvision.ops import DeformConv2d

        self.deformable = deformable
        if deformable:
            self.offset = nn.Conv2d(cin, 18, 3, padding=1)
            nn.init.zeros_(self.offset.weight)
            nn.init.zeros_(self.offset.bias)
            self.conv = DeformConv2d(cin, cout, 3, padding=1, bias=False)
        else:
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(min(32, cout), cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deformable:
            # A NaN offset makes the deformable kernel compute integer positions
            # from NaN (an illegal memory access on CUDA) before any loss can be
            # checked; zero them so the trainer's guard reports the NaN instead.
            offset = torch.nan_to_num(self.offset(x), nan=0.0)
            # torchvision's deform_conv2d has no bf16 kernel; run it in fp32.
            with torch.autocast(x.device.type, enabled=False):
                y = self.conv(x.float(), offset.float())
        else:
            y = self.conv(x)
        return F.relu(self.norm(y))


class PyramidHead(nn.Module):
    """UPSNet's semantic-head shape: shared deformable convs on every FPN level,
    upsampled to stride 4, concatenated, fused by a 1x1 conv.

    Output: ``(B, out_channels, H/4, W/4)``.
    """

    def __init__(self, fpn_channels: int, head_channels: int, out_channels: int, deformable: bool) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            DeformBlock(fpn_channels, head_channels, deformable),
            DeformBlock(head_channels, head_channels, deformable),
            DeformBlock(head_channels, head_channels, deformable),
        )
        self.fuse = nn.Conv2d(4 * head_channels, out_channels, 1)

    def features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The concatenated stride-4 maps before the fusion conv: ``(B, 4 * head_channels, H/4, W/4)``
        (UPSNet's ``fcn_feat``)."""
        size = feats[0].shape[-2:]
        ups = []
        for f in feats:
            y = self.convs(f)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            ups.append(y)
        return torch.cat(ups, dim=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.fuse(self.features(feats))


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
        self.embed_head = PyramidHead(cfg.fpn_channels, cfg.head_channels, cfg.embed_dim, cfg.deformable)
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
        emb = self.embed_head(feats)
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
