"""Panoptic quality as pure array computation, with panopticapi's exact rules.

No files, no printing. The rules (panopticapi ``evaluation.py``, copied by
cityscapesscripts' ``evalPanopticSemanticLabeling.py``):

* a GT segment and a predicted segment can match only when they share the
  category and the GT segment is not crowd;
* ``IoU = |G ∩ P| / (|P| + |G| - |G ∩ P| - |P ∩ VOID_gt|)``: the union leaves
  out only the prediction's pixels on GT VOID (id 0); a match needs IoU > 0.5;
* predicted VOID pixels (id 0) are not a segment but count against nothing;
  they lower the IoU of the GT segment they cover;
* unmatched non-crowd GT segments are false negatives;
* an unmatched prediction is a false positive unless strictly more than half
  of its pixels lie on GT VOID plus the GT crowd segment of its category (the
  last crowd segment of that category in ``segments_info`` order);
* per class, ``PQ = ΣIoU / (TP + FP/2 + FN/2)``, ``SQ = ΣIoU / TP`` (0 if no
  TP), ``RQ = TP / (TP + FP/2 + FN/2)``; a row is the plain mean over its
  classes with ``TP + FP + FN > 0``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from pss_bench.errors import PssBenchError
from pss_bench.metrics.results import PQClassResult, PQResult, PQRow  # noqa: F401  (re-exported)
from pss_bench.structures import Category, Segments

_LUT_SIZE = 1 << 24


class UnknownSegmentError(PssBenchError):
    """An id map holds ids that its segment list does not declare."""

    def __init__(self, unknown_ids: np.ndarray) -> None:
        self.unknown_ids = unknown_ids
        super().__init__(f"ids {unknown_ids.tolist()[:10]} in the id map but not in the segment list")


class IdIndexer:
    """Maps segment ids to dense indices: 0 for VOID, ``i + 1`` for ``seg_ids[i]``.

    For ids below ``2**24`` (every RGB PNG) a reusable lookup table turns the
    map in one gather; other ids fall back to a binary search. One instance per
    thread: the tables are scratch space.
    """

    def __init__(self) -> None:
        self._luts: dict[type, np.ndarray] = {}

    def _lut(self, dtype) -> np.ndarray:
        lut = self._luts.get(dtype)
        if lut is None:
            lut = np.full(_LUT_SIZE, np.iinfo(dtype).max, dtype=dtype)
            lut[0] = 0
            self._luts[dtype] = lut
        return lut

    def __call__(self, ids: np.ndarray, seg_ids: np.ndarray, *, ids_below_2_24: bool = False) -> np.ndarray:
        """Dense index map of ``ids``.

        Args:
            ids: ``(H, W)`` integer segment ids.
            seg_ids: ``(N,)`` distinct non-zero declared ids.
            ids_below_2_24: the caller guarantees ``0 <= ids < 2**24`` (decoded
                PNGs), which skips a range check.

        Returns:
            ``(H, W)`` uint8 / uint16 / int32 map with values in ``[0, N]``.

        Raises:
            UnknownSegmentError: ``ids`` holds a non-zero id not in ``seg_ids``.
        """
        n = int(seg_ids.shape[0])
        ids = np.asarray(ids)
        if ids.dtype.kind not in "ui":
            raise TypeError(f"id maps must be integer arrays, found {ids.dtype}")
        small = ids_below_2_24 or ids.size == 0 or (int(ids.min()) >= 0 and int(ids.max()) < _LUT_SIZE)
        small = small and (n == 0 or int(seg_ids.max()) < _LUT_SIZE)
        if small and n + 2 <= 1 << 16:
            dtype = np.uint8 if n + 2 <= 1 << 8 else np.uint16
            sentinel = np.iinfo(dtype).max
            lut = self._lut(dtype)
            lut[seg_ids] = np.arange(1, n + 1, dtype=dtype)
            try:
                dense = np.take(lut, ids.astype(np.uint32, copy=False))
            finally:
                lut[seg_ids] = sentinel
            bad = dense == sentinel
            if bad.any():
                raise UnknownSegmentError(np.unique(ids[bad]))
            return dense
        order = np.argsort(seg_ids)
        sorted_ids = seg_ids[order]
        flat = ids.reshape(-1).astype(np.int64)
        pos = np.searchsorted(sorted_ids, flat)
        pos_c = np.minimum(pos, max(n - 1, 0))
        hit = (sorted_ids[pos_c] == flat) if n else np.zeros(flat.shape, bool)
        bad = ~hit & (flat != 0)
        if bad.any():
            raise UnknownSegmentError(np.unique(flat[bad]))
        dense = np.where(hit, order[pos_c] + 1, 0).astype(np.int32)
        return dense.reshape(ids.shape)


_local = threading.local()


def thread_indexer() -> IdIndexer:
    """The calling thread's :class:`IdIndexer`."""
    idx = getattr(_local, "indexer", None)
    if idx is None:
        idx = _local.indexer = IdIndexer()
    return idx


