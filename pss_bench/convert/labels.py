"""Conversions between panoptic label layouts, as pure array functions (no files).

* ``(semantic, instance)`` maps, the layout of deeplab2 / Panoptic-DeepLab
  (``label = semantic * label_divisor + instance``) and of panopticapi's
  "2 channel" PNGs, to a COCO panoptic id map with its ``segments_info``, and
  back with deeplab2's own rules;
* COCO instance results (RLE masks, scores) plus a semantic segmentation to a
  panoptic prediction, with panopticapi's ``combine_semantic_and_instance_predictions``
  rules;
* a panoptic id map to COCO detection annotations (RLE) and to a semantic map,
  as panopticapi's ``converters/panoptic2*.py``.

RLE encoding and decoding go through pycocotools (imported when needed).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from pss_bench.errors import FormatError
from pss_bench.metrics.pq import UnknownSegmentError, thread_indexer

_INSTANCE_BITS = 32
_INSTANCE_MASK = (1 << _INSTANCE_BITS) - 1

#: Default score threshold, overlap threshold and stuff area limit of
#: panopticapi's ``combine_semantic_and_instance_predictions.py``.
COMBINE_CONFIDENCE_THR = 0.5
COMBINE_OVERLAP_THR = 0.5
COMBINE_STUFF_AREA_LIMIT = 64 * 64

#: panopticapi's ``--things_other`` category id (COCO-stuff's "other").
THINGS_OTHER_ID = 183


# --------------------------------------------------------------------------- (semantic, instance) <-> panoptic


def split_panoptic_label(label: np.ndarray, label_divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """``(semantic, instance)`` int64 maps of ``label = semantic * label_divisor + instance``."""
    if label_divisor < 1:
        raise ValueError(f"label_divisor must be positive, found {label_divisor}")
    label = np.asarray(label).astype(np.int64)
    return label // label_divisor, label % label_divisor


def merge_panoptic_label(semantic: np.ndarray, instance: np.ndarray, label_divisor: int) -> np.ndarray:
    """``semantic * label_divisor + instance`` as int64, refusing instances that overflow the divisor."""
    semantic = np.asarray(semantic).astype(np.int64)
    instance = np.asarray(instance).astype(np.int64)
    if instance.size and (instance.min() < 0 or instance.max() >= label_divisor):
        raise FormatError(f"instance ids must lie in [0, {label_divisor}) for label divisor {label_divisor}, "
                          f"found {int(instance.min())}..{int(instance.max())}")
    return semantic * label_divisor + instance


def _map_values(values: np.ndarray, mapping: Mapping[int, int] | None, what: str) -> np.ndarray:
    if mapping is None:
        return values
    keys = np.array(sorted(mapping), dtype=np.int64)
    vals = np.array([mapping[int(k)] for k in keys], dtype=np.int64)
    pos = np.searchsorted(keys, values).clip(max=max(len(keys) - 1, 0))
    ok = keys[pos] == values if len(keys) else np.zeros(values.shape, bool)
    if not ok.all():
        raise FormatError(f"{what} {sorted(set(values[~ok].tolist()))[:10]} have no entry in the category map")
    return vals[pos]


def semantic_instance_to_panoptic(
    semantic: np.ndarray,
    instance: np.ndarray,
    *,
    thing_ids: Iterable[int],
    void_label: int | None = None,
    crowd_instance: int | None = 0,
    category_ids: Iterable[int] | None = None,
    label_to_category: Mapping[int, int] | None = None,
    where: str = "image",
) -> tuple[np.ndarray, list[dict]]:
    """A ``(semantic, instance)`` pair of maps as a COCO panoptic id map.

    Every distinct ``(semantic, instance)`` pair outside ``void_label`` is one
    segment, as panopticapi's 2-channel converter does (stuff normally has
    instance 0). Segment ids are ``1..N`` in ascending ``(category,
    instance)`` order; 0 is VOID.

    Args:
        semantic: ``(H, W)`` integer semantic labels.
        instance: ``(H, W)`` integer instance ids, ``0 <= instance < 2**32``.
        thing_ids: category ids of thing classes.
        void_label: semantic label of VOID pixels (deeplab2's ``ignore_label``,
            e.g. 255; panopticapi's 0), or ``None``.
        crowd_instance: a thing segment with this instance id is a crowd
            region (``iscrowd=1``): deeplab2 and Cityscapes give crowd pixels
            instance 0. ``None``: never crowd.
        category_ids: the known category ids; another label raises.
        label_to_category: semantic label -> category id (e.g. Cityscapes
            train ids to label ids); identity when ``None``.
        where: names the image in error messages.

    Returns:
        ``(ids, segments_info)``: ``(H, W)`` uint32 ids and a list of
        ``{"id", "category_id", "iscrowd", "area"}`` dicts.

    Raises:
        FormatError: shapes differ, negative or too large instance ids, or an
            unknown label.
    """
    semantic = np.asarray(semantic)
    instance = np.asarray(instance)
    if semantic.shape != instance.shape or semantic.ndim != 2:
        raise FormatError(f"{where}: semantic {semantic.shape} and instance {instance.shape} maps must be the same (H, W)")
    sem = semantic.astype(np.int64).reshape(-1)
    inst = instance.astype(np.int64).reshape(-1)
    valid = sem != void_label if void_label is not None else np.ones(sem.shape, bool)
    if valid.any():
        lo, hi = int(inst[valid].min()), int(inst[valid].max())
        if lo < 0 or hi > _INSTANCE_MASK:
            raise FormatError(f"{where}: instance ids must lie in [0, 2**32), found {lo}..{hi}")
        if int(sem[valid].min()) < 0:
            raise FormatError(f"{where}: negative semantic label {int(sem[valid].min())}")
    keys = (sem[valid] << _INSTANCE_BITS) | inst[valid]
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    labels = uniq >> _INSTANCE_BITS
    instances = uniq & _INSTANCE_MASK
    cats = _map_values(labels, label_to_category, f"{where}: semantic labels")
    if category_ids is not None:
        known = np.isin(cats, np.fromiter(category_ids, dtype=np.int64))
        if not known.all():
            raise FormatError(f"{where}: unknown category ids {sorted(set(cats[~known].tolist()))[:10]} "
                              f"(not in the categories; VOID label is {void_label})")
    things = np.isin(cats, np.fromiter(thing_ids, dtype=np.int64))
    crowd = things & (instances == crowd_instance) if crowd_instance is not None else np.zeros(things.shape, bool)
    ids = np.zeros(sem.shape, dtype=np.uint32)
    ids[valid] = inverse.reshape(-1).astype(np.uint32) + 1
    segments = [
        {"id": i + 1, "category_id": int(c), "iscrowd": int(k), "area": int(a)}
        for i, (c, k, a) in enumerate(zip(cats.tolist(), crowd.tolist(), counts.tolist()))
    ]
    return ids.reshape(semantic.shape), segments


def panoptic_to_semantic_instance(
    ids: np.ndarray,
    segments: Sequence[Mapping],
    *,
    thing_ids: Iterable[int],
    void_label: int,
    crowd_as_void: bool = False,
    category_to_label: Mapping[int, int] | None = None,
    where: str = "image",
) -> tuple[np.ndarray, np.ndarray]:
    """A COCO panoptic id map as ``(semantic, instance)`` maps, with deeplab2's rules.

    Thing segments get instance ids ``1, 2, ...`` per category in
    ``segments`` order; crowd thing segments and stuff get instance 0; pixels
    of no segment get ``void_label``.

    Args:
        ids: ``(H, W)`` integer panoptic ids (0 = VOID).
        segments: ``segments_info`` dicts with ``id``, ``category_id`` and
            optional ``iscrowd``.
        thing_ids: category ids of thing classes.
        void_label: the semantic label of VOID pixels.
        crowd_as_void: crowd pixels become VOID (deeplab2's
            ``treat_crowd_as_ignore``) instead of instance 0 of their class.
        category_to_label: category id -> semantic label; identity when ``None``.
        where: names the image in error messages.

    Returns:
        ``(semantic, instance)``: ``(H, W)`` int64 maps.

    Raises:
        FormatError: an id in the map is not a segment, or a stuff segment is crowd.
    """
    thing_set = set(int(t) for t in thing_ids)
    seg_ids = np.array([int(s["id"]) for s in segments], dtype=np.int64)
    try:
        dense = thread_indexer()(np.asarray(ids), seg_ids)
    except UnknownSegmentError as exc:
        raise FormatError(f"{where}, segment {int(exc.unknown_ids[0])}: in the id map but not in segments_info") from None
    cat_ids = np.array([int(s["category_id"]) for s in segments], dtype=np.int64)
    labels = _map_values(cat_ids, category_to_label, f"{where}: category ids")
    sem_of = np.empty(len(segments) + 1, dtype=np.int64)
    inst_of = np.zeros(len(segments) + 1, dtype=np.int64)
    sem_of[0] = void_label
    count: dict[int, int] = {}
    for i, s in enumerate(segments):
        cid = int(s["category_id"])
        crowd = bool(s.get("iscrowd", 0))
        sem_of[i + 1] = labels[i]
        if cid in thing_set:
            if crowd:
                if crowd_as_void:
                    sem_of[i + 1] = void_label
                continue
            count[cid] = count.get(cid, 0) + 1
            inst_of[i + 1] = count[cid]
        elif crowd:
            raise FormatError(f"{where}, segment {int(s['id'])}: stuff category {cid} cannot be crowd")
    return sem_of[dense], inst_of[dense]


# --------------------------------------------------------------------------- RLE helpers


def _mask_api():
    from pycocotools import mask as mask_api

    return mask_api


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a ``(H, W)`` bool mask, ``counts`` as a str (JSON-ready)."""
    rle = _mask_api().encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_rle(rle: Mapping, height: int, width: int, where: str) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO RLE (compressed str/bytes or uncompressed list counts)."""
    if not isinstance(rle, Mapping) or "counts" not in rle or "size" not in rle:
        raise FormatError(f"{where}: 'segmentation' must be an RLE object with 'counts' and 'size'")
    size = list(rle["size"])
    if size != [height, width]:
        raise FormatError(f"{where}: RLE size {size} differs from the image size [{height}, {width}]")
    api = _mask_api()
    counts = rle["counts"]
    try:
        if isinstance(counts, list):
            rle = api.frPyObjects({"counts": counts, "size": size}, height, width)
        else:
            rle = {"counts": counts.encode("ascii") if isinstance(counts, str) else counts, "size": size}
        return api.decode(rle).astype(bool)
    except Exception as exc:  # pycocotools raises several types on corrupt counts
        raise FormatError(f"{where}: corrupt RLE ({exc})") from None


# --------------------------------------------------------------------------- combine


def combine_instances_and_semantic(
    height: int,
    width: int,
    instances: Sequence[Mapping],
    semantic: Sequence[tuple[int, np.ndarray]],
    *,
    stuff_ids: Iterable[int],
    confidence_thr: float = COMBINE_CONFIDENCE_THR,
    overlap_thr: float = COMBINE_OVERLAP_THR,
    stuff_area_limit: float = COMBINE_STUFF_AREA_LIMIT,
    where: str = "image",
) -> tuple[np.ndarray, list[dict]]:
    """One panoptic prediction from instance results and a semantic segmentation.

    panopticapi's rules (``combine_semantic_and_instance_predictions.py``, the
    heuristic of the panoptic segmentation paper, section 7):

    1. instances with ``score < confidence_thr`` are dropped; the rest are
       taken by decreasing score (ties keep their input order);
    2. an empty instance is skipped; one whose area overlaps the pixels
       already taken by more than ``overlap_thr`` of its own area is skipped;
       otherwise it takes its pixels that are still free;
    3. then each stuff region, in input order, takes its still-free pixels
       unless fewer than ``stuff_area_limit`` are left. Semantic regions of
       thing categories are ignored.

    Args:
        height, width: the image size.
        instances: dicts with ``category_id``, ``score`` and ``segmentation``
            (COCO RLE of size ``[height, width]``).
        semantic: ``(category_id, (H, W) bool mask)`` regions.
        stuff_ids: category ids of stuff classes.
        confidence_thr, overlap_thr, stuff_area_limit: as panopticapi's flags.
        where: names the image in error messages.

    Returns:
        ``(ids, segments_info)``: ``(H, W)`` uint32 ids ``1..N`` in the order
        segments were placed, and ``{"id", "category_id", "iscrowd": 0,
        "area"}`` dicts (instances also keep their ``score``).
    """
    stuff = set(int(s) for s in stuff_ids)
    kept = [a for a in instances if float(a["score"]) >= confidence_thr]
    order = np.argsort([-float(a["score"]) for a in kept], kind="stable")
    ids = np.zeros((height, width), dtype=np.uint32)
    taken = np.zeros((height, width), dtype=bool)
    segments: list[dict] = []
    for k in order.tolist():
        ann = kept[k]
        mask = decode_rle(ann["segmentation"], height, width, f"{where}, instance {k}")
        area = int(mask.sum())
        if area == 0:
            continue
        overlap = int(np.count_nonzero(mask & taken))
        if overlap / area > overlap_thr:
            continue
        free = mask & ~taken
        sid = len(segments) + 1
        ids[free] = sid
        taken |= free
        segments.append({"id": sid, "category_id": int(ann["category_id"]), "iscrowd": 0,
                         "area": int(free.sum()), "score": float(ann["score"])})
    for cid, mask in semantic:
        if int(cid) not in stuff:
            continue
        free = np.asarray(mask, dtype=bool) & ~taken
        area = int(free.sum())
        if area < stuff_area_limit or area == 0:
            continue
        sid = len(segments) + 1
        ids[free] = sid
        taken |= free
        segments.append({"id": sid, "category_id": int(cid), "iscrowd": 0, "area": area})
    return ids, segments


def semantic_regions(semantic: np.ndarray, ignore: Iterable[int] = ()) -> list[tuple[int, np.ndarray]]:
    """``(category_id, mask)`` of each label of a ``(H, W)`` semantic map, ascending, minus ``ignore``."""
    semantic = np.asarray(semantic)
    skip = set(int(v) for v in ignore)
    return [(int(v), semantic == v) for v in np.unique(semantic).tolist() if int(v) not in skip]


# --------------------------------------------------------------------------- panoptic -> detection / semantic


def panoptic_to_detection(
    ids: np.ndarray,
    segments: Sequence[Mapping],
    image_id,
    *,
    thing_ids: Iterable[int] | None = None,
    where: str = "image",
) -> list[dict]:
    """COCO detection annotations of one panoptic image, as panopticapi's converter.

    Each segment keeps its ``segments_info`` fields except ``id`` and gains
    ``image_id`` and ``segmentation`` (RLE of its pixels). The caller numbers
    the annotations (``id``) over the whole dataset.

    Args:
        ids: ``(H, W)`` panoptic ids.
        segments: ``segments_info`` dicts.
        image_id: the image's id.
        thing_ids: keep only segments of these categories (``--things-only``).
        where: names the image in error messages.
    """
    keep = None if thing_ids is None else set(int(t) for t in thing_ids)
    ids = np.asarray(ids)
    out = []
    for s in segments:
        if keep is not None and int(s["category_id"]) not in keep:
            continue
        mask = ids == int(s["id"])
        ann = {k: v for k, v in s.items() if k != "id"}
        ann["image_id"] = image_id
        ann["segmentation"] = encode_rle(mask)
        out.append(ann)
    return out


def panoptic_to_semantic(
    ids: np.ndarray,
    segments: Sequence[Mapping],
    *,
    things_other: Iterable[int] | None = None,
    void_value: int = 0,
    where: str = "image",
) -> np.ndarray:
    """``(H, W)`` uint8 map of each pixel's category id, as panopticapi's PNG output.

    Args:
        ids: ``(H, W)`` panoptic ids.
        segments: ``segments_info`` dicts.
        things_other: thing category ids to write as 183 ("other"), as
            panopticapi's ``--things_other``; ``None`` keeps them.
        void_value: the value of pixels of no segment (panopticapi: 0).
        where: names the image in error messages.

    Raises:
        FormatError: a category id does not fit in 8 bits.
    """
    other = set(int(t) for t in things_other) if things_other is not None else set()
    seg_ids = np.array([int(s["id"]) for s in segments], dtype=np.int64)
    values = np.array([THINGS_OTHER_ID if int(s["category_id"]) in other else int(s["category_id"]) for s in segments],
                      dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() > 255):
        raise FormatError(f"{where}: category ids must fit in an 8-bit PNG (0..255), found {int(values.max())}")
    try:
        dense = thread_indexer()(np.asarray(ids), seg_ids)
    except UnknownSegmentError as exc:
        raise FormatError(f"{where}, segment {int(exc.unknown_ids[0])}: in the id map but not in segments_info") from None
    lut = np.concatenate([[void_value], values]).astype(np.uint8)
    return lut[dense]
