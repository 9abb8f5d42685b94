"""The reference model overfits the 8 real Cityscapes frames at 1/4 size (slow; run by CI).

At 1/4 size (256x512) and the shipped output stride 2, the GT taken to the
output stride and back keeps PQ-Th at about 71 on these frames (the cap,
recomputed here). At the old 1/8 size and stride 4 the cap was 29.7, so no
model could show that it separates instances.

Measured 2026-11-30 (1 thread, 7,814 s on a shared machine), the shipped
config with its balanced losses (`loss.pixel_balance` and
`loss.classifier_balance` 1): PQ 71.7, PQ-Th 57.0 = 80% of the cap (71.0),
PQ-St 78.4 after 1,000 iterations (250: 22.5, 500: 43.2, 750: 51.6). Without
them (the config before): PQ-Th 44.7 = 63%. Five thing classes are present,
two with a single instance, so one instance moves PQ-Th by up to 20 points
(the 750-iteration value lost 33 points of truck PQ to one split truck); the
bar below sits under the measured 80% by that kind of swing and above what
the unbalanced losses reach, so that a regression to them fails.

The spread across seeds is wide (2026-11-30, the same setup with
``train.seed`` 1 and 2 and 1,500 iterations, 1 thread each, 6,190 s): PQ-Th
61.4 (86% of the cap) and 50.6 (71%). The low run lost its bicycles (PQ 18.5
against 55.5) and persons (21.1 against 31.0) to merging: with fewer merges
(merge threshold 0.7 instead of the shipped 0.6) the same model gets 45.9
and 44.0 and PQ-Th 61.5, but seed 0's model then splits its one truck
(PQ-Th 57.0 -> 48.0). So 80% is reached on some seeds and not others, and
the bar stays where a regression shows.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from pss_bench.models.config import load_config
from pss_bench.models.data import build_dataset
from pss_bench.reference_model.oracle import stride_cap
from pss_bench.models.checkpoint import load_checkpoint
from pss_bench.models.train import FINAL_NAME, evaluate, train

SCALE = 4
ITERATIONS = 1000
MIN_CAP = 0.70  # the issue asks for a scale whose cap is at least 70
RATIO = 0.66  # of the cap, for PQ-Th on the training frames (measured 0.80; the unbalanced losses: 0.63)


class Downsized(torch.utils.data.Dataset):
    """Training items at 1/SCALE size: bilinear image, labels sampled at the cells' centres."""

    def __init__(self, base) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        it = self.base[i]
        h, w = it["panoptic"].shape
        size = (h // SCALE, w // SCALE)
        img = F.interpolate(it["image"][None], size=size, mode="bilinear", align_corners=False)[0]
        rows = (torch.arange(size[0]) * SCALE + SCALE // 2).clamp(max=h - 1)
        cols = (torch.arange(size[1]) * SCALE + SCALE // 2).clamp(max=w - 1)
        lab = {k: it[k][rows[:, None], cols[None, :]] for k in ("panoptic", "semantic", "crowd")}
        return {"image": img, **lab, "image_id": it["image_id"]}


def overfit_setup(sample_data, gt_json, gt_dir, root, *overrides: str):
    """``(items, categories, cfg)``: the 8 frames at 1/SCALE size, decoded once, and the test's config.

    ``root`` is a new folder for the Cityscapes layout (symlinks to the sample
    images and to the GT ``gt_json`` / ``gt_dir``); ``overrides`` come last
    (``bench/reference_overfit.py`` sets the seed and the schedule with them).
    """
    (root / "gtFine").mkdir(parents=True)
    (root / "leftImg8bit").symlink_to(sample_data / "cityscapes" / "leftImg8bit", target_is_directory=True)
    (root / "gtFine" / gt_json.name).symlink_to(gt_json)
    (root / "gtFine" / gt_dir.name).symlink_to(gt_dir, target_is_directory=True)
    base, categories = build_dataset("cityscapes", root, "train")
    items = Downsized(base)
    cached = [items[i] for i in range(len(items))]  # 8 items: decode and resize once
    h, w = cached[0]["panoptic"].shape
    cfg = load_config("synthstreets_tiny", [
        "data.dataset=cityscapes", f"data.crop_size=[{h},{w}]", "data.scale_range=[1.0,1.0]", "data.flip=false",
        f"train.iterations={ITERATIONS}", f"train.checkpoint_every={ITERATIONS}", "train.log_every=50",
        "train.val_every=0", *overrides,
    ])
    return cached, categories, cfg


@pytest.mark.slow
def test_overfits_the_real_cityscapes_frames(sample_data, cityscapes_train_gt, tmp_path, record_property):
    gt_json, gt_dir = cityscapes_train_gt
    cached, categories, cfg = overfit_setup(sample_data, gt_json, gt_dir, tmp_path / "cs")
    cap = stride_cap(cached, categories, cfg.model.output_stride)
    assert cap.things.pq >= MIN_CAP, cap.things

    train(cfg, tmp_path / "run", train_dataset=cached, categories=categories)
    net, cfg, cats, _ = load_checkpoint(tmp_path / "run" / FINAL_NAME)
    result = evaluate(net, cached, cats, cfg, torch.device("cpu"))
    record_property("overfit", f"cap PQ-Th {100 * cap.things.pq:.1f}; trained PQ {100 * result.all.pq:.1f}, "
                               f"PQ-Th {100 * result.things.pq:.1f}, PQ-St {100 * result.stuff.pq:.1f}")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss_total"] < log[0]["loss_total"]
    assert result.things is not None and result.things.pq >= RATIO * cap.things.pq, (cap.things, result.things)
