"""``compare --metrics``: the further metrics per model, each with bootstrap intervals and paired p-values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prediction_helpers import perturbed_prediction
from pss_bench.cli import main
from pss_bench.evaluation.compare import compare_models
from pss_bench.io.panoptic import load_panoptic_json, read_id_png
from pss_bench.io.prediction import PredictionWriter
from pss_bench.metrics.bootstrap import BootstrapSettings
from pss_bench.metrics.variants import variant_image_stats


def _pred_dir(out, gt_json, src_json, src_dir):
    """A prediction directory (manifest, panoptic.json + PNGs) holding the panoptic files of ``src``."""
    src = load_panoptic_json(src_json, src_dir, role="prediction")
    with PredictionWriter(out, out.name, gt_json=str(gt_json)) as w:
        for ann in src.annotations:
            segs = [{"id": int(i), "category_id": int(c)} for i, c in zip(ann.segments.ids, ann.segments.category_ids)]
            w.add_panoptic(ann.image_id, f"{ann.image_id}.png", read_id_png(src.png_path(ann)), segs)
        w.commit()
    return out


@pytest.fixture()
def two_models(sample_data, tmp_path):
    s = sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"
    gt_json, gt_dir = s / "panoptic_examples.json", s / "panoptic_examples"
    pj, pd = perturbed_prediction(gt_json, gt_dir, tmp_path / "raw", 4, "shift")
    good = _pred_dir(tmp_path / "good", gt_json, gt_json, gt_dir)
    bad = _pred_dir(tmp_path / "bad", gt_json, pj, pd)
    return gt_json, gt_dir, good, bad


def test_each_metric_has_intervals_and_paired_differences(two_models):
    gt_json, gt_dir, good, bad = two_models
    settings = BootstrapSettings(200, 0.9, 3)
    res = compare_models([good, bad], gt_json, gt_dir=gt_dir, bootstrap=settings, metrics="all", workers=1)
    variants = res.bootstrap.variants
    assert list(variants) == ["boundary_pq", "pq_dagger", "pc", "pq_area/small", "pq_area/medium", "pq_area/large"]
    for m, model in enumerate(res.models):
        v = model.pq.variants
        point = {"boundary_pq": v.boundary_pq.pq.all.pq, "pq_dagger": v.pq_dagger.all.pq, "pc": v.pc.pc,
                 "pq_area/small": v.pq_area.small.all and v.pq_area.small.all.pq,
                 "pq_area/medium": v.pq_area.medium.all and v.pq_area.medium.all.pq,
                 "pq_area/large": v.pq_area.large.all and v.pq_area.large.all.pq}
        for key, b in variants.items():
            iv = b.models[m].rows["All"]["pq"]
            assert iv.estimate == pytest.approx(point[key], abs=1e-12), key
            if iv.low is not None:
                assert iv.low <= iv.high
    assert res.models[0].pq.variants.boundary_pq.pq.all.pq == 1.0
    for key, b in variants.items():
        d = b.differences[1].rows["All"]["pq"]
        est0, est1 = b.models[0].rows["All"]["pq"].estimate, b.models[1].rows["All"]["pq"].estimate
        assert d.estimate == pytest.approx(est1 - est0, abs=1e-12)
        assert 0 < d.p_value <= 1
    # the bad model's shifted boundaries are worse than the perfect one's, in every resample
    assert variants["boundary_pq"].differences[1].rows["All"]["pq"].high < 0


def test_pc_per_image_sums_give_its_value(two_models):
    """PC's per-image sums (what the bootstrap resamples), summed over the images, give the class ratios and PC."""
    gt_json, gt_dir, good, bad = two_models
    res = compare_models([bad], gt_json, gt_dir=gt_dir, metrics="pc", workers=1)
    pq = res.models[0].pq
    st = variant_image_stats(pq.variant_images, pq.images.image_ids)["pc"]
    assert st.iou.shape == (2, len(st.categories))
    have = st.tp.sum(0) > 0
    assert np.mean(st.iou.sum(0)[have] / st.tp.sum(0)[have]) == pytest.approx(pq.variants.pc.pc, abs=1e-12)


def test_cli_json_and_table(two_models, capsys):
    gt_json, gt_dir, good, bad = two_models
    args = ["compare", str(good), str(bad), "--gt", str(gt_json), "--gt-dir", str(gt_dir), "--workers", "1",
            "--metrics", "boundary-pq,pc", "--bootstrap", "50"]
    assert main([*args, "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["bootstrap"]["variants"]) == {"boundary_pq", "pc"}
    assert out["bootstrap"]["variants"]["pc"]["names"] == ["good", "bad"]
    assert "boundary_pq" in out["models"][0]["pq"] and "pq_dagger" not in out["models"][0]["pq"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "further metrics" in text and "Boundary PQ" in text and "Parsing Covering" in text


def test_parsing_coverings_areas_are_not_read_as_segment_counts(two_models):
    """PC's statistics carry GT areas where PQ's carry segment counts: no few-segment flags come from them."""
    gt_json, gt_dir, good, bad = two_models
    res = compare_models([good, bad], gt_json, gt_dir=gt_dir, bootstrap=BootstrapSettings(50, 0.9, 3),
                         metrics="pc,boundary-pq", workers=1)
    pc, bpq = res.bootstrap.variants["pc"], res.bootstrap.variants["boundary_pq"]
    assert all(m.few_segments == {} and m.gt_segments == {} for m in pc.models)
    assert bpq.models[0].gt_segments  # Boundary PQ counts segments as PQ does
