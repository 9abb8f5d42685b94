"""A detectron2 ``DatasetEvaluator`` for panoptic quality, in memory.

Drop-in for detectron2's ``COCOPanopticEvaluator``: the same ``process``
inputs (``outputs[i]["panoptic_seg"] = (id map, segments_info)`` with
contiguous category ids, or ``(label map, None)`` for Panoptic-DeepLab-style
outputs) and the same ``evaluate()`` keys, but no PNG is written and no
panopticapi is needed: each image is scored when it is processed
(:class:`pss_bench.metrics.pq.PanopticQuality`), and ``evaluate`` sums the
per-class statistics over ranks (detectron2's ``comm`` when installed,
``torch.distributed`` otherwise). The numbers equal ``pss-bench pq`` on the
same predictions written as COCO panoptic files.

detectron2 is imported only when the class is first used: with detectron2
installed, ``PanopticEvaluator`` subclasses its ``DatasetEvaluator``;
without, it is a plain class with the same methods.

Example::

    from detectron2.evaluation import DatasetEvaluators, inference_on_dataset
    from pss_bench.integrations.detectron2 import PanopticEvaluator

    evaluator = DatasetEvaluators([PanopticEvaluator("coco_2017_val_panoptic")])
    results = inference_on_dataset(model, val_loader, evaluator)
    results["panoptic_seg"]["PQ"]
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections import OrderedDict
from typing import Any, Mapping

import numpy as np

from pss_bench.errors import GroundTruthFormatError, PredictionFormatError, PssBenchError
from pss_bench.io.panoptic import check_png_folder, load_panoptic_json, read_id_png
from pss_bench.metrics.pq import PanopticQuality, PQResult, PQStats, UnknownSegmentError, thread_indexer
from pss_bench.structures import Segments

log = logging.getLogger(__name__)

__all__ = ["PanopticEvaluator", "results_dict", "variant_results_dict"]

_ROWS = (("", "All"), ("_th", "Things"), ("_st", "Stuff"))


def results_dict(result: PQResult) -> dict[str, float]:
    """``COCOPanopticEvaluator``'s keys (``PQ``, ``SQ``, ``RQ``, ``PQ_th``, ..., ``RQ_st``), in percent.

    A row with no class (e.g. no stuff in the data) is NaN, where detectron2
    would fail.
    """
    out: dict[str, float] = {}
    for suffix, name in _ROWS:
        row = result.row(name)
        for m in ("pq", "sq", "rq"):
            out[f"{m.upper()}{suffix}"] = float("nan") if row is None else 100.0 * getattr(row, m)
    return out


def variant_results_dict(result: PQResult) -> dict[str, float]:
    """The further metrics of ``result.variants`` under detectron2-style keys, in percent.

    ``BPQ``/``BPQ_th``/``BPQ_st`` (Boundary PQ), ``PQdag``/``PQdag_th``/``PQdag_st``
    (PQ†), ``PC`` (Parsing Covering), ``PQ_small``/``PQ_medium``/``PQ_large``;
    only for the metrics asked. NaN where a row has no class.
    """
    v = result.variants
    out: dict[str, float] = {}
    if v is None:
        return out

    def pct(x) -> float:
        return float("nan") if x is None else 100.0 * x

    if v.boundary_pq is not None:
        for suffix, name in _ROWS:
            row = v.boundary_pq.pq.row(name)
            out[f"BPQ{suffix}"] = pct(row.pq if row else None)
    if v.pq_dagger is not None:
        for suffix, name in _ROWS:
            row = v.pq_dagger.row(name)
            out[f"PQdag{suffix}"] = pct(row.pq if row else None)
    if v.pc is not None:
        out["PC"] = pct(v.pc.pc)
    if v.pq_area is not None:
        for name, r in v.pq_area.by_name().items():
            out[f"PQ_{name}"] = pct(r.all.pq if r.all else None)
    return out


def _meta_get(meta, name: str, default=None):
    if meta is None:
        return default
    if isinstance(meta, Mapping):
        return meta.get(name, default)
    return getattr(meta, name, default)


def _process_group():
    """``("comm", module)`` with detectron2, ``("torch", torch.distributed)`` in a process group, else ``None``.

    Without detectron2 and without torch loaded there is no process group, so
    torch is not imported here.
    """
    try:
        from detectron2.utils import comm
    except ImportError:
        comm = None
    if comm is not None:
        return ("comm", comm) if comm.get_world_size() > 1 else None
    torch = sys.modules.get("torch")
    dist = torch.distributed if torch is not None else None
    if dist is None or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return "torch", dist


def _sum_over_ranks(values: np.ndarray) -> np.ndarray:
    """Sums a float64 vector over all ranks."""
    group = _process_group()
    if group is None:
        return values
    kind, api = group
    if kind == "comm":
        return np.sum([np.asarray(v, dtype=np.float64) for v in api.all_gather(values)], axis=0)
    torch = sys.modules["torch"]
    t = torch.from_numpy(values.copy())
    if api.get_backend() == "nccl":
        t = t.cuda()
    api.all_reduce(t, op=api.ReduceOp.SUM)
    return t.cpu().numpy()


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _gather_objects(items: list) -> list:
    """Concatenates a list from every rank."""
    group = _process_group()
    if group is None:
        return items
    kind, api = group
    if kind == "comm":
        parts = api.all_gather(items)
    else:
        parts = [None] * api.get_world_size()
        api.all_gather_object(parts, items)
    return [x for part in parts for x in part]


class _PanopticEvaluator:
    """Panoptic quality of detectron2 outputs, exactly as panopticapi (see the module docstring).

    Args:
        dataset_name: a registered detectron2 dataset; its metadata gives
            ``panoptic_json``, ``panoptic_root``, the contiguous id maps and
            ``label_divisor``.
        output_dir: accepted for ``COCOPanopticEvaluator`` compatibility; nothing is written.
        metadata: the metadata itself (a detectron2 ``Metadata`` or a dict),
            instead of ``dataset_name``.
        gt_json, gt_dir: override the metadata's ``panoptic_json`` / ``panoptic_root``.
        context_error_k: also compute the Context Error with this many
            neighbours when outputs carry ``outputs[i][embedding_key]``, a
            ``(D, h, w)`` per-pixel embedding (any stride): it is pooled over
            each GT instance as ``pss-bench embed`` does. ``None``: PQ only.
        embedding_key: the output key of the per-pixel embedding.
        metrics, dilation_ratio, pc_normalize: further metrics besides PQ, as
            :class:`~pss_bench.metrics.pq.PanopticQuality` takes them; their
            keys (:func:`variant_results_dict`) join ``panoptic_seg`` and
            ``self.result.variants`` holds them in full.

    Raises:
        PssBenchError: no ground truth given, or it is malformed.
    """

    def __init__(
        self,
        dataset_name: str | None = None,
        output_dir: str | None = None,
        *,
        metadata: Any = None,
        gt_json: str | None = None,
        gt_dir: str | None = None,
        context_error_k: int | None = None,
        embedding_key: str = "pss_embedding",
        metrics: str | list[str] | None = None,
        dilation_ratio: float = 0.02,
        pc_normalize: bool = True,
    ) -> None:
        self._metric_options = {"metrics": metrics, "dilation_ratio": dilation_ratio, "pc_normalize": pc_normalize}
        PanopticQuality([], **self._metric_options)  # refuses a bad metric name or ratio now, not at reset()
        if metadata is None and dataset_name is not None:
            try:
                from detectron2.data import MetadataCatalog
            except ImportError as exc:
                raise PssBenchError(
                    f"PanopticEvaluator({dataset_name!r}): a dataset name is looked up in detectron2's "
                    f"MetadataCatalog, and detectron2 cannot be imported ({exc}): pass metadata=... "
                    f"(or gt_json=...) or install detectron2"
                ) from None
            metadata = MetadataCatalog.get(dataset_name)
        self._metadata = metadata
        gt_json = gt_json or _meta_get(metadata, "panoptic_json")
        gt_dir = gt_dir or _meta_get(metadata, "panoptic_root")
        if gt_json is None:
            raise PssBenchError("PanopticEvaluator needs the GT: a dataset whose metadata has panoptic_json, or gt_json=")
        self._gt = load_panoptic_json(gt_json, gt_dir, role="gt")
        check_png_folder(self._gt, GroundTruthFormatError)
        self._gt_by_image = {a.image_id: a for a in self._gt.annotations}
        self.categories = tuple(self._gt.categories.values())
        self._thing_to_dataset = {int(v): int(k) for k, v in (_meta_get(metadata, "thing_dataset_id_to_contiguous_id") or {}).items()}
        self._stuff_to_dataset = {int(v): int(k) for k, v in (_meta_get(metadata, "stuff_dataset_id_to_contiguous_id") or {}).items()}
        self._label_divisor = _meta_get(metadata, "label_divisor")
        if context_error_k is not None and context_error_k < 1:
            raise ValueError("context_error_k must be at least 1")
        self._ce_k = context_error_k
        self._embedding_key = embedding_key
        self._image_index = {a.image_id: j for j, a in enumerate(self._gt.annotations)}
        self.result: PQResult | None = None
        self.context_error = None
        self.reset()

    # ------------------------------------------------------------------ DatasetEvaluator

    def reset(self) -> None:
        """Starts a new round: clears the statistics."""
        self._metric = PanopticQuality(self.categories, **self._metric_options)
        self._images = 0
        self._instances: list[dict] = []

    def process(self, inputs, outputs) -> None:
        """Scores each ``(input, output)`` pair.

        Args:
            inputs: dicts with ``image_id`` (as in the GT JSON).
            outputs: dicts with ``panoptic_seg = (ids, segments_info)``: an
                ``(H, W)`` integer tensor and a list of ``{"id", "category_id",
                "isthing"}`` (contiguous ids; without ``isthing`` the id is
                the dataset's), or ``None`` when ``ids`` holds
                ``contiguous_category * label_divisor + instance`` with -1 for VOID.

        Raises:
            PredictionFormatError | GroundTruthFormatError: bad output or GT image.
        """
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            ann = self._gt_by_image.get(image_id)
            if ann is None:
                raise GroundTruthFormatError(f"{self._gt.path}: image {image_id!r} of the inputs is not in the GT JSON")
            panoptic_img, segments_info = out["panoptic_seg"]
            pred_ids, pred_segs = self._prediction(panoptic_img, segments_info, image_id)
            gt_path = self._gt.png_path(ann)
            where = f"{gt_path}: image {image_id!r}"
            gt_ids = read_id_png(gt_path, where=where)
            self._check(gt_ids, ann.segments, pred_ids, pred_segs, where, image_id)
            self._metric.update(gt_ids, ann.segments, pred_ids, pred_segs, image_id=image_id)
            self._images += 1
            if self._ce_k is not None and self._embedding_key in out:
                self._instances.append(self._instance_rows(ann, gt_ids, out[self._embedding_key]))

    def evaluate(self) -> "OrderedDict[str, dict[str, float]]":
        """``{"panoptic_seg": {"PQ", "SQ", "RQ", "PQ_th", ..., "RQ_st"}}`` in percent, on every rank.

        Sums the statistics of all ranks first (a collective call: every rank
        must call it). The full result, per class, is kept in ``self.result``.
        """
        stats = self._metric.stats
        extra = self._metric.variant_stats
        n = len(self.categories)
        parts = [stats.to_array().reshape(-1)]
        if extra is not None:
            parts.append(extra.to_array().reshape(-1))
        packed = np.concatenate(parts + [[float(self._images)]])
        total = _sum_over_ranks(packed)
        images = int(round(total[-1]))
        summed = PQStats.from_array(self.categories, total[: 4 * n].reshape(4, -1))
        self.result = summed.compute()
        if extra is not None:
            v = type(extra).from_array(self.categories, extra.settings, total[4 * n:-1].reshape(-1, n))
            self.result = dataclasses.replace(self.result, variants=v.compute())
        if images < len(self._gt.annotations):
            log.warning("%s: %d of its %d GT images were processed; PQ covers those only",
                        self._gt.path, images, len(self._gt.annotations))
        res = results_dict(self.result)
        res.update(variant_results_dict(self.result))
        log.info("panoptic quality over %d images: PQ %.3f SQ %.3f RQ %.3f", images, res["PQ"], res["SQ"], res["RQ"])
        out = OrderedDict({"panoptic_seg": res})
        if self._ce_k is not None:
            self.context_error = self._context_error(_gather_objects(self._instances))
            mean = self.context_error.mean
            out["context_error"] = {"CE": _nan(mean.ce), "CE_random": _nan(mean.random), "CE_oracle": _nan(mean.oracle),
                                    "CE_score": _nan(mean.score), "queries": float(mean.queries)}
        return out

    # ------------------------------------------------------------------ Context Error

    def _instance_rows(self, ann, gt_ids: np.ndarray, embedding) -> dict:
        """Context descriptors and pooled embeddings of the non-crowd thing instances of one image."""
        from pss_bench.metrics.context_error import image_context_descriptors, pool_features, segment_index_map

        if hasattr(embedding, "detach"):
            embedding = embedding.detach().float().cpu().numpy()
        feats = np.asarray(embedding)
        if feats.ndim != 3 or feats.dtype.kind != "f":
            raise PredictionFormatError(f"image {ann.image_id!r}: {self._embedding_key} must be a (D, h, w) float "
                                        f"map, found {feats.dtype} {feats.shape}")
        d = image_context_descriptors(gt_ids, ann.segments, self.categories)
        means, _ = pool_features(feats, segment_index_map(gt_ids, d.segment_ids), len(d))
        keep = d.areas > 0
        return {"image": self._image_index[ann.image_id], "seg": d.segment_ids[keep], "cat": d.category_ids[keep],
                "area": d.areas[keep], "box": d.boxes[keep], "dist": d.distributions()[keep], "emb": means[keep]}

    def _context_error(self, parts: list[dict]):
        from pss_bench.evaluation.context_error import score_instances
        from pss_bench.evaluation.instances import InstanceSet
        from pss_bench.io.context_labels import find_context_labels, read_context_labels

        parts = sorted((p for p in parts if p["seg"].shape[0]), key=lambda p: p["image"])
        if not parts:
            raise PredictionFormatError(f"context_error_k is set but no output carried {self._embedding_key!r}")
        labels_file = find_context_labels(self._gt.path)
        labels = None
        if labels_file is not None:
            table = read_context_labels(labels_file)
            labels = np.concatenate([
                np.array([table.get(str(self._gt.annotations[p["image"]].image_id), {}).get(int(s))
                          for s in p["seg"]], dtype=object) for p in parts])
        vecs = np.concatenate([p["emb"] for p in parts]).astype(np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
        instances = InstanceSet(
            gt=self._gt,
            image_index=np.concatenate([np.full(p["seg"].shape[0], p["image"], np.int64) for p in parts]),
            segment_ids=np.concatenate([p["seg"] for p in parts]),
            category_ids=np.concatenate([p["cat"] for p in parts]),
            areas=np.concatenate([p["area"] for p in parts]),
            boxes=np.concatenate([p["box"] for p in parts]).reshape(-1, 4),
            distributions=np.concatenate([p["dist"] for p in parts]).reshape(-1, 8, len(self.categories)),
            embeddings=np.ascontiguousarray(vecs),
            labels=labels,
        )
        return score_instances(instances, k=self._ce_k)

    # ------------------------------------------------------------------ helpers

    def _dataset_category(self, contiguous: int, isthing, image_id, sid) -> int:
        if isthing is None:
            return int(contiguous)
        table = self._thing_to_dataset if isthing else self._stuff_to_dataset
        if int(contiguous) not in table:
            kind = "thing" if isthing else "stuff"
            raise PredictionFormatError(
                f"image {image_id!r}, segment {sid}: contiguous {kind} id {contiguous} is not in the metadata's "
                f"{kind}_dataset_id_to_contiguous_id"
            )
        return table[int(contiguous)]

    def _prediction(self, panoptic_img, segments_info, image_id) -> tuple[np.ndarray, Segments]:
        if hasattr(panoptic_img, "detach"):
            panoptic_img = panoptic_img.detach().cpu().numpy()
        ids = np.asarray(panoptic_img)
        if ids.ndim != 2 or ids.dtype.kind not in "ui":
            raise PredictionFormatError(f"image {image_id!r}: panoptic_seg must be an (H, W) integer map, found "
                                        f"{ids.dtype} {ids.shape}")
        if segments_info is None:
            # Panoptic-DeepLab style: label = contiguous category * label_divisor + instance, -1 = VOID.
            if not self._label_divisor:
                raise PssBenchError("outputs without segments_info need the metadata's label_divisor")
            ids = ids.astype(np.int64)
            labels = np.unique(ids)
            labels = labels[labels != -1]
            if labels.size and labels.min() < 0:
                raise PredictionFormatError(f"image {image_id!r}: negative panoptic label {int(labels.min())}")
            things = set(self._thing_to_dataset)
            records = []
            for lab in labels.tolist():
                cls = lab // int(self._label_divisor)
                records.append({"id": lab + 1, "category_id": self._dataset_category(cls, cls in things, image_id, lab + 1)})
            return ids + 1, Segments.from_records(records)
        records = []
        for s in segments_info:
            sid = int(s["id"])
            records.append({"id": sid, "category_id": self._dataset_category(s["category_id"], s.get("isthing"), image_id, sid)})
        return ids, Segments.from_records(records)

    def _check(self, gt_ids, gt_segs: Segments, pred_ids, pred_segs: Segments, where: str, image_id) -> None:
        """What ``pss-bench pq`` refuses and the accumulator does not check."""
        if gt_ids.shape != pred_ids.shape:
            raise PredictionFormatError(
                f"image {image_id!r}: panoptic_seg is {pred_ids.shape[1]}x{pred_ids.shape[0]} (WxH) but the GT "
                f"is {gt_ids.shape[1]}x{gt_ids.shape[0]} (outputs must be at the input's original size)"
            )
        indexer = thread_indexer()
        try:
            gt_dense = indexer(gt_ids, gt_segs.ids, ids_below_2_24=True)
        except UnknownSegmentError as exc:
            raise GroundTruthFormatError(f"{where}, segment {int(exc.unknown_ids[0])}: in the PNG but not in the JSON") from None
        gt_area = np.bincount(gt_dense.reshape(-1), minlength=len(gt_segs) + 1)[1:]
        wrong = np.flatnonzero(gt_area != gt_segs.areas)
        if wrong.size:
            i = int(wrong[0])
            raise GroundTruthFormatError(
                f"{where}, segment {int(gt_segs.ids[i])}: JSON area {int(gt_segs.areas[i])} differs from its "
                f"{int(gt_area[i])} pixels in the PNG"
            )
        if len(pred_segs):
            try:
                pred_dense = indexer(pred_ids, pred_segs.ids)
            except UnknownSegmentError as exc:
                raise PredictionFormatError(
                    f"image {image_id!r}, segment {int(exc.unknown_ids[0])}: in panoptic_seg but not in segments_info"
                ) from None
            area = np.bincount(pred_dense.reshape(-1), minlength=len(pred_segs) + 1)[1:]
            missing = np.flatnonzero(area == 0)
            if missing.size:
                raise PredictionFormatError(
                    f"image {image_id!r}, segment {int(pred_segs.ids[missing[0]])}: in segments_info but not in panoptic_seg"
                )


def _evaluator_class() -> type:
    try:
        from detectron2.evaluation import DatasetEvaluator
    except ImportError:
        return type("PanopticEvaluator", (_PanopticEvaluator,), {"__module__": __name__, "__doc__": _PanopticEvaluator.__doc__})
    return type("PanopticEvaluator", (_PanopticEvaluator, DatasetEvaluator),
                {"__module__": __name__, "__doc__": _PanopticEvaluator.__doc__})


def __getattr__(name: str):
    # Built on first use, so that importing this module never imports detectron2.
    if name == "PanopticEvaluator":
        cls = _evaluator_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
