"""Oracle experiments: the PSS post-processing fed with ideal inputs reaches the output-stride cap.

A trained model cannot beat the cap (the GT taken down to the output stride
and back); a sound post-processing, given what a perfect network would output
(one random unit vector per GT segment plus noise, the GT class of the
nearest vector, GT centres as seeds), must come close to it. The shipped
``synthstreets_tiny`` inference settings are checked on unseen SynthStreets
frames and on the real Cityscapes frames at 1/4 size, at stride 2 (the
shipped model) and stride 4 (the paper's).
"""

from __future__ import annotations

import pytest
import torch

from pss_bench.models.config import load_config
from pss_bench.models.data import build_dataset
from pss_bench.reference_model.oracle import downsized_labels, ideal_input_pq, ideal_outputs, stride_cap

RATIO = 0.95  # ideal inputs must reach this share of the cap (PQ and PQ-Th)


@pytest.fixture(scope="module")
def synth_val(tmp_path_factory):
    from pss_bench.data.synthstreets import generate

    root = tmp_path_factory.mktemp("oracle") / "synth"
    generate(root, train=0, val=12, seed=3)
    ds, cats = build_dataset("synthstreets", root, "val")
    return [ds[i] for i in range(len(ds))], cats


@pytest.fixture(scope="module")
def cityscapes_quarter(sample_data, cityscapes_train_gt, tmp_path_factory):
    gt_json, gt_dir = cityscapes_train_gt
    root = tmp_path_factory.mktemp("cs_oracle")
    (root / "gtFine").mkdir()
    (root / "leftImg8bit").symlink_to(sample_data / "cityscapes" / "leftImg8bit", target_is_directory=True)
    (root / "gtFine" / gt_json.name).symlink_to(gt_json)
    (root / "gtFine" / gt_dir.name).symlink_to(gt_dir, target_is_directory=True)
    ds, cats = build_dataset("cityscapes", root, "train")
    return downsized_labels(ds, 4), cats


def _check(items, cats, stride, record):
    cfg = load_config("synthstreets_tiny", [f"model.output_stride={stride}"])
    cap = stride_cap(items, cats, stride)
    ideal = ideal_input_pq(items, cats, cfg)
    record(f"stride {stride}: cap PQ {100 * cap.all.pq:.1f} / PQ-Th {100 * cap.things.pq:.1f}; "
           f"ideal inputs PQ {100 * ideal.all.pq:.1f} / PQ-Th {100 * ideal.things.pq:.1f}")
    assert ideal.all.pq >= RATIO * cap.all.pq
    assert ideal.things.pq >= RATIO * cap.things.pq
    return cap, ideal


@pytest.mark.parametrize("stride", [2, 4])
def test_ideal_inputs_reach_the_stride_cap_on_synthstreets(synth_val, stride, record_property):
    items, cats = synth_val
    cap, _ = _check(items, cats, stride, lambda s: record_property("oracle", s))
    if stride == 4:  # the stride costs things most: a stride-4 map loses small instances
        cap2 = stride_cap(items, cats, 2)
        assert cap.things.pq < cap2.things.pq


@pytest.mark.parametrize("stride", [2, 4])
def test_ideal_inputs_reach_the_stride_cap_on_the_cityscapes_frames(cityscapes_quarter, stride, record_property):
    items, cats = cityscapes_quarter
    cap, _ = _check(items, cats, stride, lambda s: record_property("oracle", s))
    if stride == 2:
        assert cap.things.pq >= 0.70  # the overfit test's scale: a cap of at least 70


def test_a_broken_post_processing_is_caught(synth_val):
    # The oracle must be able to fail: merging every thing segment of a class
    # (T_P = -1) joins instances, and the score drops far below the cap.
    items, cats = synth_val
    cfg = load_config("synthstreets_tiny", ["inference.merge_threshold=-1", "inference.seeded=false"])
    cap = stride_cap(items, cats, cfg.model.output_stride)
    assert ideal_input_pq(items, cats, cfg).things.pq < 0.8 * cap.things.pq


def test_ideal_outputs_shapes(synth_val):
    items, cats = synth_val
    emb, classifier, seed = ideal_outputs(items[0], cats, 2, embed_dim=8, generator=torch.Generator().manual_seed(0))
    h, w = items[0]["panoptic"].shape
    assert emb.shape == (8, h // 2, w // 2) and seed.shape == (h // 4, w // 4)
    assert torch.allclose(emb.norm(dim=0), torch.ones(h // 2, w // 2), atol=1e-5)
    assert float(seed.max()) == 1.0
    assert classifier(emb[:, :3, 0].t()).shape == (3, len(cats))