def confusion_matrix(gt_dense: np.ndarray, pred_dense: np.ndarray, n_gt: int, n_pred: int) -> np.ndarray:
    """Pixel counts of every (GT index, prediction index) pair.

    Args:
        gt_dense: ``(H, W)`` dense GT indices in ``[0, n_gt]`` (0 = VOID).
        pred_dense: ``(H, W)`` dense prediction indices in ``[0, n_pred]``.

    Returns:
        ``(n_gt + 1, n_pred + 1)`` int64 matrix; row 0 is GT VOID, column 0
        predicted VOID.
    """
    if gt_dense.shape != pred_dense.shape:
        raise ValueError(f"shapes differ: {gt_dense.shape} vs {pred_dense.shape}")
    cols = n_pred + 1
    bins = (n_gt + 1) * cols
    jdtype = np.uint16 if bins <= 1 << 16 else (np.uint32 if bins <= 1 << 32 else np.int64)
    joint = gt_dense.reshape(-1).astype(jdtype) * jdtype(cols) + pred_dense.reshape(-1).astype(jdtype)
    if joint.size == 0:
        return np.zeros((n_gt + 1, cols), dtype=np.int64)
    # Label maps are piecewise constant: counting runs is several times faster
    # than a per-pixel histogram, whose increments hit a handful of bins.
    change = np.flatnonzero(joint[1:] != joint[:-1])
    if change.size < joint.size // 8:
        starts = np.empty(change.size + 1, dtype=np.int64)
        starts[0] = 0
        starts[1:] = change + 1
        lengths = np.diff(starts, append=joint.size)
        counts = np.bincount(joint[starts], weights=lengths, minlength=bins)
        counts = np.rint(counts).astype(np.int64)
    else:
        counts = np.bincount(joint, minlength=bins).astype(np.int64)
    return counts.reshape(n_gt + 1, cols)


# --------------------------------------------------------------------------- runs

@dataclass(frozen=True)
class Runs:
    """A label map as runs of equal pixels in row-major order.

    Label maps are piecewise constant, so a 2048x1024 map holds a few tens of
    thousands of runs: everything after decoding works on runs, not pixels.

    Attributes:
        starts: ``(K,)`` integer flat positions where runs begin, strictly
            increasing from 0 (int64, or uint32 when read from the GT cache).
        values: ``(K,)`` dense segment index of each run (0 = VOID, ``i + 1``
            for ``segments[i]``), uint8 / uint16 / uint32.
        size: ``H * W``.
    """

    starts: np.ndarray
    values: np.ndarray
    size: int


def run_starts(flat: np.ndarray) -> np.ndarray:
    """``(K,)`` int64 positions where ``flat[i] != flat[i - 1]``, and 0.

    Args:
        flat: ``(N,)`` array of any integer dtype, ``N > 0``.
    """
    change = np.empty(flat.shape[0], dtype=bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    return np.flatnonzero(change)


def dense_index(ids: np.ndarray, seg_ids: np.ndarray) -> np.ndarray:
    """Dense indices of ``ids``: 0 for VOID, ``i + 1`` for ``seg_ids[i]``.

    Args:
        ids: ``(K,)`` integer segment ids (a few per run, not per pixel).
        seg_ids: ``(N,)`` distinct non-zero declared ids.

    Returns:
        ``(K,)`` uint8 / uint16 / uint32 (the smallest that holds ``N``).

    Raises:
        UnknownSegmentError: a non-zero id that ``seg_ids`` does not declare.
    """
    n = int(seg_ids.shape[0])
    dtype = np.uint8 if n < 1 << 8 else (np.uint16 if n < 1 << 16 else np.uint32)
    ids = ids.astype(np.int64, copy=False)
    if n == 0:
        if ids.any():
            raise UnknownSegmentError(np.unique(ids[ids != 0]))
        return np.zeros(ids.shape, dtype=dtype)
    order = np.argsort(seg_ids, kind="stable")
    sorted_ids = seg_ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, ids), n - 1)
    hit = sorted_ids[pos] == ids
    if not hit.all():
        bad = ~hit & (ids != 0)
        if bad.any():
            raise UnknownSegmentError(np.unique(ids[bad]))
    return np.where(hit, order[pos] + 1, 0).astype(dtype)


