"""pss_bench.integrations.detectron2.PanopticEvaluator with inputs shaped as detectron2 produces them.

detectron2 is not installed here: outputs follow its ``PanopticFPN``
(``combine_semantic_and_instance_outputs``: int32 id map, ``segments_info``
with ``id``, ``isthing``, contiguous ``category_id``, ``score`` / ``area``) and
``PanopticDeepLab`` (``(label map, None)``, label = contiguous class *
label_divisor + instance, -1 VOID); inputs follow ``DatasetMapper`` at test
time; metadata follows ``register_coco_panoptic(_separated)`` and
``register_all_cityscapes_panoptic``. A stand-in ``detectron2`` package checks
the ``DatasetEvaluator`` base class and the ``comm`` reduction.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pq_oracle import assert_same_as_oracle, oracle_pq
from prediction_helpers import perturbed_prediction
from pss_bench.errors import GroundTruthFormatError, PredictionFormatError
from pss_bench.evaluation.pq import evaluate_pq
from pss_bench.integrations import detectron2 as d2mod
from pss_bench.io.panoptic import read_id_png


def _separated_meta(categories: list[dict], gt_json: Path, gt_dir: Path) -> dict:
    """``register_coco_panoptic_separated``: thing ids 0..T-1, stuff ids 1..S (0 = "things")."""
    things = [c["id"] for c in categories if c["isthing"]]
    stuff = [c["id"] for c in categories if not c["isthing"]]
    stuff_map = {cid: i + 1 for i, cid in enumerate(stuff)}
    stuff_map[0] = 0
    return {"thing_dataset_id_to_contiguous_id": {cid: i for i, cid in enumerate(things)},
            "stuff_dataset_id_to_contiguous_id": stuff_map, "panoptic_json": str(gt_json),
            "panoptic_root": str(gt_dir), "label_divisor": 1000, "ignore_label": 255}


def _standard_meta(categories: list[dict], gt_json: Path, gt_dir: Path, contiguous=None) -> types.SimpleNamespace:
    """``coco_panoptic_standard`` / Cityscapes: one contiguous id space over things and stuff."""
    contiguous = contiguous or {c["id"]: i for i, c in enumerate(categories)}
    return types.SimpleNamespace(
        thing_dataset_id_to_contiguous_id={c["id"]: contiguous[c["id"]] for c in categories if c["isthing"]},
        stuff_dataset_id_to_contiguous_id={c["id"]: contiguous[c["id"]] for c in categories if not c["isthing"]},
        panoptic_json=str(gt_json), panoptic_root=str(gt_dir), label_divisor=1000, ignore_label=255,
    )


def _inputs(gt_json: Path) -> dict:
    """image id -> what DatasetMapper gives the model at test time (``annotations`` popped)."""
    obj = json.loads(gt_json.read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in obj["images"]}
    out = {}
    for ann in obj["annotations"]:
        h, w = sizes[ann["image_id"]]
        out[ann["image_id"]] = {"file_name": f"/data/images/{Path(ann['file_name']).stem}.jpg",
                                "image_id": ann["image_id"], "height": h, "width": w,
                                "image": torch.zeros((3, 8, 8), dtype=torch.uint8),
                                "pan_seg_file_name": f"/data/panoptic/{ann['file_name']}"}
    return out


def _fpn_outputs(pred_json: Path, pred_dir: Path, categories: list[dict], meta) -> dict:
    """image id -> PanopticFPN-style output: int32 ids from 1, segments_info with contiguous ids and isthing."""
    get = (lambda k: meta[k]) if isinstance(meta, dict) else (lambda k: getattr(meta, k))
    isthing = {c["id"]: bool(c["isthing"]) for c in categories}
    out = {}
    for ann in json.loads(pred_json.read_text())["annotations"]:
        ids = read_id_png(pred_dir / ann["file_name"])
        segs = []
        for s in ann["segments_info"]:
            cid = s["category_id"]
            if isthing[cid]:
                segs.append({"id": s["id"], "isthing": True, "score": 0.9, "category_id":
                             get("thing_dataset_id_to_contiguous_id")[cid], "instance_id": len(segs)})
            else:
                segs.append({"id": s["id"], "isthing": False, "category_id": get("stuff_dataset_id_to_contiguous_id")[cid],
                             "area": int((ids == s["id"]).sum())})
        out[ann["image_id"]] = {"panoptic_seg": (torch.from_numpy(ids.astype(np.int32)), segs),
                                "sem_seg": torch.zeros((2, 4, 4)), "instances": None}
    return out


def _deeplab_outputs(pred_json: Path, pred_dir: Path, meta) -> dict:
    """image id -> PanopticDeepLab-style output: contiguous class * 1000 + instance, -1 = VOID, no segments_info."""
    contiguous = {**meta.thing_dataset_id_to_contiguous_id, **meta.stuff_dataset_id_to_contiguous_id}
    out = {}
    for ann in json.loads(pred_json.read_text())["annotations"]:
        ids = read_id_png(pred_dir / ann["file_name"])
        label = np.full(ids.shape, -1, np.int32)
        count: dict[int, int] = {}
        for s in ann["segments_info"]:
            cls = contiguous[s["category_id"]]
            k = count[cls] = count.get(cls, 0) + 1
            label[ids == s["id"]] = cls * 1000 + k
        out[ann["image_id"]] = {"panoptic_seg": (torch.from_numpy(label), None)}
    return out


def _run(evaluator, inputs: dict, outputs: dict, batch: int = 2) -> dict:
    keys = list(inputs)
    evaluator.reset()
    for i in range(0, len(keys), batch):
        chunk = keys[i:i + batch]
        evaluator.process([inputs[k] for k in chunk], [outputs[k] for k in chunk])
    return evaluator.evaluate()


def _assert_equal_pq(res: dict, pq_result) -> None:
    pq = pq_result.to_dict()
    for suffix, row in (("", "All"), ("_th", "Things"), ("_st", "Stuff")):
        for m in ("pq", "sq", "rq"):
            got = res["panoptic_seg"][f"{m.upper()}{suffix}"]
            if pq[row] is None:
                assert math.isnan(got)
            else:
                assert got == pytest.approx(100 * pq[row][m], abs=1e-9)


@pytest.fixture()
def coco_case(sample_data, tmp_path):
    s = sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"
    gt_json, gt_dir = s / "panoptic_examples.json", s / "panoptic_examples"
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path, 2, "mix")
    categories = json.loads(gt_json.read_text())["categories"]
    return gt_json, gt_dir, pred_json, pred_dir, categories


def test_panoptic_fpn_outputs_equal_pq_on_coco(coco_case):
    gt_json, gt_dir, pred_json, pred_dir, categories = coco_case
    meta = _separated_meta(categories, gt_json, gt_dir)
    outputs = _fpn_outputs(pred_json, pred_dir, categories, meta)
    before = copy.deepcopy([o["panoptic_seg"][1] for o in outputs.values()])
    evaluator = d2mod.PanopticEvaluator(metadata=meta)
    res = _run(evaluator, _inputs(gt_json), outputs)
    pq = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, workers=1)
    _assert_equal_pq(res, pq)
    assert evaluator.result.to_dict() == pq.to_dict()
    assert_same_as_oracle(evaluator.result.to_dict(), oracle_pq(gt_json, gt_dir, pred_json, pred_dir))
    assert [o["panoptic_seg"][1] for o in outputs.values()] == before  # outputs are not modified
    assert 0 < res["panoptic_seg"]["PQ"] < 100
    # evaluate() is repeatable and reset() starts over
    assert evaluator.evaluate() == res
    evaluator.reset()
    assert math.isnan(evaluator.evaluate()["panoptic_seg"]["PQ"])


def test_panoptic_deeplab_outputs_equal_pq_on_cityscapes(cityscapes_train_gt, tmp_path):
    """8 real frames, Cityscapes metadata (label ids -> train ids), label maps with -1 VOID and no segments_info."""
    from cityscapesscripts.helpers.labels import labels as cs_labels

    gt_json, gt_dir = cityscapes_train_gt
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path, 3, "mix")
    categories = json.loads(gt_json.read_text())["categories"]
    train_id = {lab.id: lab.trainId for lab in cs_labels}
    meta = _standard_meta(categories, gt_json, gt_dir, contiguous={c["id"]: train_id[c["id"]] for c in categories})
    evaluator = d2mod.PanopticEvaluator(metadata=meta)
    res = _run(evaluator, _inputs(gt_json), _deeplab_outputs(pred_json, pred_dir, meta), batch=3)
    pq = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, workers=2)
    _assert_equal_pq(res, pq)
    assert evaluator.result.to_dict() == pq.to_dict()


# --------------------------------------------------------------------------- with a stand-in detectron2


@pytest.fixture()
def fake_detectron2(monkeypatch):
    """Minimal ``detectron2`` modules: DatasetEvaluator, MetadataCatalog, comm (world size set by the test)."""
    pkg = types.ModuleType("detectron2")
    evaluation = types.ModuleType("detectron2.evaluation")
    data = types.ModuleType("detectron2.data")
    utils = types.ModuleType("detectron2.utils")
    comm = types.ModuleType("detectron2.utils.comm")

    class DatasetEvaluator:
        def reset(self):
            pass

    class MetadataCatalog:
        registry: dict = {}

        @classmethod
        def get(cls, name):
            return cls.registry[name]

    comm.world = {"size": 1, "others": []}
    comm.get_world_size = lambda: comm.world["size"]
    comm.all_gather = lambda data, group=None: [data, *comm.world["others"]]
    evaluation.DatasetEvaluator = DatasetEvaluator
    data.MetadataCatalog = MetadataCatalog
    utils.comm = comm
    for name, mod in (("detectron2", pkg), ("detectron2.evaluation", evaluation), ("detectron2.data", data),
                      ("detectron2.utils", utils), ("detectron2.utils.comm", comm)):
        monkeypatch.setitem(sys.modules, name, mod)
    d2mod.__dict__.pop("PanopticEvaluator", None)  # the class is built on first use: build it again
    yield types.SimpleNamespace(module=d2mod, DatasetEvaluator=DatasetEvaluator, MetadataCatalog=MetadataCatalog,
                                comm=comm)
    monkeypatch.undo()
    d2mod.__dict__.pop("PanopticEvaluator", None)


def test_is_a_detectron2_dataset_evaluator_and_sums_ranks_with_comm(fake_detectron2, coco_case):
    gt_json, gt_dir, pred_json, pred_dir, categories = coco_case
    meta = _separated_meta(categories, gt_json, gt_dir)
    fake_detectron2.MetadataCatalog.registry["coco_2017_val_panoptic_separated"] = meta
    cls = fake_detectron2.module.PanopticEvaluator
    assert issubclass(cls, fake_detectron2.DatasetEvaluator)
    inputs, outputs = _inputs(gt_json), _fpn_outputs(pred_json, pred_dir, categories, meta)
    (a, b) = list(inputs)
    rank0, rank1 = cls("coco_2017_val_panoptic_separated"), cls("coco_2017_val_panoptic_separated")
    rank0.process([inputs[a]], [outputs[a]])
    rank1.process([inputs[b]], [outputs[b]])
    stats1 = rank1._metric.stats
    fake_detectron2.comm.world.update(size=2, others=[np.concatenate([stats1.to_array().reshape(-1), [1.0]])])
    res = rank0.evaluate()
    pq = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, workers=1)
    _assert_equal_pq(res, pq)
    assert rank0.result.to_dict() == pq.to_dict()


def test_without_detectron2_it_is_a_plain_class():
    with pytest.raises(ImportError):
        import detectron2  # noqa: F401
    cls = d2mod.PanopticEvaluator
    assert [c.__name__ for c in cls.__mro__] == ["PanopticEvaluator", "_PanopticEvaluator", "object"]


def test_dataset_name_without_detectron2_says_what_to_do(monkeypatch):
    """Issue 23 item 13: not a bare ModuleNotFoundError."""
    from pss_bench.errors import PssBenchError

    monkeypatch.setitem(sys.modules, "detectron2", None)  # import fails even where detectron2 is installed
    monkeypatch.setitem(sys.modules, "detectron2.data", None)
    with pytest.raises(PssBenchError, match=r"PanopticEvaluator\('coco_2017_val_panoptic'\): .*"
                                            r"pass metadata=\.\.\. \(or gt_json=\.\.\.\) or install detectron2"):
        d2mod.PanopticEvaluator("coco_2017_val_panoptic")


# --------------------------------------------------------------------------- bad outputs


def test_bad_outputs_name_the_image_and_segment(coco_case):
    gt_json, gt_dir, pred_json, pred_dir, categories = coco_case
    meta = _separated_meta(categories, gt_json, gt_dir)
    inputs, outputs = _inputs(gt_json), _fpn_outputs(pred_json, pred_dir, categories, meta)
    image_id = next(iter(inputs))
    ids, segs = outputs[image_id]["panoptic_seg"]
    evaluator = d2mod.PanopticEvaluator(metadata=meta)

    def run(ids_, segs_, inp=None):
        evaluator.process([inp or inputs[image_id]], [{"panoptic_seg": (ids_, segs_)}])

    bad = [dict(s) for s in segs]
    bad[0]["category_id"] = 500
    with pytest.raises(PredictionFormatError, match=f"image {image_id}, segment {segs[0]['id']}: contiguous thing id 500"):
        run(ids, bad)
    with pytest.raises(PredictionFormatError, match=f"segment {segs[-1]['id']}: in panoptic_seg but not in segments_info"):
        run(ids, segs[:-1])
    with pytest.raises(PredictionFormatError, match="segment 4242: in segments_info but not in panoptic_seg"):
        run(ids, segs + [{"id": 4242, "isthing": True, "category_id": 0}])
    with pytest.raises(PredictionFormatError, match="outputs must be at the input's original size"):
        run(ids[:-2], segs)
    with pytest.raises(GroundTruthFormatError, match="image 'nope' of the inputs is not in the GT JSON"):
        run(ids, segs, dict(inputs[image_id], image_id="nope"))


# --------------------------------------------------------------------------- Context Error


def test_context_error_from_per_pixel_embeddings_equals_the_cli_path(cityscapes_train_gt, tmp_path):
    """outputs["pss_embedding"] (D, h, w) pooled over GT instances: the same CE as embed + context-error."""
    from pss_bench.evaluation.context_error import evaluate_context_error
    from pss_bench.evaluation.embed import embed_features

    gt_json, gt_dir = cityscapes_train_gt
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path, 5, "shift")
    categories = json.loads(gt_json.read_text())["categories"]
    meta = _standard_meta(categories, gt_json, gt_dir)
    inputs, outputs = _inputs(gt_json), _deeplab_outputs(pred_json, pred_dir, meta)
    rng = np.random.default_rng(0)
    (tmp_path / "feats").mkdir()
    for image_id, out in outputs.items():
        feats = rng.standard_normal((6, 32, 64)).astype(np.float32)  # stride 32
        np.save(tmp_path / "feats" / f"{image_id}.npy", feats)
        out["pss_embedding"] = torch.from_numpy(feats)
    evaluator = d2mod.PanopticEvaluator(metadata=meta, context_error_k=5)
    res = _run(evaluator, inputs, outputs, batch=3)
    embed_features(tmp_path / "feats", gt_json, tmp_path / "emb", gt_dir=gt_dir, workers=1)
    ref = evaluate_context_error(tmp_path / "emb", gt_json, gt_dir=gt_dir, k=5, use_cache=False, workers=1)
    _assert_close(evaluator.context_error.to_dict(), ref.to_dict())
    assert res["context_error"]["CE"] == pytest.approx(ref.mean.ce)
    assert res["context_error"]["queries"] == ref.mean.queries > 0
    assert res["panoptic_seg"]["PQ"] == pytest.approx(
        100 * evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, workers=1).all.pq)


def _assert_close(a, b, path="result") -> None:
    """Nested dicts equal, floats within 1e-9 (the two paths sum in another order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def _gloo_worker(rank: int, world: int, port: int, arrays: list, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        summed = d2mod._sum_over_ranks(np.asarray(arrays[rank], dtype=np.float64))
        gathered = d2mod._gather_objects([f"rank{rank}"])
        np.save(Path(out_dir) / f"{rank}.npy", summed)
        (Path(out_dir) / f"{rank}.json").write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torch_distributed_sum_and_gather_without_detectron2(tmp_path):
    """Two gloo ranks: statistics are summed and instance lists gathered with torch.distributed."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    arrays = [[1.0, 2.0, 3.0], [10.0, 20.0, 30.5]]
    mp.spawn(_gloo_worker, args=(2, port, arrays, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        assert np.load(tmp_path / f"{rank}.npy").tolist() == [11.0, 22.0, 33.5]
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == ["rank0", "rank1"]


def test_further_metrics_equal_the_cli_engine(coco_case):
    """metrics="all": the evaluator's Boundary PQ, PQ†, PC and PQ by size equal ``evaluate_pq``'s on the same files."""
    gt_json, gt_dir, pred_json, pred_dir, categories = coco_case
    meta = _separated_meta(categories, gt_json, gt_dir)
    evaluator = d2mod.PanopticEvaluator(metadata=meta, metrics="all")
    res = _run(evaluator, _inputs(gt_json), _fpn_outputs(pred_json, pred_dir, categories, meta))
    want = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, use_cache=False, workers=1,
                       metrics="all")
    _assert_equal_pq(res, want)
    got, exp = evaluator.result.to_dict(), want.to_dict()
    assert set(got) == set(exp)
    for key in ("boundary_pq", "pq_dagger", "pc", "pq_area"):
        assert json.dumps(got[key], sort_keys=True) == json.dumps(exp[key], sort_keys=True), key
    ps = res["panoptic_seg"]
    assert ps["BPQ"] == pytest.approx(100 * exp["boundary_pq"]["All"]["pq"], abs=1e-9)
    assert ps["PQdag_st"] == pytest.approx(100 * exp["pq_dagger"]["Stuff"]["pq"], abs=1e-9)
    assert ps["PC"] == pytest.approx(100 * exp["pc"]["All"]["pc"], abs=1e-9)
    assert set(ps) >= {"PQ_small", "PQ_medium", "PQ_large", "BPQ_th", "BPQ_st", "PQdag", "PQdag_th"}
    from pss_bench.errors import PssBenchError

    with pytest.raises(PssBenchError, match="unknown metric"):
        d2mod.PanopticEvaluator(metadata=meta, metrics="bpq")
