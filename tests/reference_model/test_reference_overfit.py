"""The reference model overfits the 8 real Cityscapes frames at 1/4 size (slow; run by CI).

At 1/4 size (256x512) and the shipped output stride 2, the GT taken to the
output stride and back keeps PQ-Th at about 71 on these frames (the cap,
recomputed here). At the old 1/8 size and stride 4 the cap was 29.7, so no
model could show that it separates instances.

The inference override ``inference.seed_nms_tolerance=0.03`` is part of the
setup: on these small frames two adjacent persons (or a rider on a bicycle)
have their centres in neighbouring stride-4 cells, where both saturate (0.95
next to 0.97), and exact peaks keep one of them. The shipped config's
``inference.thing_score_threshold`` 0.5 drops unsure thing segments. Five
thing classes are present, two with a single instance, so one instance moves
PQ-Th by up to 20 points.

Measured 2026-11-30 (``bench/reference_overfit.py --seed S``, the setup
below, 1,000 iterations), PQ-Th as a share of the cap (71.0):

- ``train.seed`` 0 / 1 / 2 on 1 thread: 87.5% / 83.7% / 87.4% (PQ-Th 62.1 /
  59.4 / 62.1); without the score threshold 81.1% / 83.7% / 87.4%; without
  the tolerance either 81.0% / 83.6% / 68.7% (seed 2 merges its bicycles).
- seed 0 on 2 threads, as CI runs it (``--threads 2`` reproduced CI's
  numbers exactly; 1 and 2 threads give different losses from iteration 4):
  84.1% (PQ-Th 59.7); 68.7% without the score threshold (a 0.38 truck and a
  0.48 rider, each a small false positive, cost 32.8 and 21.6 points of
  their classes' PQ).

Measured 2026-12-07 after the step-seeded draws (issue 26) and the pair-based
SegSort loss (same loss to 1e-5, so a new draw of the same distribution):
seed 0 on 2 threads, as CI, ``bench/reference_overfit.py --seed 0 --threads
2``: 80.3% (PQ-Th 57.1, PQ 71.1, PQ-St 77.4; person 19.4, rider 64.6, car
51.1, truck 98.2, bicycle 51.9), 3,093 s on a machine shared with other
jobs. A pass, by 0.3 points: the spread between draws (80-88%) is as wide as
the margin, which is why issue 20 asks for tests that do not rest on this one.

The shipped config keeps the tolerance at 0: with it the bundled checkpoint
loses 5.6 PQ-Th on SynthStreets val (20.9 -> 15.3, docs/benchmarks.md).
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
#: The shipped inference settings this test was measured with (the numbers above). On 2026-12-07 the shipped
#: config's merge, seed and score thresholds were re-chosen for SynthStreets models trained 1,500 iterations on
#: whole frames (val of seed 2, issue 20), and on 2026-12-08 the neighbour smoothing added; an overfit model of
#: 8 real frames is another regime, and a re-run with the new ones costs 52 min of CI, so the test keeps these
#: until it is re-measured.
MEASURED_INFERENCE = ("inference.merge_threshold=0.6", "inference.seed_threshold=0.3", "inference.thing_score_threshold=0.5",
                      "inference.smooth_iterations=0")
ITERATIONS = 1000
MIN_CAP = 0.70  # the issue asks for a scale whose cap is at least 70
RATIO = 0.80  # of the cap, PQ-Th on the training frames (issue 14; measured 0.84 with 2 threads, see above)


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
        "train.val_every=0", "inference.seed_nms_tolerance=0.03", *MEASURED_INFERENCE, *overrides,
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