def id_runs(ids: np.ndarray, seg_ids: np.ndarray, *, id_mask: int | None = None) -> Runs:
    """Run-length form of an id map with dense values.

    Args:
        ids: ``(H, W)`` (or flat) integer ids; any dtype.
        seg_ids: ``(N,)`` distinct non-zero declared ids.
        id_mask: when set, the id of a pixel is ``ids & id_mask`` and the bits
            outside the mask are the same for every pixel (the words of
            :func:`pss_bench.io.panoptic.decode_id_words`), so runs are found on
            the unmasked values.

    Raises:
        UnknownSegmentError: an id that ``seg_ids`` does not declare.
    """
    flat = ids.reshape(-1)
    if flat.dtype.kind not in "ui":
        raise TypeError(f"id maps must be integer arrays, found {flat.dtype}")
    if flat.size == 0:
        return Runs(np.zeros(0, np.int64), np.zeros(0, np.uint8), 0)
    starts = run_starts(flat)
    at = flat[starts]
    if id_mask is not None:
        at = at & at.dtype.type(id_mask)
    return Runs(starts, dense_index(at, seg_ids), int(flat.size))


def confusion_from_runs(gt: Runs, pred: Runs, n_gt: int, n_pred: int) -> np.ndarray:
    """Pixel counts of every (GT index, prediction index) pair, from runs.

    The joint runs start wherever either map starts one. Both start lists are
    sorted, so a stable sort of the two merges them in linear time (numpy's
    stable sort finds the two sorted halves); counting the GT and prediction
    starts up to each joint start gives its two runs.

    Returns:
        ``(n_gt + 1, n_pred + 1)`` int64 matrix, as :func:`confusion_matrix`.
    """
    if gt.size != pred.size:
        raise ValueError(f"sizes differ: {gt.size} vs {pred.size} pixels")
    cols = n_pred + 1
    if gt.size == 0:
        return np.zeros((n_gt + 1, cols), dtype=np.int64)
    # Each start tagged with its map in the lowest bit (GT 0, prediction 1): one sort of the two sorted
    # lists, where the GT's entry comes first at a position both maps start a run at.
    n_g = gt.starts.shape[0]
    tagged = np.empty(n_g + pred.starts.shape[0], dtype=np.int64)
    tagged[:n_g] = gt.starts
    tagged[n_g:] = pred.starts
    tagged <<= 1
    tagged[n_g:] |= 1
    tagged.sort(kind="stable")
    p_run = np.cumsum(tagged & 1, dtype=np.intp) - 1
    g_run = np.arange(tagged.shape[0], dtype=np.intp) - p_run - 1  # starts seen so far that are the GT's
    both = tagged >> 1
    # Where both maps start a run at one position, keep the later entry: its counts include both.
    last = np.empty(both.shape[0], dtype=bool)
    last[-1] = True
    np.not_equal(both[1:], both[:-1], out=last[:-1])
    keep = np.flatnonzero(last)
    joint = both[keep]
    key = gt.values[g_run[keep]].astype(np.int64) * cols
    key += pred.values[p_run[keep]]
    lengths = np.diff(joint, append=gt.size)
    # float64 weights are exact: a count never exceeds H * W < 2**53.
    counts = np.bincount(key, weights=lengths, minlength=(n_gt + 1) * cols)
    return counts.astype(np.int64).reshape(n_gt + 1, cols)


@dataclass
class ImageSegments:
    """Per-image segment attributes as dense arrays aligned with the indices.

    Attributes:
        category_index: ``(N,)`` int64 position of each segment's category in
            the accumulator's category list.
        iscrowd: ``(N,)`` bool (always False for predictions).
    """

    category_index: np.ndarray
    iscrowd: np.ndarray


