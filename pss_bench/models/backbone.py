"""Backbones and heads any architecture builds on: torchvision ResNet-FPN and UPSNet's pyramid head.

Architecture parts only: no losses, no post-processing, no files.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

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
