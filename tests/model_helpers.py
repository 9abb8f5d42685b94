"""A toy training set and a tiny reference-model config, shared by the training, guard, registry and baseline tests."""

from __future__ import annotations

import torch

from pss_bench.models.config import load_config
from pss_bench.structures import Category

CATS = [Category(7, "road", False), Category(21, "vegetation", False), Category(24, "person", True), Category(26, "car", True)]


def toy_items(n, h=48, w=96, seed=0):
    """Hand-made training items: two stuff bands and three boxes of thing classes."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        pan = torch.zeros(h, w, dtype=torch.long)
        sem = torch.full((h, w), 255)
        pan[: h // 2], sem[: h // 2] = 21000, 1
        pan[h // 2 :], sem[h // 2 :] = 7000, 0
        img = torch.zeros(3, h, w)
        img[1, : h // 2] = 1.0
        img[0, h // 2 :] = -1.0
        for k in range(3):
            y = int(torch.randint(0, h - 12, (1,), generator=g))
            x = int(torch.randint(0, w - 16, (1,), generator=g))
            c = 2 + k % 2
            pan[y : y + 12, x : x + 16] = (24 if c == 2 else 26) * 1000 + k + 1
            sem[y : y + 12, x : x + 16] = c
            img[:, y : y + 12, x : x + 16] = torch.randn(3, 1, 1, generator=g)
        pan[:2], sem[:2] = 0, 255
        crowd = torch.zeros(h, w, dtype=torch.bool)
        items.append({"image": img + 0.1 * torch.randn(3, h, w, generator=g), "panoptic": pan, "semantic": sem,
                      "crowd": crowd, "image_id": f"toy_{i}"})
    return items


def tiny_cfg(*extra):
    return load_config("synthstreets_tiny", [
        "model.fpn_channels=16", "model.head_channels=16", "model.embed_dim=8", "model.classifier_hidden=16",
        "data.crop_size=[32,64]", "data.batch_size=2", "kmeans.grid=[2,4]", "inference.grid=[2,4]",
        "train.iterations=6", "train.checkpoint_every=3", "train.log_every=1", "train.val_every=0",
        "train.warmup_iterations=2", "loss.memory_iterations=1", "loss.small_instance_area=300", *extra,
    ])


# The UPSNet-style baseline at toy size (the baseline's tests, resume and DDP tests).
UPSNET_SMALL = ["model.arch=upsnet", "model.fpn_channels=16", "model.head_channels=16", "upsnet.box_head_dim=32",
                "upsnet.mask_head_channels=8", "upsnet.stuff_area_limit=16", "data.crop_size=[48,96]", "data.batch_size=2"]
