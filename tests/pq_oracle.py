"""cityscapesscripts' PQ evaluator, called function by function, as the test oracle.

cityscapesscripts' ``evalPanopticSemanticLabeling`` is panopticapi's
``evaluation.py`` copied. We call its own ``pq_compute_single_core`` and
``PQStat.pq_average`` (no process pool, stdout swallowed) and only add what
``evaluatePanoptic`` does around them: pairing annotations by image id.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs_eval


def oracle_pq(gt_json: Path, gt_dir: Path, pred_json: Path, pred_dir: Path) -> dict:
    """Returns ``{"All"|"Things"|"Stuff": {...} or None, "per_class": {cat_id: {...}}, "stat": PQStat}``."""
    gt = json.loads(Path(gt_json).read_text())
    pred = json.loads(Path(pred_json).read_text())
    categories = {el["id"]: el for el in gt["categories"]}
    pred_anns = {el["image_id"]: el for el in pred["annotations"]}
    pairs = [(g, pred_anns[g["image_id"]]) for g in gt["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        stat = cs_eval.pq_compute_single_core(0, pairs, str(gt_dir), str(pred_dir), categories)
    out: dict = {"stat": stat}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        try:
            row, per_class = stat.pq_average(categories, isthing=isthing)
        except ZeroDivisionError:  # the official code crashes on an empty row
            row, per_class = None, None
        out[name] = row
        if name == "All" and per_class is not None:
            out["per_class"] = per_class
    return out


def assert_same_as_oracle(ours: dict, oracle: dict, tol: float = 1e-9) -> None:
    """``ours`` is ``PQResult.to_dict()``."""
    for name in ("All", "Things", "Stuff"):
        if oracle[name] is None:
            assert ours[name] is None, name
            continue
        assert ours[name] is not None, name
        assert ours[name]["n"] == oracle[name]["n"], name
        for m in ("pq", "sq", "rq"):
            assert abs(ours[name][m] - float(oracle[name][m])) <= tol, (name, m, ours[name][m], oracle[name][m])
    stat = oracle["stat"]
    for cid_str, r in ours["per_class"].items():
        cid = int(cid_str)
        o = stat.pq_per_cat[cid]
        assert (r["tp"], r["fp"], r["fn"]) == (o.tp, o.fp, o.fn), (cid, r, vars(o))
        assert abs(r["iou"] - o.iou) <= tol * max(1, o.tp)
        if "per_class" in oracle:
            for m in ("pq", "sq", "rq"):
                assert abs(r[m] - float(oracle["per_class"][cid][m])) <= tol, (cid, m)


def write_dataset(root: Path, name: str, images: list[tuple], categories: list[dict] | None, with_area: bool) -> tuple[Path, Path]:
    """Writes ``root/name.json`` and ``root/name/*.png``.

    Args:
        images: ``(image_id, ids (H, W) int, segments_info list)`` tuples.
    """
    from pss_bench.io.panoptic import id2rgb

    png_dir = root / name
    png_dir.mkdir(parents=True, exist_ok=True)
    anns = []
    for image_id, ids, segs in images:
        fn = f"{image_id}.png"
        Image.fromarray(id2rgb(np.asarray(ids))).save(png_dir / fn)
        segs = [dict(s) for s in segs]
        if with_area:
            for s in segs:
                s.setdefault("area", int((np.asarray(ids) == s["id"]).sum()))
                s.setdefault("iscrowd", 0)
        anns.append({"image_id": image_id, "file_name": fn, "segments_info": segs})
    obj = {"annotations": anns}
    if categories is not None:
        obj["categories"] = categories
        obj["images"] = [{"id": i, "file_name": f"{i}.png", "height": int(np.asarray(m).shape[0]),
                          "width": int(np.asarray(m).shape[1])} for i, m, _ in images]
    path = root / f"{name}.json"
    path.write_text(json.dumps(obj))
    return path, png_dir
