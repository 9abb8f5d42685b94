"""Context Error does not depend on the scale of the embeddings (no overflow / underflow in the norm)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pss_bench.evaluation.context_error import evaluate_context_error
from pss_bench.io.panoptic import load_panoptic_json
from pss_bench.io.prediction import PredictionWriter
from pss_bench.metrics.context_error import image_context_descriptors


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from pss_bench.data.synthstreets import generate

    root = tmp_path_factory.mktemp("scale")
    generate(root / "s", train=0, val=4, seed=5, height=128, width=256)
    gt_json = root / "s" / "gtFine" / "cityscapes_panoptic_val.json"
    gt = load_panoptic_json(gt_json, role="gt")
    cats = list(gt.categories.values())
    rng = np.random.default_rng(0)
    per_image = {}
    from pss_bench.io.panoptic import read_id_png

    for ann in gt.annotations:
        d = image_context_descriptors(read_id_png(gt.png_path(ann)), ann.segments, cats)
        per_image[ann.image_id] = (d.segment_ids, rng.normal(size=(len(d.segment_ids), 16)).astype(np.float32))
    return root, gt_json, per_image


def _ce(root, gt_json, per_image, scale, name):
    out = root / name
    with PredictionWriter(out, name, overwrite=True) as w:
        for image_id, (seg, emb) in per_image.items():
            w.add_embeddings(image_id, seg, (emb * np.float32(scale)).astype(np.float32))
        w.commit()
    res = evaluate_context_error(out, gt_json, k=3, workers=1, use_cache=False).to_dict()
    return json.dumps(res, sort_keys=True, default=str)


@pytest.mark.parametrize("scale", [2.0**66, 2.0**-83])
def test_power_of_two_scales_give_identical_results(synth, scale):
    root, gt_json, per_image = synth
    assert _ce(root, gt_json, per_image, scale, "scaled") == _ce(root, gt_json, per_image, 1.0, "plain")


@pytest.mark.parametrize("scale", [1e20, 1e-25])
def test_extreme_scales_give_the_same_context_error(synth, scale):
    root, gt_json, per_image = synth
    a = json.loads(_ce(root, gt_json, per_image, scale, "scaled"))
    b = json.loads(_ce(root, gt_json, per_image, 1.0, "plain"))
    assert a["mean"]["ce"] == pytest.approx(b["mean"]["ce"], abs=1e-6)


def test_l2_normalise_is_scale_free():
    from pss_bench.evaluation.instances import l2_normalise

    v = np.array([[3.0, 4.0], [0.0, 0.0], [1e-10, 0.0]], np.float32)
    for s in (1.0, 1e20, 1e-25, 2.0**100):
        got = l2_normalise(v * np.float32(s))
        assert np.allclose(got, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], atol=1e-7), s
