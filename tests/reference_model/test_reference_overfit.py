"""The reference model overfits the 8 real Cityscapes frames at 1/4 size (slow; run by CI).

At 1/4 size (256x512) and the shipped output stride 2, the GT taken to the
output stride and back keeps PQ-Th at about 71 on these frames (the cap,
recomputed here). At the old 1/8 size and stride 4 the cap was 29.7, so no
model could show that it separates instances.

Inference uses the shipped ``synthstreets_tiny`` settings (since 2026-12-08;
before, the test pinned the settings it had been measured with and a seed
peak tolerance of 0.03). Five thing classes are present, two with a single
instance, so one instance moves PQ-Th by up to 20 points.

Measured 2026-12-08 (``bench/reference_overfit.py --seed 0 --threads 2``, as
CI runs it; 1,000 iterations in 774 s on a quiet machine), PQ-Th as a share
of the cap (71.0):

- the shipped inference (merge 0.7, seed 0.5, score 0.8, neighbour
  smoothing 6 rounds, no seed tolerance): **85.9%** (PQ-Th 61.0, PQ 72.1,
  PQ-St 77.2; person 33.0, rider 64.6, car 57.2, truck 98.2, bicycle 51.9);
- the same with the seed tolerance 0.03: 85.0%;
- the settings pinned until then (merge 0.6, seed 0.3, score 0.5, no
  smoothing, tolerance 0.03): 80.3% (PQ-Th 57.1), the number measured on
  2026-12-07 to the digit: the run is reproducible on 2 threads.

Earlier (2026-11-30, before the step-seeded draws and the pair-based loss,
the pinned settings): seeds 0 / 1 / 2 on 1 thread 87.5% / 83.7% / 87.4%;
seed 0 on 2 threads 84.1%. The spread between draws (80-88%) is why issue 20
asked for fast tests that do not rest on this one
(``test_reference_loss_targets.py``).
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
RATIO = 0.80  # of the cap, PQ-Th on the training frames (issue 14; measured 0.859 with 2 threads, see above)


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
    images and to the GT ``gt_json`` / ``gt_dir``). The config is the shipped
    ``synthstreets_tiny`` at these frames' size, with the near-tie seed peaks
    of the module docstring; ``overrides`` come last
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
