"""The GT instances of a prediction directory: context descriptors (cached on disk) and embeddings.

:func:`load_instances` reads a GT and a prediction directory's embeddings into
an :class:`InstanceSet`: every GT instance (non-crowd thing segment) with an
embedding, its 8-region class histograms
(:func:`pss_bench.metrics.context_error.image_context_descriptors`, cached per
image: key the PNG's bytes, the image's segments and the category list) and
its hidden context label where SynthStreets' ``context.json`` is found.
Predicted-segment embeddings are carried onto the GT segments they match.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pss_bench.errors import GroundTruthFormatError, PredictionFormatError, blamed_on
from pss_bench.io.cache_entry import BadEntry, EntryStore
from pss_bench.io.context_labels import find_context_labels, read_context_labels
from pss_bench.io.embeddings import ImageEmbeddings, load_embeddings
from pss_bench.io.panoptic import (
    PanopticAnnotation,
    PanopticJson,
    PngFile,
    check_png_folder,
    decode_ids,
    load_panoptic_json,
    read_ids,
    read_png_file,
)
from pss_bench.metrics.context_error import ContextDescriptors, image_context_descriptors
from pss_bench.structures import Category, ImageId, Segments
from pss_bench.threads import map_ordered

log = logging.getLogger(__name__)

CACHE_VERSION = "ce-v2"


# --------------------------------------------------------------------------- descriptor cache


_DESC_SPEC = {
    "segment_ids": (("<i8",), 1),
    "category_ids": (("<i8",), 1),
    "areas": (("<i8",), 1),
    "boxes": (("<i8",), 2),
    "counts": (("<i8",), 3),
    "region_areas": (("<i8",), 2),
}


class DescriptorCache:
    """Per-image :class:`ContextDescriptors`, in the checked entries of :mod:`pss_bench.io.cache_entry`.

    The key is a SHA-256 of the GT PNG's bytes, the image's segments (ids,
    categories, crowd flags) and the category list (ids and thing flags, in
    order): whatever a file's size or modification time, an edited PNG or
    JSON misses. Each entry carries its key and a checksum; an entry that
    fails a check is deleted with a warning and recomputed.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root) / CACHE_VERSION
        self._store = EntryStore(self.root, "Context Error cache", ".desc")

    @staticmethod
    def key(png: PngFile, segments: Segments, categories: Sequence[Category]) -> bytes:
        h = hashlib.sha256(CACHE_VERSION.encode())
        cats = np.array([[c.id, int(c.isthing)] for c in categories], dtype="<i8").reshape(-1, 2)
        for arr in (np.frombuffer(png.data, np.uint8), segments.ids, segments.category_ids,
                    segments.iscrowd.astype("<i8"), cats):
            raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            h.update(len(raw).to_bytes(8, "little"))
            h.update(raw)
        return h.digest()

    def get(self, key: bytes, n_segments: int, n_classes: int) -> ContextDescriptors | None:
        def check(a: dict[str, np.ndarray]) -> ContextDescriptors:
            m = a["segment_ids"].shape[0]
            if m > n_segments or any(a[f].shape[0] != m for f in _DESC_SPEC) or a["counts"].shape != (m, 8, n_classes) \
                    or a["region_areas"].shape != (m, 8) or a["boxes"].shape != (m, 4):
                raise BadEntry("its arrays do not fit this image's segments and classes")
            return ContextDescriptors.from_arrays(a)

        limit = 4096 + n_segments * 8 * (3 + 4 + 8 + 8 * n_classes)
        return self._store.read(key, _DESC_SPEC, limit, check)

    def put(self, key: bytes, d: ContextDescriptors) -> None:
        self._store.write(key, {k: np.asarray(v, dtype=np.int64) for k, v in d.to_arrays().items()})


def make_cache(cache_dir: str | os.PathLike | None, use_cache: bool) -> DescriptorCache | None:
    if not use_cache:
        return None
    if cache_dir is None:
        from pss_bench.evaluation.cache import default_cache_dir

        cache_dir = default_cache_dir()
    return DescriptorCache(cache_dir)


