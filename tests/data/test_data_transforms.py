"""Training transforms and the torch Dataset wrapper: alignment, determinism, DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pss_bench.data.sample import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, PanopticSample
from pss_bench.data.torch_dataset import PanopticTorchDataset, sample_to_item
from pss_bench.data.transforms import TrainTransform
from pss_bench.structures import Category, Segments

CATS = {7: Category(7, "road", False), 24: Category(24, "person", True), 26: Category(26, "car", True)}
# segment id -> category id, crowd flag, colour
SEGS = {7: (7, False, (200, 40, 40)), 24001: (24, False, (40, 200, 40)), 24: (24, True, (40, 40, 200)),
        26000: (26, False, (230, 230, 20))}


class _ToyReader:
    """Blocks of segments whose image colour encodes the segment: alignment is checkable."""

    categories = CATS

    def __init__(self, n=6, h=60, w=90):
        self.samples = []
        rng = np.random.default_rng(0)
        for k in range(n):
            pan = np.full((h, w), 7, np.int64)
            y, x = rng.integers(0, h - 20), rng.integers(0, w - 30)
            pan[y:y + 20, x:x + 12] = 24001
            pan[5:15, w - 25:w - 5] = 24
            pan[h - 12:h - 2, 3:40] = 26000
            pan[:, :2] = 0  # VOID strip
            img = np.zeros((h, w, 3), np.uint8)
            for sid, (_, _, col) in SEGS.items():
                img[pan == sid] = col
            ids = np.array(sorted(SEGS), np.int64)
            segs = Segments(ids, np.array([SEGS[i][0] for i in ids]), np.array([SEGS[i][1] for i in ids]))
            self.samples.append(PanopticSample(img, pan, segs, f"toy_{k}", CATS))
        self.image_ids = [s.image_id for s in self.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def _denorm(t):
    x = t.numpy().transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return np.round(x * 255).astype(np.int64)


def _augment(sample, crop, scale_range=(0.5, 2.0), flip=True, seed=0):
    """The one augmentation on a sample: ``(image (H, W, 3) int64 colours, panoptic (H, W))``."""
    item = TrainTransform(crop, scale_range, flip)(sample_to_item(sample), torch.Generator().manual_seed(seed))
    return _denorm(item["image"]), item["panoptic"].numpy()


def test_items_follow_the_contract():
    ds = PanopticTorchDataset(_ToyReader(), transform=TrainTransform((48, 64), (0.5, 2.0), True), seed=1)
    it = ds[0]
    assert set(it) == {"image", "panoptic", "semantic", "crowd", "image_id"}
    assert it["image"].dtype == torch.float32 and it["image"].shape == (3, 48, 64)
    assert it["panoptic"].dtype == torch.int64 and it["panoptic"].shape == (48, 64)
    assert it["semantic"].dtype == torch.int64 and it["crowd"].dtype == torch.bool
    assert it["image_id"] == "toy_0"
    pan, sem, crowd = it["panoptic"].numpy(), it["semantic"].numpy(), it["crowd"].numpy()
    pos = {cid: i for i, cid in enumerate(CATS)}
    for sid, (cid, isc, _) in SEGS.items():
        assert (sem[pan == sid] == pos[cid]).all()
        assert (crowd[pan == sid] == isc).all()
    assert (sem[pan == 0] == IGNORE_INDEX).all() and not crowd[pan == 0].any()


@pytest.mark.parametrize("seed", range(8))
def test_transforms_keep_image_and_labels_aligned(seed):
    s = _ToyReader()[seed % 6]
    img, pan = _augment(s, (50, 70), (0.6, 1.8), True, seed)
    assert img.shape[:2] == pan.shape == (50, 70)
    # Away from label boundaries (3x3 window of one id), each pixel shows its segment's colour.
    p = np.pad(pan, 1, mode="edge")
    same = np.ones(pan.shape, bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            same &= p[dy:dy + pan.shape[0], dx:dx + pan.shape[1]] == pan
    same[[0, -1]] = False  # the crop's border: its neighbours were cut away
    same[:, [0, -1]] = False
    checked = 0
    for sid, (_, _, col) in SEGS.items():
        m = same & (pan == sid)
        checked += m.sum()
        assert np.abs(img[m].astype(int) - col).max(initial=0) <= 2, sid
    assert checked > 0.3 * pan.size


def test_flip_and_padding_happen_and_padding_is_void():
    s = _ToyReader()[0]
    img, pan = _augment(s, (200, 300), (1.0, 1.0), False)
    assert pan.shape == (200, 300) and (pan == 0).sum() >= 200 * 300 - 60 * 90
    flips = set()
    for seed in range(12):
        _, p = _augment(s, s.panoptic.shape, (1.0, 1.0), True, seed)  # the whole frame: no crop
        flips.add(bool((p[:, -2:] == 0).all()))
    assert flips == {True, False}


def test_dataset_is_deterministic_under_a_seed_and_varies_with_epoch_and_seed():
    r = _ToyReader()
    cfg = TrainTransform((40, 40), (0.5, 2.0), True)
    a = PanopticTorchDataset(r, transform=cfg, seed=5)
    b = PanopticTorchDataset(r, transform=cfg, seed=5)
    for i in range(len(r)):
        for k in ("image", "panoptic"):
            assert torch.equal(a[i][k], b[i][k])
    c = PanopticTorchDataset(r, transform=cfg, seed=6)
    assert any(not torch.equal(a[i]["panoptic"], c[i]["panoptic"]) for i in range(len(r)))
    before = [a[i]["panoptic"] for i in range(len(r))]
    a.set_epoch(1)
    assert any(not torch.equal(a[i]["panoptic"], before[i]) for i in range(len(r)))


def test_several_dataloader_workers_give_the_same_batches():
    ds = PanopticTorchDataset(_ToyReader(), transform=TrainTransform((32, 48), (0.5, 2.0), True), seed=3)
    # DataLoader workers run torch with one thread; the bilinear image resize
    # differs in the last bit with two (2.4e-7; the labels are equal), so the
    # reference is made with one thread as well
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = [ds[i] for i in range(len(ds))]
    finally:
        torch.set_num_threads(threads)
    batches = list(DataLoader(ds, batch_size=2, num_workers=2, shuffle=False))
    assert [i for b in batches for i in b["image_id"]] == [r["image_id"] for r in ref]
    for b, (r0, r1) in zip(batches, zip(ref[::2], ref[1::2])):
        for k in ("image", "panoptic", "semantic", "crowd"):
            assert torch.equal(b[k], torch.stack([r0[k], r1[k]]))


def test_eval_items_are_the_full_image():
    r = _ToyReader()
    it = PanopticTorchDataset(r, train=False)[2]
    assert torch.equal(it["panoptic"], torch.from_numpy(r[2].panoptic))
    assert np.abs(_denorm(it["image"]) - r[2].image).max() <= 1


def test_real_cityscapes_frame_through_the_wrapper(sample_data, cityscapes_val_gt):
    from pss_bench.data.cityscapes import CityscapesPanoptic

    r = CityscapesPanoptic(sample_data / "cityscapes", "val", gt_json=cityscapes_val_gt[0])
    ds = PanopticTorchDataset(r, transform=TrainTransform((64, 128), (0.5, 2.0), True), seed=0)
    it = ds[0]
    sem, pan = it["semantic"].numpy(), it["panoptic"].numpy()
    # semantic is the position of the segment's label id in the cityscapesscripts table
    cats = list(r.categories)
    for sid in set(np.unique(pan).tolist()) - {0}:
        cid = sid if sid < 1000 else sid // 1000
        assert set(np.unique(sem[pan == sid]).tolist()) == {cats.index(cid)}
