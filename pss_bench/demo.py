"""The demo job behind ``make demo``: PQ of a perturbed copy of real Cityscapes GT.

Until the reference models land, the "model" is the ground truth shifted by a
few pixels with a band of VOID, which gives realistic, imperfect numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pss_bench.errors import PssBenchError
from pss_bench.io.panoptic import load_panoptic_json, read_id_png
from pss_bench.io.prediction import PredictionWriter


def sample_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, ``$PSS_BENCH_SAMPLE_DATA``, or ``../shared/data``; it must exist."""
    root = Path(explicit or os.environ.get("PSS_BENCH_SAMPLE_DATA") or "../shared/data")
    if not (root / "cityscapes" / "gtFine").is_dir():
        raise PssBenchError(
            f"{root}: sample data not found (expected {root}/cityscapes/gtFine); "
            "set PSS_BENCH_SAMPLE_DATA or pass --data"
        )
    return root


def shifted_prediction(gt_json: Path, gt_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """Writes a prediction directory: each GT map rolled by a random offset, top rows VOID."""
    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    rng = np.random.default_rng(seed)
    with PredictionWriter(out_dir, model="shifted-gt", overwrite=True, gt_json=str(gt_json)) as w:
        for ann in gt.annotations:
            ids = read_id_png(gt.png_path(ann))
            dy, dx = (int(v) for v in rng.integers(-12, 13, size=2))
            shifted = np.roll(ids, (dy, dx), axis=(0, 1))
            shifted[: ids.shape[0] // 40] = 0
            present = set(np.unique(shifted).tolist())
            segs = [
                {"id": int(s), "category_id": int(c)}
                for s, c in zip(ann.segments.ids, ann.segments.category_ids)
                if int(s) in present
            ]
            w.add_panoptic(ann.image_id, ann.file_name, shifted, segs)
        w.commit()
    return out_dir


def run_demo(data: str | os.PathLike | None, out: str | os.PathLike, workers: int | None = None):
    """Builds the GT, the shifted prediction, and returns ``(PQResult, out_dir)``."""
    from pss_bench.data.cityscapes import build_panoptic_gt
    from pss_bench.evaluation.pq import evaluate_pq

    root = sample_data_root(data)
    out = Path(out)
    gt_json, gt_dir = build_panoptic_gt(root / "cityscapes" / "gtFine", "train", out / "gtFine")
    pred_dir = shifted_prediction(gt_json, gt_dir, out / "pred-shifted")
    result = evaluate_pq(pred_dir, gt_json, gt_dir=gt_dir, workers=workers, use_cache=False)
    json.dumps(result.to_dict())  # the JSON form must serialise
    return result, out