# --------------------------------------------------------------------------- GT descriptors


def _image_descriptors(gt: PanopticJson, ann: PanopticAnnotation, cats: Sequence[Category],
                       cache: DescriptorCache | None) -> ContextDescriptors:
    path = gt.png_path(ann)
    where = f"{path}: image {ann.image_id!r}"
    with blamed_on(GroundTruthFormatError):
        png = read_png_file(path, where)
    key = None
    if cache is not None:
        key = cache.key(png, ann.segments, cats)
        d = cache.get(key, len(ann.segments), len(cats))
        if d is not None:
            return d
    with blamed_on(GroundTruthFormatError):
        ids = decode_ids(png, where)
    d = image_context_descriptors(ids, ann.segments, cats)
    absent = np.flatnonzero(d.areas == 0)
    if absent.size:
        raise GroundTruthFormatError(f"{where}, segment {int(d.segment_ids[absent[0]])}: in the JSON but not in the PNG")
    if key is not None:
        cache.put(key, d)
    return d


def gt_descriptors(
    gt: PanopticJson,
    *,
    workers: int | None = None,
    cache: DescriptorCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ContextDescriptors]:
    """The :class:`ContextDescriptors` of every GT image, in ``gt.annotations`` order."""
    cats = tuple(gt.categories.values())
    return list(map_ordered(lambda a: _image_descriptors(gt, a, cats, cache), gt.annotations, workers, progress, "pss-ce"))


# --------------------------------------------------------------------------- instances