def matched_pairs(
    conf: np.ndarray,
    gt_category: np.ndarray,
    pred_category: np.ndarray,
    gt_iscrowd: np.ndarray,
    gt_area: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matched (GT, prediction) pairs of one image: panoptic quality's rule.

    A pair matches when the GT segment is not crowd, both have the same
    category and their IoU is above 0.5, with the predicted pixels on VOID
    left out of the union. IoU > 0.5 makes every match unique.

    Args:
        conf: ``(N_gt + 1, N_pred + 1)`` from :func:`confusion_matrix`.
        gt_category, pred_category: ``(N_gt,)`` and ``(N_pred,)`` categories
            (ids or indices: only equality is used).
        gt_iscrowd: ``(N_gt,)`` bool.
        gt_area: ``(N_gt,)`` areas to use in the union instead of the pixel
            counts (panopticapi reads them from the JSON).

    Returns:
        ``(gt_index, pred_index, iou)``: ``(M,)`` int64, int64, float64.
    """
    inter = conf[1:, 1:]
    pred_area = conf[:, 1:].sum(axis=0)
    if gt_area is None:
        gt_area = conf[1:, :].sum(axis=1)
    pred_on_void = conf[0, 1:]
    cand = (inter > 0) & (gt_category[:, None] == pred_category[None, :]) & ~gt_iscrowd[:, None]
    gi, pj = np.nonzero(cand)
    i_vals = inter[gi, pj]
    union = pred_area[pj] + gt_area[gi] - i_vals - pred_on_void[pj]
    with np.errstate(divide="ignore", invalid="ignore"):
        ious = i_vals / union
    ok = ious > 0.5
    return gi[ok], pj[ok], ious[ok]


def pq_matches(
    conf: np.ndarray,
    gt: ImageSegments,
    pred: ImageSegments,
    n_categories: int,
    gt_area: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PQ's matching of one image: :func:`matched_pairs` and :func:`ignored_predictions` together.

    Returns:
        ``(gt_index, pred_index, iou, ignored)``: the matched pairs and their
        IoUs, and the ``(N_pred,)`` bool predictions that can never be false
        positives. :func:`match_image` and the other metrics
        (:mod:`pss_bench.metrics.variants`) share it.
    """
    gi, pj, ious = matched_pairs(conf, gt.category_index, pred.category_index, gt.iscrowd, gt_area)
    return gi, pj, ious, ignored_predictions(conf, gt, pred, n_categories)


def match_image(
    conf: np.ndarray,
    gt: ImageSegments,
    pred: ImageSegments,
    n_categories: int,
    gt_area: np.ndarray | None = None,
    matches: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PQ statistics of one image from its confusion matrix.

    Args:
        conf: ``(N_gt + 1, N_pred + 1)`` from :func:`confusion_matrix`.
        gt: GT segment attributes, ``N_gt`` long.
        pred: prediction attributes, ``N_pred`` long.
        n_categories: length of the returned arrays.
        gt_area: ``(N_gt,)`` areas to use in the union instead of the pixel
            counts (panopticapi reads them from the JSON).
        matches: :func:`pq_matches` of the same arguments, when the caller
            has it already.

    Returns:
        ``(iou, tp, fp, fn)``: ``(C,)`` float64 IoU sums and int64 counts.
    """
    gcat, pcat = gt.category_index, pred.category_index
    gi, pj, ious, ignored = matches if matches is not None else pq_matches(conf, gt, pred, n_categories, gt_area)

    iou_sum = np.bincount(gcat[gi], weights=ious, minlength=n_categories)
    tp = np.bincount(gcat[gi], minlength=n_categories)

    gt_matched = np.zeros(gcat.shape[0], dtype=bool)
    gt_matched[gi] = True
    pred_matched = np.zeros(pcat.shape[0], dtype=bool)
    pred_matched[pj] = True

    fn = np.bincount(gcat[~gt_matched & ~gt.iscrowd], minlength=n_categories)
    fp = np.bincount(pcat[~pred_matched & ~ignored], minlength=n_categories)
    return iou_sum, tp.astype(np.int64), fp.astype(np.int64), fn.astype(np.int64)


def ignored_predictions(conf: np.ndarray, gt: ImageSegments, pred: ImageSegments, n_categories: int) -> np.ndarray:
    """Which predictions can never be false positives: panopticapi's VOID / crowd rule.

    A prediction is ignored when strictly more than half of its pixels lie on
    GT VOID plus the GT crowd segment of its category (the last crowd segment
    of that category in ``segments_info`` order).

    Returns:
        ``(N_pred,)`` bool.
    """
    inter = conf[1:, 1:]
    pred_area = conf[:, 1:].sum(axis=0)
    gcat, pcat = gt.category_index, pred.category_index
    crowd_of_cat = np.full(n_categories, -1, dtype=np.int64)
    for i in np.flatnonzero(gt.iscrowd):  # the last crowd segment of a category wins
        crowd_of_cat[gcat[i]] = i
    ignored_px = conf[0, 1:].astype(np.int64).copy()
    crowd = crowd_of_cat[pcat]
    cols = np.flatnonzero(crowd >= 0)
    ignored_px[cols] += inter[crowd[cols], cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        return ignored_px / pred_area > 0.5


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PQImageStats:
    """The PQ statistics of every image apart: what the bootstrap resamples.

    Summing over the image axis gives the accumulator's statistics, so
    images can be resampled without matching segments again.

    Attributes:
        categories: the class axis.
        image_ids: the images, in evaluation order.
        iou: ``(n_images, C)`` float64 IoU sums of the matches.
        tp, fp, fn: ``(n_images, C)`` int64 counts.
    """

    categories: tuple[Category, ...]
    image_ids: tuple
    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    def __len__(self) -> int:
        return int(self.iou.shape[0])

    @classmethod
    def from_images(cls, categories: Sequence[Category], image_ids: Sequence,
                    stats: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> "PQImageStats":
        """From one :func:`match_image` tuple ``(iou, tp, fp, fn)`` per image."""
        c = len(categories)
        parts = [np.array([s[j] for s in stats], dtype=np.float64 if j == 0 else np.int64).reshape(-1, c)
                 for j in range(4)]
        return cls(tuple(categories), tuple(image_ids), *parts)

    def total(self) -> "PQStats":
        """The summed statistics."""
        return PQStats(self.categories, self.iou.sum(axis=0), self.tp.sum(axis=0), self.fp.sum(axis=0),
                       self.fn.sum(axis=0))


@dataclass
class PQStats:
    """Summable PQ statistics per category (the accumulator state).

    ``a += b`` merges images, workers, shards or ranks; :meth:`compute` turns
    the sums into scores.
    """

    categories: tuple[Category, ...]
    iou: np.ndarray = field(default=None)  # type: ignore[assignment]
    tp: np.ndarray = field(default=None)  # type: ignore[assignment]
    fp: np.ndarray = field(default=None)  # type: ignore[assignment]
    fn: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.categories = tuple(self.categories)
        c = len(self.categories)
        if self.iou is None:
            self.iou = np.zeros(c, dtype=np.float64)
        for name in ("tp", "fp", "fn"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(c, dtype=np.int64))

    def add(self, iou: np.ndarray, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> None:
        """Adds one image's statistics (arrays from :func:`match_image`)."""
        self.iou += iou
        self.tp += tp
        self.fp += fp
        self.fn += fn

    def __iadd__(self, other: "PQStats") -> "PQStats":
        if other.categories != self.categories:
            raise ValueError("cannot add PQ statistics over different category lists")
        self.add(other.iou, other.tp, other.fp, other.fn)
        return self

    def __add__(self, other: "PQStats") -> "PQStats":
        out = PQStats(self.categories, self.iou.copy(), self.tp.copy(), self.fp.copy(), self.fn.copy())
        out += other
        return out

    def to_array(self) -> np.ndarray:
        """``(4, C)`` float64 packing, exact for counts below 2**53 (for all-reduce)."""
        return np.stack([self.iou, self.tp, self.fp, self.fn]).astype(np.float64)

    @classmethod
    def from_array(cls, categories: Sequence[Category], arr: np.ndarray) -> "PQStats":
        arr = np.asarray(arr, dtype=np.float64)
        counts = np.rint(arr[1:]).astype(np.int64)
        return cls(tuple(categories), arr[0].copy(), counts[0], counts[1], counts[2])

    def compute(self) -> PQResult:
        """Per-class scores and the All / Things / Stuff means, as panopticapi."""
        per_class: dict[int, PQClassResult] = {}
        for k, cat in enumerate(self.categories):
            iou, tp, fp, fn = float(self.iou[k]), int(self.tp[k]), int(self.fp[k]), int(self.fn[k])
            if tp + fp + fn == 0:
                per_class[cat.id] = PQClassResult(0.0, 0.0, 0.0, 0, 0, 0, 0.0)
                continue
            denom = tp + 0.5 * fp + 0.5 * fn
            per_class[cat.id] = PQClassResult(
                pq=iou / denom, sq=iou / tp if tp else 0.0, rq=tp / denom, tp=tp, fp=fp, fn=fn, iou=iou
            )

        def row(isthing: bool | None) -> PQRow | None:
            pq = sq = rq = 0.0
            n = 0
            for cat in self.categories:
                if isthing is not None and cat.isthing != isthing:
                    continue
                r = per_class[cat.id]
                if not r.present:
                    continue
                n += 1
                pq += r.pq
                sq += r.sq
                rq += r.rq
            return PQRow(pq / n, sq / n, rq / n, n) if n else None

        cats = {c.id: c for c in self.categories}
        return PQResult(row(None), row(True), row(False), per_class, cats)


# --------------------------------------------------------------------------- streaming


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _is_batch_of_segment_lists(segs) -> bool:
    """Whether ``segs`` is a list of per-image segment lists (not one image's list of dicts)."""
    if isinstance(segs, Segments) or not isinstance(segs, (list, tuple)):
        return False
    return len(segs) > 0 and all(isinstance(s, (Segments, list, tuple)) for s in segs)


def _as_segments(segs, image_id=None, role: str = "gt") -> Segments:
    if isinstance(segs, Segments):
        return segs
    if not isinstance(segs, (str, bytes, Mapping)) and hasattr(segs, "__iter__"):
        segs = list(segs)
    if not isinstance(segs, list):
        raise PssBenchError(f"image {image_id!r}: {role} segments must be Segments or a list of dicts, "
                            f"found {type(segs).__name__}")
    for i, r in enumerate(segs):
        if not isinstance(r, Mapping):
            raise PssBenchError(f"image {image_id!r}: {role} segment list item {i} is a {type(r).__name__}, "
                                f"not a {{'id', 'category_id'}} dict")
        for key in ("id", "category_id"):
            v = r.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise PssBenchError(f"image {image_id!r}: {role} segment list item {i} has no integer {key!r}")
    return Segments.from_records(segs)


def _as_category(c, i: int) -> Category:
    """A :class:`Category` from itself or from a COCO ``{"id", "name", "isthing"}`` dict."""
    if isinstance(c, Category):
        return c
    if not isinstance(c, Mapping):
        raise PssBenchError(f"categories[{i}]: expected a Category or a COCO category dict, found {type(c).__name__}")
    cid = c.get("id")
    if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)):
        raise PssBenchError(f"categories[{i}]: no integer 'id' (found {type(cid).__name__})")
    isthing = c.get("isthing", 0)
    if isthing not in (0, 1, True, False):
        raise PssBenchError(f"categories[{i}] (id {int(cid)}): 'isthing' must be 0 or 1")
    return Category(id=int(cid), name=str(c.get("name", cid)), isthing=bool(isthing))


