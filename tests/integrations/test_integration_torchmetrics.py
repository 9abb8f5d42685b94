"""pss_bench.integrations.torchmetrics.PanopticQuality: panopticapi's numbers in torchmetrics' convention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torchmetrics", reason="pip install 'pss-bench[torchmetrics]'")

from pq_oracle import assert_same_as_oracle, oracle_pq, write_dataset  # noqa: E402
from prediction_helpers import perturbed_prediction  # noqa: E402
from torchmetrics.detection import PanopticQuality as TorchmetricsPQ  # noqa: E402

from pss_bench.convert.labels import panoptic_to_semantic_instance, semantic_instance_to_panoptic  # noqa: E402
from pss_bench.errors import PredictionFormatError, PssBenchError  # noqa: E402
from pss_bench.evaluation.pq import evaluate_pq  # noqa: E402
from pss_bench.integrations.torchmetrics import RESULT_KEYS, PanopticQuality  # noqa: E402
from pss_bench.io.panoptic import read_id_png  # noqa: E402

VOID = 255


def _pairs(json_path: Path, png_dir: Path, thing_ids) -> dict:
    """image id -> ``(H, W, 2)`` int64 tensor of (category, instance); crowd things get instance 0."""
    obj = json.loads(Path(json_path).read_text())
    out = {}
    for ann in obj["annotations"]:
        ids = read_id_png(Path(png_dir) / ann["file_name"])
        sem, inst = panoptic_to_semantic_instance(ids, ann["segments_info"], thing_ids=thing_ids, void_label=VOID)
        out[ann["image_id"]] = torch.from_numpy(np.stack([sem, inst], axis=-1))
    return out


def _write_pred(root: Path, preds: dict, thing_ids) -> tuple[Path, Path]:
    """COCO panoptic files of (category, instance) tensors, one segment per distinct pair."""
    images = []
    for image_id, t in preds.items():
        a = t.numpy()
        ids, segs = semantic_instance_to_panoptic(a[..., 0], a[..., 1], thing_ids=thing_ids, void_label=VOID,
                                                  crowd_instance=None)
        images.append((image_id, ids, [{"id": s["id"], "category_id": s["category_id"]} for s in segs]))
    return write_dataset(root, "pred_pairs", images, None, with_area=False)


def _check_same(metric: PanopticQuality, expected) -> None:
    got = metric.compute_result()
    assert_same_as_oracle(got.to_dict(), expected)
    values = metric.compute()
    assert set(values) == set(RESULT_KEYS)
    for key, row in (("", "All"), ("_things", "Things"), ("_stuff", "Stuff")):
        for m in ("pq", "sq", "rq"):
            ref = expected[row]
            assert float(values[m + key]) == pytest.approx(float(ref[m]), abs=1e-12) if ref else np.isnan(values[m + key])


def _real_data_case(gt_json, gt_dir, tmp_path, mode, seed):
    """``(metric inputs, oracle result)`` of a perturbed prediction of real GT."""
    cats = json.loads(Path(gt_json).read_text())["categories"]
    things = [c["id"] for c in cats if c["isthing"]]
    stuffs = [c["id"] for c in cats if not c["isthing"]]
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path, seed, mode)
    gts = _pairs(gt_json, gt_dir, things)
    preds = _pairs(pred_json, pred_dir, things)
    # Torchmetrics' convention merges a class's stuff segments: score exactly those predictions.
    pj, pd = _write_pred(tmp_path, preds, things)
    return things, stuffs, gts, preds, oracle_pq(gt_json, gt_dir, pj, pd), (pj, pd)


# --------------------------------------------------------------------------- equal to torchmetrics where both agree

_TM_PREDS = torch.tensor([[[[6, 0], [0, 0], [6, 0], [6, 0]],
                           [[0, 0], [0, 0], [6, 0], [0, 1]],
                           [[0, 0], [0, 0], [6, 0], [0, 1]],
                           [[0, 0], [7, 0], [6, 0], [1, 0]],
                           [[0, 0], [7, 0], [7, 0], [7, 0]]]])
_TM_TARGET = torch.tensor([[[[6, 0], [0, 1], [6, 0], [0, 1]],
                            [[0, 1], [0, 1], [6, 0], [0, 1]],
                            [[0, 1], [0, 1], [6, 0], [1, 0]],
                            [[0, 1], [7, 0], [1, 0], [1, 0]],
                            [[0, 1], [7, 0], [7, 0], [7, 0]]]])


def test_torchmetrics_docstring_example_agrees():
    """No VOID, no crowd: both metrics give torchmetrics' documented 0.5463 (and the same per class)."""
    ours = PanopticQuality(things={0, 1}, stuffs={6, 7})
    ours.update(_TM_PREDS, _TM_TARGET)
    theirs = TorchmetricsPQ(things={0, 1}, stuffs={6, 7}, return_sq_and_rq=True, return_per_class=True)
    per_class = theirs(_TM_PREDS, _TM_TARGET)  # (C, 3): things sorted, then stuff
    values = ours.compute()
    assert float(values["pq"]) == pytest.approx(0.5462962962962963)
    result = ours.compute_result()
    for k, cid in enumerate([0, 1, 6, 7]):
        r = result.per_class[cid]
        assert (r.pq, r.sq, r.rq) == pytest.approx(per_class[k].tolist())