def l2_normalise(vecs: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32; zero rows stay zero.

    Each row is first divided by its largest absolute value (in float64), so
    the squares can neither overflow nor underflow: embeddings scaled by 1e20
    or 1e-25 give the same unit vectors as unscaled ones.

    Args:
        vecs: ``(n, D)`` finite floats.

    Returns:
        ``(n, D)`` float32.
    """
    v = np.asarray(vecs, dtype=np.float64)
    peak = np.abs(v).max(axis=1, keepdims=True) if v.shape[1] else np.zeros((v.shape[0], 1))
    v = np.divide(v, peak, out=np.zeros_like(v), where=peak > 0)
    norms = np.sqrt(np.einsum("ij,ij->i", v, v))[:, None]
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0).astype(np.float32)



@dataclass(frozen=True)
class InstanceSet:
    """Every instance with an embedding, as parallel arrays.

    Attributes:
        gt: the ground truth they come from.
        image_index: ``(n,)`` int64 index into ``gt.annotations``.
        segment_ids: ``(n,)`` int64 GT segment ids.
        category_ids: ``(n,)`` int64.
        areas: ``(n,)`` int64 pixel counts.
        boxes: ``(n, 4)`` int64 ``x0, y0, w, h``.
        distributions: ``(n, 8, C)`` float64 region class distributions.
        embeddings: ``(n, D)`` float32, L2-normalised (zero vectors stay zero).
        labels: ``(n,)`` object hidden context labels, or ``None`` without context.json.
    """

    gt: PanopticJson
    image_index: np.ndarray
    segment_ids: np.ndarray
    category_ids: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray
    distributions: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return int(self.segment_ids.shape[0])

    def image_id(self, i: int) -> ImageId:
        return self.gt.annotations[int(self.image_index[i])].image_id

    def find(self, image_id: ImageId, segment_id: int) -> int | None:
        """The index of an instance, or ``None``."""
        for j, ann in enumerate(self.gt.annotations):
            if ann.image_id == image_id or str(ann.image_id) == str(image_id):
                hit = np.flatnonzero((self.image_index == j) & (self.segment_ids == segment_id))
                return int(hit[0]) if hit.size else None
        return None


def load_instances(
    pred_dir: str | os.PathLike,
    gt_json: str | os.PathLike,
    gt_dir: str | os.PathLike | None = None,
    *,
    min_area: int = 0,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    context_labels: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> InstanceSet:
    """Reads the GT, its context descriptors and a prediction directory's embeddings.

    Raises:
        GroundTruthFormatError | PredictionFormatError: the first bad input,
            e.g. an embedded segment id that is not in the GT.
    """
    gt = gt_json if isinstance(gt_json, PanopticJson) else load_panoptic_json(gt_json, gt_dir, role="gt")
    check_png_folder(gt, GroundTruthFormatError)
    manifest, emb = load_embeddings(pred_dir, [a.image_id for a in gt.annotations])
    kind = manifest.get("embeddings")
    if kind not in ("gt-segments", "pred-segments"):
        raise PredictionFormatError(
            f"{Path(pred_dir) / 'manifest.json'}: 'embeddings' must say whose segments the vectors belong to "
            f"(\"gt-segments\" or \"pred-segments\"), found {kind!r}"
        )
    if kind == "pred-segments":
        emb = pred_embeddings_on_gt(pred_dir, gt, emb, workers=workers)
    cache = make_cache(cache_dir, use_cache)
    descs = gt_descriptors(gt, workers=workers, cache=cache, progress=progress)
    labels_file = find_context_labels(gt.path) if context_labels else None
    labels = read_context_labels(labels_file) if labels_file is not None else None

    parts: dict[str, list] = {k: [] for k in ("img", "seg", "cat", "area", "box", "dist", "emb", "lab")}
    dim = None
    for j, (ann, d) in enumerate(zip(gt.annotations, descs)):
        e: ImageEmbeddings | None = emb.get(ann.image_id)
        if e is None or e.segment_ids.shape[0] == 0:
            continue
        dim = e.embeddings.shape[1]
        ok = np.isin(e.segment_ids, ann.segments.ids)
        if not ok.all():
            bad = int(e.segment_ids[np.flatnonzero(~ok)[0]])
            raise PredictionFormatError(
                f"{e.path}: image {ann.image_id!r}, segment {bad}: not a segment of the GT image in {gt.path}"
            )
        # Instances with an embedding, in the GT's order.
        order = np.argsort(e.segment_ids)
        pos = np.searchsorted(e.segment_ids[order], d.segment_ids)
        pos_c = np.minimum(pos, e.segment_ids.shape[0] - 1)
        has = e.segment_ids[order][pos_c] == d.segment_ids
        has &= d.areas >= max(min_area, 1)
        sel = np.flatnonzero(has)
        rows = order[pos_c[sel]]
        parts["img"].append(np.full(sel.shape[0], j, np.int64))
        parts["seg"].append(d.segment_ids[sel])
        parts["cat"].append(d.category_ids[sel])
        parts["area"].append(d.areas[sel])
        parts["box"].append(d.boxes[sel])
        parts["dist"].append(d.distributions()[sel])
        parts["emb"].append(e.embeddings[rows])
        if labels is not None:
            img_labels = labels.get(str(ann.image_id), {})
            parts["lab"].append(np.array([img_labels.get(int(s)) for s in d.segment_ids[sel]], dtype=object))
    n_cls = len(gt.categories)
    if not parts["seg"]:
        raise PredictionFormatError(f"{pred_dir}: no embedding of a GT instance (non-crowd thing segment) found")
    vecs = l2_normalise(np.concatenate(parts["emb"]))
    return InstanceSet(
        gt=gt,
        image_index=np.concatenate(parts["img"]),
        segment_ids=np.concatenate(parts["seg"]),
        category_ids=np.concatenate(parts["cat"]),
        areas=np.concatenate(parts["area"]),
        boxes=np.concatenate(parts["box"]).reshape(-1, 4),
        distributions=np.concatenate(parts["dist"]).reshape(-1, 8, n_cls),
        embeddings=np.ascontiguousarray(vecs.reshape(-1, dim or 1)),
        labels=np.concatenate(parts["lab"]) if labels is not None else None,
    )


def _match_pred_to_gt(gt: PanopticJson, pred: PanopticJson, ann: PanopticAnnotation, pann: PanopticAnnotation,
                      e: ImageEmbeddings) -> ImageEmbeddings:
    from pss_bench.metrics.pq import UnknownSegmentError, confusion_matrix, matched_pairs, thread_indexer

    gpath, ppath = gt.png_path(ann), pred.png_path(pann)
    gwhere, pwhere = f"{gpath}: image {ann.image_id!r}", f"{ppath}: image {pann.image_id!r}"
    unknown = np.flatnonzero(~np.isin(e.segment_ids, pann.segments.ids))
    if unknown.size:
        raise PredictionFormatError(
            f"{e.path}: image {ann.image_id!r}, segment {int(e.segment_ids[unknown[0]])}: not a segment of "
            f"the predicted image in {pred.path} (the manifest says \"pred-segments\")"
        )
    gids = read_ids(gpath, gwhere, GroundTruthFormatError)
    pids = read_ids(ppath, pwhere, PredictionFormatError)
    if pids.shape != gids.shape:
        raise PredictionFormatError(f"{pwhere}: prediction is {pids.shape[1]}x{pids.shape[0]} (WxH) but the GT is "
                                    f"{gids.shape[1]}x{gids.shape[0]}")
    gseg, pseg = ann.segments, pann.segments
    try:
        gd = thread_indexer()(gids, gseg.ids, ids_below_2_24=True)
    except UnknownSegmentError as exc:
        raise GroundTruthFormatError(f"{gwhere}, segment {int(exc.unknown_ids[0])}: in the PNG but not in the JSON") from None
    try:
        pd = thread_indexer()(pids, pseg.ids, ids_below_2_24=True)
    except UnknownSegmentError as exc:
        raise PredictionFormatError(f"{pwhere}, segment {int(exc.unknown_ids[0])}: in the PNG but not in the JSON") from None
    conf = confusion_matrix(gd, pd, len(gseg), len(pseg))
    gi, pi, _ = matched_pairs(conf, gseg.category_ids, pseg.category_ids, gseg.iscrowd)
    rows = np.searchsorted(np.sort(e.segment_ids), pseg.ids[pi])
    order = np.argsort(e.segment_ids)
    has = (rows < e.segment_ids.shape[0])
    has[has] = e.segment_ids[order][rows[has]] == pseg.ids[pi][has]
    sel_rows = order[rows[has]]
    return ImageEmbeddings(ann.image_id, e.path, gseg.ids[gi[has]].astype(np.int64), e.embeddings[sel_rows])


def pred_embeddings_on_gt(pred_dir, gt: PanopticJson, emb: dict, *, workers: int | None = None) -> dict:
    """Moves ``pred-segments`` embeddings onto the GT instances they match.

    A predicted segment matches a non-crowd GT segment of its category when
    their IoU is above 0.5 (panoptic quality's rule, predicted pixels on GT
    VOID left out of the union); the match is unique. GT instances without a
    matched, embedded prediction have no embedding and are not scored.

    Raises:
        PredictionFormatError: a missing or bad ``panoptic.json``/PNG, or an
            embedded id that is not a predicted segment.
    """
    from pss_bench.io.panoptic import resolve_panoptic_input

    json_path, png_dir = resolve_panoptic_input(pred_dir)
    pred = load_panoptic_json(json_path, png_dir, role="prediction", categories=gt.categories)
    check_png_folder(pred, PredictionFormatError)
    by_id = {a.image_id: a for a in pred.annotations}
    todo = []
    for ann in gt.annotations:
        e = emb.get(ann.image_id)
        if e is None:
            continue
        pann = by_id.get(ann.image_id)
        if pann is None:
            raise PredictionFormatError(f"{e.path}: image {ann.image_id!r} has embeddings but no entry in {pred.path}")
        todo.append((ann, pann, e))
    matched = list(map_ordered(lambda t: _match_pred_to_gt(gt, pred, *t), todo, workers, None, "pss-ce"))
    return {m.image_id: m for m in matched}
