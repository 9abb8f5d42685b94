"""UPSNet's official outputs (pans_unified/, results_list.pkl) made from a prediction, for the adapter tests."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from pss_bench.baselines.upsnet.adapter import cityscapes_category_map, upsnet_png_name
from pss_bench.io.panoptic import id2rgb, read_id_png


def perturbed(gt, seed):
    """Per GT image: (ids, segments) of a plausible prediction, in label ids."""
    rng = np.random.default_rng(seed)
    out = []
    for ann in gt.annotations:
        ids = read_id_png(gt.png_path(ann)).astype(np.int64)
        ids = np.roll(ids, (int(rng.integers(-9, 9)), int(rng.integers(-9, 9))), axis=(0, 1))
        crowd = {int(s) for s, c in zip(ann.segments.ids, ann.segments.iscrowd) if c}
        for s in crowd:  # UPSNet predicts no crowd segments
            ids[ids == s] = 0
        present = set(np.unique(ids).tolist())
        segs = [{"id": int(s), "category_id": int(c)} for s, c in zip(ann.segments.ids, ann.segments.category_ids)
                if int(s) in present and int(s) not in crowd]
        out.append((ann.image_id, ids, segs))
    return out


def write_official(results: Path, gt_json: Path, preds, with_2ch=True, with_pan=True, with_pkl=True, order=None):
    """Writes UPSNet's pans_unified/{pan_2ch,pan,pred.json} and results_list.pkl."""
    label_to_train = {v: k for k, v in cityscapes_category_map().items()}
    images = json.loads(gt_json.read_text())["images"]
    by_id = {p[0]: p for p in preds}
    unified = results / "pans_unified"
    entries, panos = [], []
    for im in images:
        image_id, ids, segs = by_id[im["id"]]
        name = upsnet_png_name(im["file_name"])
        sem = np.full(ids.shape, 255, np.uint8)
        inst = np.zeros(ids.shape, np.uint8)
        internal_ids = np.zeros(ids.shape, np.int64)
        info = []
        k_inst = 0
        for s in segs:
            m = ids == s["id"]
            t = label_to_train[s["category_id"]]
            sem[m] = t
            if s["id"] >= 1000:  # thing instance
                k_inst += 1
                inst[m] = k_inst
            new_id = 1 + len(info) * 37  # UPSNet's own ids: anything but the GT's
            internal_ids[m] = new_id
            info.append({"id": new_id, "category_id": t})
        if with_2ch:
            (unified / "pan_2ch").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.stack([sem, inst, np.zeros_like(sem)], -1)).save(unified / "pan_2ch" / name)
        if with_pan:
            (unified / "pan").mkdir(parents=True, exist_ok=True)
            Image.fromarray(id2rgb(internal_ids)).save(unified / "pan" / name)
        entries.append({"segments_info": info})
        panos.append(internal_ids.astype(np.uint8))
    if order is not None:
        entries = [entries[i] for i in order]
        panos = [panos[i] for i in order]
    if with_pan:
        (unified / "pred.json").write_text(json.dumps({"annotations": entries}))
    if with_pkl:
        with open(results / "results_list.pkl", "wb") as f:
            pickle.dump({"all_boxes": [[np.zeros((0, 5), np.float32)]], "all_masks": [[[]]],
                         "all_ssegs": panos, "all_panos": panos, "all_pano_cls_inds": [np.arange(3)] * len(panos)},
                        f, protocol=2)