def test_per_class_output_equals_torchmetrics_return_per_class():
    """Issue 23 item 14: per-class PQ / SQ / RQ in torchmetrics' order, always the same shape."""
    ours = PanopticQuality(things={0, 1}, stuffs={6, 7, 9})  # 9 never appears: NaN, still a row
    ours.update(_TM_PREDS, _TM_TARGET)
    theirs = TorchmetricsPQ(things={0, 1}, stuffs={6, 7}, return_sq_and_rq=True, return_per_class=True)
    want = theirs(_TM_PREDS, _TM_TARGET)
    got = ours.compute_per_class()
    assert got["category_id"].tolist() == [0, 1, 6, 7, 9]
    for j, m in enumerate(("pq", "sq", "rq")):
        assert got[m].shape == (5,) and got[m].dtype == torch.float64
        assert got[m][:4].tolist() == pytest.approx(want[:, j].tolist())
        assert torch.isnan(got[m][4])


def test_unbatched_image_is_refused_not_scored_as_rows():
    """Issue 23 item 14: (H, W, 2) was scored as H one-row images (0.8036 instead of 0.775 in the issue)."""
    metric = PanopticQuality(things={0, 1}, stuffs={6, 7})
    with pytest.raises(PssBenchError, match=r"for one \(H, W, 2\) image pass preds\[None\], target\[None\]"):
        metric.update(_TM_PREDS[0], _TM_TARGET[0])
    assert int(metric.tp.sum() + metric.fp.sum() + metric.fn.sum()) == 0  # nothing was added
    metric.update(_TM_PREDS[0][None], _TM_TARGET[0][None])
    assert float(metric.compute()["pq"]) == pytest.approx(0.5462962962962963)


