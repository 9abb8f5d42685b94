"""Data plumbing of the reference model: sampler, augmentation, dataset hook."""

from __future__ import annotations

import pytest
import torch

from pss_bench.data.transforms import TrainTransform
from pss_bench.errors import PssBenchError
from pss_bench.models.data import (
    AugmentedItems,
    ResumableBatchSampler,
    build_dataset,
    collate,
    segments_from_item,
)
from pss_bench.structures import Category


def test_sampler_ranks_partition_each_global_batch_and_resume_matches():
    n, b, world = 7, 2, 2
    samplers = [ResumableBatchSampler(n, b, seed=5, rank=r, world=world) for r in range(world)]
    stream = []
    for it in range(7):  # 28 positions = 4 epochs of 7
        for s in samplers:
            stream += s.batch_at(it)
    for e in range(4):
        assert sorted(i for ep, i in stream if ep == e) == list(range(n))
    resumed = ResumableBatchSampler(n, b, seed=5, rank=1, world=world, start_iter=3)
    it = iter(resumed)
    assert next(it) == samplers[1].batch_at(3) and next(it) == samplers[1].batch_at(4)
    with pytest.raises(PssBenchError, match="empty"):
        ResumableBatchSampler(0, 1, 0)


def _item(h=20, w=30):
    pan = torch.zeros(h, w, dtype=torch.long)
    pan[:, : w // 2] = 5
    pan[:, w // 2 :] = 7
    sem = torch.where(pan == 5, torch.tensor(0), torch.tensor(1))
    return {"image": torch.randn(3, h, w), "panoptic": pan, "semantic": sem, "crowd": pan == 7, "image_id": "x"}


def test_train_transform_pads_with_void_and_is_deterministic():
    t = TrainTransform((32, 40), (1.0, 1.0), flip=False)
    out = t(_item(), torch.Generator().manual_seed(0))
    assert out["image"].shape == (3, 32, 40) and out["panoptic"].shape == (32, 40)
    assert (out["panoptic"][20:] == 0).all() and (out["semantic"][20:] == 255).all() and not out["crowd"][20:].any()
    assert (out["image"][:, 20:] == 0).all()
    # Labels stay consistent: crowd exactly where id 7 is.
    assert torch.equal(out["crowd"], out["panoptic"] == 7)
    items = AugmentedItems([_item(40, 60)], TrainTransform((16, 16), (0.5, 1.5), True), seed=3)
    a, b, c = items[(0, 0)], items[(0, 0)], items[(1, 0)]
    assert torch.equal(a["image"], b["image"])
    assert not torch.equal(a["image"], c["image"])
    batch = collate([a, c])
    assert batch["image"].shape == (2, 3, 16, 16) and batch["image_id"] == ["x", "x"]


def test_segments_from_item():
    it = _item()
    cats = [Category(11, "a", False), Category(26, "car", True)]
    segs = segments_from_item(it["panoptic"], it["semantic"], it["crowd"], cats)
    assert segs.ids.tolist() == [5, 7] and segs.category_ids.tolist() == [11, 26] and segs.iscrowd.tolist() == [False, True]


def test_build_dataset_on_synthstreets(tmp_path):
    from pss_bench.data.synthstreets import generate

    root = tmp_path / "s"
    generate(root, train=1, val=1, seed=0, height=64, width=128)
    ds, cats = build_dataset("synthstreets", root, "val")
    assert len(ds) == 1 and len(cats) == 19
    item = ds[0]
    assert item["image"].shape == (3, 64, 128) and item["image"].dtype == torch.float32
    assert item["panoptic"].shape == (64, 128) and item["semantic"].max() <= 255
    with pytest.raises(PssBenchError, match="unknown dataset 'nope'"):
        build_dataset("nope", root, "val")
    with pytest.raises(PssBenchError):
        build_dataset("cityscapes", root, "test")