class PanopticQuality:
    """Streaming PQ over in-memory id maps, e.g. inside a training loop.

    Example::

        metric = PanopticQuality(categories)
        for gt_ids, gt_segs, pred_ids, pred_segs in batches:
            metric.update(gt_ids, gt_segs, pred_ids, pred_segs)
        metric.all_reduce()           # under torch.distributed
        result = metric.compute()

    Id maps are ``(H, W)`` integer numpy arrays or torch tensors (any device);
    segment lists are :class:`~pss_bench.structures.Segments` or lists of
    ``{"id", "category_id", "iscrowd"}`` dicts. GT areas are the pixel counts.
    """

    def __init__(self, categories: Iterable[Category | Mapping] | Mapping[int, Category | Mapping], *,
                 metrics: str | Sequence[str] | None = None, dilation_ratio: float = 0.02,
                 pc_normalize: bool = True) -> None:
        """
        Args:
            categories: :class:`~pss_bench.structures.Category` objects or raw COCO
                category dicts (``{"id", "name", "isthing"}``, e.g. a GT JSON's
                ``categories``), as a sequence or a mapping by id.
            metrics: names of :data:`~pss_bench.metrics.variants.METRIC_NAMES`
                or ``"all"``: the metrics besides PQ land in
                ``compute().variants`` (PQ itself is always computed).
            dilation_ratio: Boundary PQ's ratio of the image diagonal.
            pc_normalize: Parsing Covering's ``normalize_by_image_size``.

        Raises:
            PssBenchError: a category dict without an integer ``id`` or with a
                bad ``isthing``, an id listed twice, or an unknown metric.
        """
        from pss_bench.metrics.variants import VariantSettings, parse_metrics  # (it imports this module)

        settings = VariantSettings(parse_metrics(metrics), dilation_ratio, pc_normalize)
        self.settings = settings if settings.any else None
        if isinstance(categories, Mapping):
            categories = categories.values()
        self.categories = tuple(_as_category(c, i) for i, c in enumerate(categories))
        self._cat_index = {c.id: i for i, c in enumerate(self.categories)}
        if len(self._cat_index) != len(self.categories):
            raise PssBenchError("categories: a category id is listed twice")
        self.reset()

    def reset(self) -> None:
        self._local = PQStats(self.categories)
        self.stats = self._local
        self._local_variants = None
        if self.settings is not None:
            from pss_bench.metrics.variants import VariantStats

            self._local_variants = VariantStats.zeros(self.categories, self.settings)
        self.variant_stats = self._local_variants

    def _add(self, stats) -> None:
        pq, extra = stats
        self._local.add(*pq)
        if extra is not None:
            self._local_variants += extra

    def _category_index(self, segs: Segments, role: str, image_id) -> np.ndarray:
        out = np.empty(len(segs), dtype=np.int64)
        for i, (sid, cid) in enumerate(zip(segs.ids.tolist(), segs.category_ids.tolist())):
            k = self._cat_index.get(cid)
            if k is None:
                raise PssBenchError(f"image {image_id!r}, {role} segment {sid}: unknown category_id {cid}")
            out[i] = k
        return out

    def update(self, gt_ids, gt_segments, pred_ids, pred_segments, *, image_id=None) -> None:
        """Adds one image, or a batch of images.

        Args:
            gt_ids, pred_ids: ``(H, W)`` integer id maps of one image, or
                ``(B, H, W)`` batches (numpy or torch, any device).
            gt_segments, pred_segments: for one image, its segment list
                (:class:`~pss_bench.structures.Segments` or ``{"id", "category_id",
                "iscrowd"}`` dicts); for a batch, a list of ``B`` such lists.
            image_id: names the image in error messages (for a batch: a list
                of ``B`` ids, or ``None``).

        Raises:
            PssBenchError: sizes differ, a batch without one segment list per
                image, an id is undeclared, or a category is unknown. Nothing is
                added when a batch is refused.
        """
        gt_map, pred_map = _to_numpy(gt_ids), _to_numpy(pred_ids)
        if gt_map.shape != pred_map.shape:
            raise PssBenchError(f"image {image_id!r}: prediction size {pred_map.shape} differs from GT size {gt_map.shape}")
        if gt_map.ndim == 2:
            for role, segs in (("gt", gt_segments), ("prediction", pred_segments)):
                if _is_batch_of_segment_lists(segs):
                    raise PssBenchError(
                        f"image {image_id!r}: a single (H, W) id map takes one segment list, found a list of "
                        f"{len(segs)} {role} segment lists (pass (B, H, W) id maps for a batch)"
                    )
            self._add(self._image_stats(gt_map, gt_segments, pred_map, pred_segments, image_id))
        elif gt_map.ndim == 3:
            b = gt_map.shape[0]
            ids = list(image_id) if isinstance(image_id, (list, tuple)) else [None] * b
            if len(ids) != b:
                raise PssBenchError(f"batch of {b} id maps but {len(ids)} image ids")
            for role, segs in (("gt", gt_segments), ("prediction", pred_segments)):
                if b == 0 and isinstance(segs, (list, tuple)) and not segs:
                    continue
                if not _is_batch_of_segment_lists(segs):
                    raise PssBenchError(
                        f"batch of {b} id maps {gt_map.shape}: {role} segments must be a list with one segment "
                        f"list per image (one flat list would merge the images' segments)"
                    )
                if len(segs) != b:
                    raise PssBenchError(f"batch of {b} id maps but {len(segs)} {role} segment lists")
            per_image = [
                self._image_stats(gt_map[i], gt_segments[i], pred_map[i], pred_segments[i],
                                  ids[i] if ids[i] is not None else f"batch item {i}")
                for i in range(b)
            ]
            for st in per_image:
                self._add(st)
        else:
            raise PssBenchError(f"image {image_id!r}: id maps must be (H, W) or (B, H, W), found shape {gt_map.shape}")
        self.stats = self._local  # a later all_reduce() sums these again, once
        self.variant_stats = self._local_variants

    def _image_stats(self, gt_map: np.ndarray, gt_segments, pred_map: np.ndarray, pred_segments, image_id):
        """``(iou, tp, fp, fn)`` of one image (arrays from :func:`match_image`)."""
        gsegs, psegs = _as_segments(gt_segments, image_id, "gt"), _as_segments(pred_segments, image_id, "prediction")
        for role, segs in (("gt", gsegs), ("prediction", psegs)):
            if (segs.ids == 0).any():
                raise PssBenchError(f"image {image_id!r}, {role} segment 0: id 0 is reserved for VOID")
            if np.unique(segs.ids).size != len(segs):
                raise PssBenchError(f"image {image_id!r}: duplicated {role} segment ids")
        indexer = thread_indexer()
        dense = []
        for role, m, segs in (("gt", gt_map, gsegs), ("prediction", pred_map, psegs)):
            try:
                dense.append(indexer(m, segs.ids))
            except UnknownSegmentError as exc:
                raise PssBenchError(
                    f"image {image_id!r}, {role} segment {int(exc.unknown_ids[0])}: in the id map but not in the segment list"
                ) from None
        conf = confusion_matrix(dense[0], dense[1], len(gsegs), len(psegs))
        gt = ImageSegments(self._category_index(gsegs, "gt", image_id), gsegs.iscrowd.astype(bool))
        pred = ImageSegments(self._category_index(psegs, "prediction", image_id), np.zeros(len(psegs), bool))
        pq = match_image(conf, gt, pred, len(self.categories))
        if self.settings is None:
            return pq, None
        from pss_bench.metrics.boundary import dilation_pixels
        from pss_bench.metrics.variants import boundary_confusion, image_variant_stats

        bconf = None
        if self.settings.wants("boundary-pq"):
            d = dilation_pixels(gt_map.shape[0], gt_map.shape[1], self.settings.dilation_ratio)
            bconf = boundary_confusion(dense[0], dense[1], len(gsegs), len(psegs), d)
        return pq, image_variant_stats(self.settings, self.categories, conf, gt, pred, boundary_conf=bconf)

    def __iadd__(self, other: "PanopticQuality") -> "PanopticQuality":
        if other.settings != self.settings:
            raise PssBenchError("cannot add PanopticQuality metrics with different metrics or settings")
        self._local += other._local
        self.stats = self._local
        if self._local_variants is not None:
            self._local_variants += other._local_variants
        self.variant_stats = self._local_variants
        return self

    def all_reduce(self, group=None) -> None:
        """Sums the statistics over all ranks of a ``torch.distributed`` group.

        Idempotent: every call sums what each rank itself added (not an earlier
        sum), so a second call gives the same totals. :meth:`compute` uses the
        sum until the next :meth:`update`; call ``all_reduce()`` again after it.

        Raises:
            PssBenchError: ``torch.distributed`` is not initialised.
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise PssBenchError(
                "PanopticQuality.all_reduce(): torch.distributed is not initialised "
                "(call torch.distributed.init_process_group first, or skip the reduce in a single process)"
            )
        arr = self._local.to_array()
        if self._local_variants is not None:
            arr = np.concatenate([arr, self._local_variants.to_array()])
        t = torch.from_numpy(arr)
        if dist.get_backend(group) == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        total = t.cpu().numpy()
        self.stats = PQStats.from_array(self.categories, total[:4])
        if self._local_variants is not None:
            from pss_bench.metrics.variants import VariantStats

            self.variant_stats = VariantStats.from_array(self.categories, self.settings, total[4:])

    def compute(self) -> PQResult:
        """PQ, and in ``variants`` the other metrics asked for."""
        result = self.stats.compute()
        if self.variant_stats is not None:
            import dataclasses

            result = dataclasses.replace(result, variants=self.variant_stats.compute())
        return result