def test_void_and_crowd_example_differs_from_torchmetrics(tmp_path):
    """The docs example: torchmetrics' own metric says PQ 1.0, panopticapi (and ours) 0.0.

    Category 1 is a thing, 2 a stuff; instance 0 of a thing is a crowd region.
    Left: the GT person (1, 1) covers 4 pixels, the prediction finds 2 of them
    and predicts VOID (255) on the other 2 -> panopticapi's IoU is 2/4 (no
    match: a FN and a FP); torchmetrics drops the predicted-VOID pixels from
    the union -> IoU 1. Right: a crowd of persons (1, 0) that the prediction
    covers with person (1, 5) -> panopticapi forgives the FP, torchmetrics
    (which has no crowd) matches it as a TP.
    """
    target = torch.tensor([[[[1, 1], [1, 1], [2, 0], [1, 0], [1, 0]],
                            [[1, 1], [1, 1], [2, 0], [1, 0], [1, 0]]]])
    preds = torch.tensor([[[[1, 1], [255, 0], [2, 0], [1, 5], [1, 5]],
                           [[1, 1], [255, 0], [2, 0], [1, 5], [1, 5]]]])
    ours = PanopticQuality(things={1}, stuffs={2}, allow_unknown_preds_category=True, crowd_instance_id=0)
    ours.update(preds, target)
    theirs = TorchmetricsPQ(things={1}, stuffs={2}, allow_unknown_preds_category=True, return_per_class=True)
    assert theirs(preds, target).tolist() == [[1.0, 1.0]]          # person, stuff: both perfect
    values = ours.compute()
    assert float(values["pq_things"]) == 0.0
    assert float(values["pq"]) == pytest.approx(0.5)               # person 0, stuff 1
    r = ours.compute_result().per_class[1]
    assert (r.tp, r.fp, r.fn) == (0, 1, 1)                         # crowd: no FP, no FN
    # the official evaluator on the same data written as COCO panoptic files
    t = target[0].numpy()
    gt_ids, gt_segs = semantic_instance_to_panoptic(t[..., 0], t[..., 1], thing_ids=[1], void_label=VOID)
    cats = [{"id": 1, "name": "person", "isthing": 1}, {"id": 2, "name": "road", "isthing": 0}]
    gj, gd = write_dataset(tmp_path, "gt", [(1, gt_ids, gt_segs)], cats, with_area=True)
    pj, pd = _write_pred(tmp_path, {1: preds[0]}, [1])
    _check_same(ours, oracle_pq(gj, gd, pj, pd))


# --------------------------------------------------------------------------- real data


def test_coco_samples_equal_pq(sample_data, tmp_path):
    """The two COCO panoptic val images (crowd persons), perturbed: equal to cityscapesscripts and pss-bench pq."""
    s = sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"
    gt_json, gt_dir = s / "panoptic_examples.json", s / "panoptic_examples"
    things, stuffs, gts, preds, oracle, (pj, pd) = _real_data_case(gt_json, gt_dir, tmp_path, "mix", 2)
    metric = PanopticQuality(things, stuffs, crowd_instance_id=0, allow_unknown_preds_category=True)
    for image_id in gts:  # different sizes: one image per update
        metric.update(preds[image_id][None], gts[image_id][None])
    _check_same(metric, oracle)
    pq = evaluate_pq(pj, gt_json, gt_dir=gt_dir, pred_dir=pd, use_cache=False, workers=1)
    assert metric.compute_result().to_dict() == pq.to_dict()


@pytest.mark.parametrize("mode,seed", [pytest.param("shift", 1, marks=pytest.mark.slow), ("mix", 3)])
def test_cityscapes_frames_in_batches_equal_pq(cityscapes_train_gt, tmp_path, mode, seed):
    """8 real 2048x1024 frames (cityscapesscripts GT, crowd from instance ids < 1000) in batches of 3."""
    gt_json, gt_dir = cityscapes_train_gt
    things, stuffs, gts, preds, oracle, _ = _real_data_case(gt_json, gt_dir, tmp_path, mode, seed)
    metric = PanopticQuality(things, stuffs, crowd_instance_id=0, allow_unknown_preds_category=True)
    keys = list(gts)
    for i in range(0, len(keys), 3):
        chunk = keys[i:i + 3]
        metric.update(torch.stack([preds[k] for k in chunk]), torch.stack([gts[k] for k in chunk]))
    _check_same(metric, oracle)


