"""The further metrics (Boundary PQ, PQ†, Parsing Covering, PQ by size) in the torchmetrics metric and the detectron2 evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torchmetrics", reason="pip install 'pss-bench[torchmetrics]'")

from pss_bench.errors import PssBenchError  # noqa: E402
from pss_bench.integrations.torchmetrics import RESULT_KEYS, VARIANT_KEYS, PanopticQuality  # noqa: E402
from pss_bench.metrics.pq import PanopticQuality as StreamingPQ  # noqa: E402
from pss_bench.structures import Category  # noqa: E402

THINGS, STUFFS = (1, 3), (2, 4)


def _batch(seed: int, b: int = 2, h: int = 48, w: int = 64, void: bool = True):
    """(B, H, W, 2) preds and target: blocky stuff, a few thing instances, VOID (255) optional."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        cat = np.array(STUFFS)[rng.integers(0, 2, (h // 8 + 1, w // 8 + 1))].repeat(8, 0).repeat(8, 1)[:h, :w]
        inst = np.zeros((h, w), np.int64)
        for k in range(1, 5):
            y, x = rng.integers(0, h - 12), rng.integers(0, w - 12)
            dy, dx = rng.integers(4, 12, 2)
            cat[y:y + dy, x:x + dx] = THINGS[k % 2]
            inst[y:y + dy, x:x + dx] = k
        if void:
            cat[rng.random((h, w)) < 0.03] = 255
        out.append(np.stack([cat, np.where(np.isin(cat, THINGS), inst, 0)], -1))
    target = np.stack([out[0]] * b)
    preds = np.stack([np.roll(out[0], s, axis=1) for s in range(1, b + 1)])
    preds[:, :, : w // 3] = out[1][None, :, : w // 3]
    return torch.from_numpy(preds), torch.from_numpy(target)


def _as_ids(pairs: np.ndarray):
    """An id map and segment list of one (H, W, 2) image (255 = VOID; stuff instances merged)."""
    cat, inst = pairs[..., 0], pairs[..., 1]
    ids = np.where(cat == 255, 0, cat * 1000 + inst)
    segs = [{"id": int(i), "category_id": int(i) // 1000} for i in np.unique(ids) if i]
    return ids, segs


def test_torchmetrics_metric_equals_streaming_metric():
    metric = PanopticQuality(things=set(THINGS), stuffs=set(STUFFS), metrics="all", allow_unknown_preds_category=True)
    cats = [Category(c, str(c), True) for c in THINGS] + [Category(c, str(c), False) for c in STUFFS]
    stream = StreamingPQ(cats, metrics="all")
    for seed in range(2):
        preds, target = _batch(seed)
        metric.update(preds, target)
        for p, t in zip(preds.numpy(), target.numpy()):
            stream.update(*_as_ids(t), *_as_ids(p))
    want = stream.compute()
    got = metric.compute_result()
    _close(got.variants.to_dict(), want.variants.to_dict())  # summed per batch: another float order
    values = metric.compute()
    assert set(values) == set(RESULT_KEYS) | {k for keys in VARIANT_KEYS.values() for k in keys}
    assert float(values["boundary_pq"]) == pytest.approx(want.variants.boundary_pq.pq.all.pq, abs=1e-12)
    assert float(values["pc"]) == pytest.approx(want.variants.pc.pc, abs=1e-12)
    assert float(values["pq_dagger_stuff"]) == pytest.approx(want.variants.pq_dagger.stuff.pq, abs=1e-12)


def _close(a, b, tol=1e-12) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            _close(a[k], b[k], tol)
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=tol)
    else:
        assert a == b


def test_pq_dagger_equals_torchmetrics_modified_pq_without_void():
    from torchmetrics.detection import ModifiedPanopticQuality

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torchmetrics divides areas in the default dtype
    try:
        theirs = ModifiedPanopticQuality(things=set(THINGS), stuffs=set(STUFFS))
        ours = PanopticQuality(things=set(THINGS), stuffs=set(STUFFS), metrics="pq-dagger")
        for seed in range(3):
            preds, target = _batch(10 + seed, void=False)
            theirs.update(preds, target)
            ours.update(preds, target)
        assert float(ours.compute()["pq_dagger"]) == pytest.approx(float(theirs.compute()), abs=1e-12)
    finally:
        torch.set_default_dtype(previous)


def test_boundary_pq_needs_images():
    metric = PanopticQuality(things=set(THINGS), stuffs=set(STUFFS), metrics="boundary-pq")
    pts = torch.zeros((1, 2, 5, 3, 2), dtype=torch.int64)  # three spatial axes (a volume): no 2-D boundary
    pts[..., 0] = 2
    with pytest.raises(PssBenchError, match=r"boundary-pq needs \(B, H, W, 2\)"):
        metric.update(pts, pts)
    plain = PanopticQuality(things=set(THINGS), stuffs=set(STUFFS), metrics="pq-dagger,pc")
    plain.update(pts, pts)  # other metrics take any spatial shape
    assert float(plain.compute()["pc"]) == 1.0