def test_merged_states_equal_one_metric(sample_data, tmp_path):
    """Two 'ranks' merged with torchmetrics' merge_state (the sum reduction) equal one metric."""
    s = sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"
    things, stuffs, gts, preds, oracle, _ = _real_data_case(s / "panoptic_examples.json", s / "panoptic_examples",
                                                            tmp_path, "shift", 4)
    ranks = [PanopticQuality(things, stuffs, crowd_instance_id=0, allow_unknown_preds_category=True) for _ in range(2)]
    for rank, image_id in zip(ranks, gts):
        rank.update(preds[image_id][None], gts[image_id][None])
    for name in ("iou", "tp", "fp", "fn"):
        assert ranks[0]._reductions[name] is not None  # dist_reduce_fx="sum"
    ranks[0].merge_state(ranks[1])
    _check_same(ranks[0], oracle)


def test_forward_returns_the_batch_and_accumulates():
    metric = PanopticQuality(things={0, 1}, stuffs={6, 7})
    batch = metric(_TM_PREDS, _TM_TARGET)
    assert float(batch["pq"]) == pytest.approx(0.5462962962962963)
    metric(_TM_TARGET, _TM_TARGET)  # a perfect batch
    assert int(metric.compute_result().per_class[0].tp) == 1 + 1  # one TP per batch
    metric.reset()
    assert np.isnan(float(metric.compute()["pq"]))


def test_no_host_copy_of_full_maps(monkeypatch):
    """update() copies only small tensors to the host (the histogram runs on the maps' device)."""
    h, w = 64, 96
    rng = np.random.default_rng(0)
    target = torch.from_numpy(np.stack([rng.choice([0, 1, 6], (2, h, w)), rng.integers(0, 3, (2, h, w))], -1))
    preds = target.roll(3, dims=2)
    copied = []
    orig_cpu, orig_numpy = torch.Tensor.cpu, torch.Tensor.numpy

    def spy_cpu(self, *a, **k):
        copied.append(self.numel())
        return orig_cpu(self, *a, **k)

    def spy_numpy(self, *a, **k):
        copied.append(self.numel())
        return orig_numpy(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "cpu", spy_cpu)
    monkeypatch.setattr(torch.Tensor, "numpy", spy_numpy)
    metric = PanopticQuality(things={0, 1}, stuffs={6})
    metric.update(preds, target)
    assert copied and max(copied) < h * w // 10


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(1)
    target = torch.from_numpy(np.stack([rng.choice([0, 1, 6, 255], (2, 50, 70)), rng.integers(0, 4, (2, 50, 70))], -1))
    preds = target.roll(5, dims=1)
    cpu = PanopticQuality(things={0, 1}, stuffs={6}, crowd_instance_id=0)
    cpu.update(preds, target)
    gpu = PanopticQuality(things={0, 1}, stuffs={6}, crowd_instance_id=0, allow_unknown_preds_category=True).cuda()
    gpu.update(preds.cuda(), target.cuda())
    assert gpu.compute_result().to_dict() == cpu.compute_result().to_dict()


# --------------------------------------------------------------------------- bad input


def test_bad_inputs():
    metric = PanopticQuality(things={1}, stuffs={2})
    good = torch.ones((1, 3, 3, 2), dtype=torch.int64)
    with pytest.raises(PredictionFormatError, match=r"preds\[0\]: category ids \[9\] are neither things nor stuffs"):
        bad = good.clone()
        bad[0, 0, 0, 0] = 9
        metric.update(bad, good)
    with pytest.raises(PssBenchError, match="differs from target shape"):
        metric.update(good[:, :2], good)
    with pytest.raises(PssBenchError, match=r"expected \(B, \*spatial, 2\)"):
        metric.update(good[..., :1], good[..., :1])
    with pytest.raises(TypeError, match="integer ids"):
        metric.update(good.float(), good.float())
    with pytest.raises(PredictionFormatError, match="instance ids must lie"):
        bad = good.clone()
        bad[0, 0, 0, 1] = -3
        metric.update(bad, good)
    with pytest.raises(ValueError, match="share categories"):
        PanopticQuality(things={1}, stuffs={1})
    # unknown target categories are VOID, as in torchmetrics
    metric.update(good, torch.full_like(good, 7))
    assert int(metric.compute_result().per_class[1].fp) == 0  # the prediction lies on GT VOID
