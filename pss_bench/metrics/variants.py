"""The panoptic metrics papers report beside PQ, from the same confusion matrices.

* **Boundary PQ** (Cheng et al., CVPR 2021, as boundary-iou-api's
  ``coco_panoptic_api/evaluation.py`` computes it with ``iou_type="boundary"``):
  PQ where a pair's IoU is ``min(mask IoU, boundary IoU)``, both in the > 0.5
  test and in the SQ sum. The boundary IoU comes from a second confusion
  matrix, of the boundary maps (:mod:`pss_bench.metrics.boundary`); its union
  leaves out the predicted boundary on GT VOID. False positives keep PQ's
  mask-based VOID / crowd rule.
* **PQ†** (Porzi et al., CVPR 2019): things keep PQ; a stuff class scores the
  sum over its non-crowd GT segments of the IoU (when > 0) with the union of
  the image's predicted segments of the class, divided by the number of
  those GT segments; no false positives for stuff.
* **Parsing Covering** (Yang et al., DeeperLab 2019; tf-models
  ``research/deeplab/evaluation/parsing_covering.py``): per class,
  ``Σ |R| max IoU(R, R') / Σ |R|`` over GT regions ``R`` and same-class
  predicted regions ``R'``, areas divided by the image size when normalised;
  GT VOID and crowd pixels are left out of every area.
* **PQ by object size** (COCO's 32² and 96² pixel thresholds): matches and
  misses count in the range of the GT segment's area, unmatched predictions
  in the range of their own.

Every metric keeps summable per-class statistics (:class:`VariantStats`),
so images, workers and ranks merge by addition. Pure array code: no files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from pss_bench.errors import PssBenchError
from pss_bench.metrics.boundary import DEFAULT_DILATION_RATIO, boundary_labels, dilation_pixels
from pss_bench.metrics.pq import (
    ImageSegments,
    PQStats,
    Runs,
    confusion_from_runs,
    confusion_matrix,
    pq_matches,
    run_starts,
)
from pss_bench.metrics.results import (
    BoundaryPQResult,
    PCResult,
    PQAreaResult,
    PQDaggerResult,
    PQDaggerRow,
    VariantResult,
)
from pss_bench.structures import Category

#: Every metric name ``--metrics`` takes, in report order.
METRIC_NAMES = ("pq", "boundary-pq", "pq-dagger", "pc", "pq-area")
#: COCO's area ranges in pixels, ``[low, high)``; ``None``: no upper bound.
AREA_RANGES: tuple[tuple[int, int | None], ...] = ((0, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, None))
AREA_NAMES = ("small", "medium", "large")


def parse_metrics(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Metric names from ``"pq,boundary-pq"``, ``"all"`` or a list, in :data:`METRIC_NAMES` order.

    Raises:
        PssBenchError: an unknown name, or an empty list.
    """
    if spec is None:
        return ("pq",)
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    if not names:
        raise PssBenchError(f"no metric named; choose from {', '.join(METRIC_NAMES)} or 'all'")
    if "all" in names:
        return METRIC_NAMES
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise PssBenchError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRIC_NAMES)} or 'all'")
    return tuple(n for n in METRIC_NAMES if n in names)


@dataclass(frozen=True)
class VariantSettings:
    """Which metrics besides PQ, and their parameters.

    Attributes:
        metrics: names from :data:`METRIC_NAMES` (``"pq"`` may be among them;
            it is computed by :mod:`pss_bench.metrics.pq`, not here).
        dilation_ratio: Boundary PQ's ratio of the image diagonal.
        pc_normalize: Parsing Covering's ``normalize_by_image_size``.
    """

    metrics: tuple[str, ...] = ("pq",)
    dilation_ratio: float = DEFAULT_DILATION_RATIO
    pc_normalize: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", parse_metrics(self.metrics))
        try:
            dilation_pixels(1, 1, self.dilation_ratio)  # refuses a bad ratio here, not per image
        except (TypeError, ValueError):
            raise PssBenchError(f"dilation ratio must be a positive number, found {self.dilation_ratio!r}") from None

    def wants(self, name: str) -> bool:
        return name in self.metrics

    @property
    def any(self) -> bool:
        """Whether any metric besides PQ is asked for."""
        return any(m != "pq" for m in self.metrics)


# --------------------------------------------------------------------------- boundaries


def boundary_runs(runs: Runs, height: int, width: int, n_segments: int, d: int) -> Runs:
    """The runs of a dense index map reduced to its segment boundaries.

    Args:
        runs: dense-index runs (0 = VOID, ``1 .. n_segments``) of an
            ``height x width`` map.
        d: the erosion radius.

    Returns:
        Runs whose values are 0 (VOID), ``1 .. n_segments`` (boundary of that
        segment) and ``n_segments + 1`` (any segment's interior).
    """
    if runs.size == 0:
        return runs
    starts = runs.starts.astype(np.int64, copy=False)
    lengths = np.diff(starts, append=runs.size)
    dtype = np.uint8 if n_segments + 1 < 1 << 8 else (np.uint16 if n_segments + 1 < 1 << 16 else np.uint32)
    labels = np.repeat(runs.values.astype(dtype, copy=False), lengths).reshape(height, width)
    flat = boundary_labels(labels, d, n_segments + 1).reshape(-1)
    s = run_starts(flat)
    return Runs(s, flat[s], runs.size)


def boundary_confusion(gt_dense: np.ndarray, pred_dense: np.ndarray, n_gt: int, n_pred: int, d: int) -> np.ndarray:
    """The confusion matrix of the boundary maps of two dense index maps.

    Args:
        gt_dense, pred_dense: ``(H, W)`` dense indices (0 = VOID).
        d: the erosion radius (:func:`~pss_bench.metrics.boundary.dilation_pixels`).

    Returns:
        ``(n_gt + 2, n_pred + 2)`` int64: row / column 0 is VOID, ``1 .. n``
        a segment's boundary, the last one every segment's interior.
    """
    gb = boundary_labels(np.asarray(gt_dense), d, n_gt + 1)
    pb = boundary_labels(np.asarray(pred_dense), d, n_pred + 1)
    return confusion_matrix(gb, pb, n_gt + 1, n_pred + 1)


def boundary_confusion_from_runs(gt_boundary: Runs, pred_boundary: Runs, n_gt: int, n_pred: int) -> np.ndarray:
    """As :func:`boundary_confusion`, from the runs of :func:`boundary_runs`."""
    return confusion_from_runs(gt_boundary, pred_boundary, n_gt + 1, n_pred + 1)


# --------------------------------------------------------------------------- statistics


def _zeros(categories) -> PQStats:
    return PQStats(tuple(categories))


@dataclass
class VariantStats:
    """Summable statistics of every asked metric (``None`` where not asked).

    Attributes:
        boundary: Boundary PQ's per-class IoU sums and counts.
        dagger: PQ†'s, with the stuff classes' IoU-above-0 sums in ``iou``
            and their non-crowd GT segment count in ``tp`` (``fp = fn = 0``),
            so that ``iou / (tp + fp/2 + fn/2)`` is PQ† for every class.
        pc_iou: ``(C,)`` float64 ``Σ |R| * max IoU`` (areas normalised by the
            image size when ``settings.pc_normalize``).
        pc_area: ``(C,)`` float64 ``Σ |R|``, likewise.
        area: one :class:`~pss_bench.metrics.pq.PQStats` per range of
            :data:`AREA_RANGES`.
    """

    categories: tuple[Category, ...]
    settings: VariantSettings
    boundary: PQStats | None = None
    dagger: PQStats | None = None
    pc_iou: np.ndarray | None = None
    pc_area: np.ndarray | None = None
    area: tuple[PQStats, ...] | None = field(default=None)

    @classmethod
    def zeros(cls, categories: Sequence[Category], settings: VariantSettings) -> "VariantStats":
        cats = tuple(categories)
        c = len(cats)
        return cls(
            cats, settings,
            boundary=_zeros(cats) if settings.wants("boundary-pq") else None,
            dagger=_zeros(cats) if settings.wants("pq-dagger") else None,
            pc_iou=np.zeros(c) if settings.wants("pc") else None,
            pc_area=np.zeros(c) if settings.wants("pc") else None,
            area=tuple(_zeros(cats) for _ in AREA_RANGES) if settings.wants("pq-area") else None,
        )

    def _parts(self) -> list[PQStats]:
        parts = [p for p in (self.boundary, self.dagger) if p is not None]
        return parts + list(self.area or ())

    def __iadd__(self, other: "VariantStats") -> "VariantStats":
        if other.categories != self.categories or other.settings != self.settings:
            raise ValueError("cannot add metric statistics over different categories or settings")
        for a, b in zip(self._parts(), other._parts()):
            a += b
        if self.pc_iou is not None:
            self.pc_iou += other.pc_iou
            self.pc_area += other.pc_area
        return self

    def copy(self) -> "VariantStats":
        return VariantStats.from_array(self.categories, self.settings, self.to_array())

    def to_array(self) -> np.ndarray:
        """``(K, C)`` float64 packing of every state (for all-reduce); exact for counts below 2**53."""
        rows = [p.to_array() for p in self._parts()]
        if self.pc_iou is not None:
            rows.append(np.stack([self.pc_iou, self.pc_area]))
        if not rows:
            return np.zeros((0, len(self.categories)))
        return np.concatenate(rows).astype(np.float64)

    @classmethod
    def from_array(cls, categories: Sequence[Category], settings: VariantSettings, arr: np.ndarray) -> "VariantStats":
        out = cls.zeros(categories, settings)
        arr = np.asarray(arr, dtype=np.float64)
        k = 0
        parts = []
        for _ in out._parts():
            parts.append(PQStats.from_array(out.categories, arr[k: k + 4]))
            k += 4
        it = iter(parts)
        if out.boundary is not None:
            out.boundary = next(it)
        if out.dagger is not None:
            out.dagger = next(it)
        if out.area is not None:
            out.area = tuple(next(it) for _ in AREA_RANGES)
        if out.pc_iou is not None:
            out.pc_iou, out.pc_area = arr[k].copy(), arr[k + 1].copy()
            k += 2
        if k != arr.shape[0]:
            raise ValueError(f"{arr.shape[0]} rows for {k} expected")
        return out

    def compute(self) -> VariantResult:
        """The scores of every asked metric."""
        cats = self.categories
        out: dict = {}
        if self.boundary is not None:
            out["boundary_pq"] = BoundaryPQResult(self.boundary.compute(), float(self.settings.dilation_ratio))
        if self.dagger is not None:
            out["pq_dagger"] = _dagger_result(self.dagger)
        if self.pc_iou is not None:
            per_class = {}
            valid = {}
            for k, c in enumerate(cats):
                a = float(self.pc_area[k])
                v = float(self.pc_iou[k]) / a if a != 0 else 0.0
                per_class[c.id] = v
                if a != 0:
                    valid[c.id] = v
            pc = float(np.mean(list(valid.values()))) if valid else None
            out["pc"] = PCResult(pc, len(valid), per_class, bool(self.settings.pc_normalize), frozenset(valid))
        if self.area is not None:
            out["pq_area"] = PQAreaResult(*(s.compute() for s in self.area), ranges=AREA_RANGES)
        return VariantResult(**out)


def _dagger_result(stats: PQStats) -> PQDaggerResult:
    res = stats.compute()
    per_class = {cid: r.pq for cid, r in res.per_class.items()}
    counted = frozenset(cid for cid, r in res.per_class.items() if r.present)

    def row(isthing: bool | None) -> PQDaggerRow | None:
        vals = [per_class[c.id] for c in stats.categories
                if c.id in counted and (isthing is None or c.isthing == isthing)]
        return PQDaggerRow(sum(vals) / len(vals), len(vals)) if vals else None

    return PQDaggerResult(row(None), row(True), row(False), per_class, counted)


# --------------------------------------------------------------------------- one image


def _tally(gcat, pcat, gt_crowd, gi, pj, ious, ignored, n_cat: int,
           gt_bin: np.ndarray | None = None, pred_bin: np.ndarray | None = None, n_bins: int = 1):
    """``(iou, tp, fp, fn)`` of ``(n_bins, C)`` from matched pairs: PQ's counting rules."""
    if gt_bin is None:
        gt_bin = np.zeros(gcat.shape[0], dtype=np.int64)
    if pred_bin is None:
        pred_bin = np.zeros(pcat.shape[0], dtype=np.int64)
    size = n_bins * n_cat
    gkey = gt_bin * n_cat + gcat
    pkey = pred_bin * n_cat + pcat
    iou = np.bincount(gkey[gi], weights=ious, minlength=size).astype(np.float64)
    tp = np.bincount(gkey[gi], minlength=size)
    gm = np.zeros(gcat.shape[0], dtype=bool)
    gm[gi] = True
    pm = np.zeros(pcat.shape[0], dtype=bool)
    pm[pj] = True
    fn = np.bincount(gkey[~gm & ~gt_crowd], minlength=size)
    fp = np.bincount(pkey[~pm & ~ignored], minlength=size)
    shape = (n_bins, n_cat)
    return (iou.reshape(shape), tp.astype(np.int64).reshape(shape), fp.astype(np.int64).reshape(shape),
            fn.astype(np.int64).reshape(shape))


def boundary_matches(conf: np.ndarray, bconf: np.ndarray, gt: ImageSegments, pred: ImageSegments,
                     gt_area: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boundary PQ's matched pairs: ``min(mask IoU, boundary IoU) > 0.5``.

    Args:
        conf: ``(N_gt + 1, N_pred + 1)`` mask confusion matrix.
        bconf: ``(N_gt + 2, N_pred + 2)`` boundary confusion matrix
            (:func:`boundary_confusion`).
        gt_area: the GT areas of the mask union (default: pixel counts).

    Returns:
        ``(gt_index, pred_index, iou)`` with ``iou = min(mask, boundary)``.
    """
    n_gt, n_pred = conf.shape[0] - 1, conf.shape[1] - 1
    if bconf.shape != (n_gt + 2, n_pred + 2):
        raise ValueError(f"boundary confusion {bconf.shape} does not fit a {conf.shape} mask confusion")
    inter = conf[1:, 1:]
    pred_area = conf[:, 1:].sum(axis=0)
    if gt_area is None:
        gt_area = conf[1:, :].sum(axis=1)
    cand = (inter > 0) & (gt.category_index[:, None] == pred.category_index[None, :]) & ~gt.iscrowd[:, None]
    gi, pj = np.nonzero(cand)
    i_m = inter[gi, pj]
    mask_iou = i_m / (pred_area[pj] + gt_area[gi] - i_m - conf[0, 1:][pj])
    b_inter = bconf[1:n_gt + 1, 1:n_pred + 1][gi, pj]
    gb = bconf[1:n_gt + 1, :].sum(axis=1)
    pb = bconf[:, 1:n_pred + 1].sum(axis=0)
    b_union = pb[pj] + gb[gi] - b_inter - bconf[0, 1:n_pred + 1][pj]
    with np.errstate(divide="ignore", invalid="ignore"):
        b_iou = b_inter / b_union
    iou = np.minimum(mask_iou, b_iou)
    ok = iou > 0.5
    return gi[ok], pj[ok], iou[ok]


def area_bin(area: np.ndarray) -> np.ndarray:
    """Index into :data:`AREA_RANGES` of each area (``[low, high)``)."""
    edges = np.array([r[1] for r in AREA_RANGES[:-1]], dtype=np.float64)
    return np.searchsorted(edges, np.asarray(area, dtype=np.float64), side="right").astype(np.int64)


def parsing_covering_image(conf: np.ndarray, gt: ImageSegments, pred: ImageSegments, n_categories: int,
                           image_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One image's Parsing Covering sums, tf-models' ``compare_and_accumulate``.

    GT VOID (row 0) and GT crowd segments are ignored: their pixels count in
    no area, so a predicted region's area is its pixels on the other GT
    segments. Predicted VOID (column 0) is no region. A GT region's IoU with
    a same-class predicted region is ``|R ∩ R'| / (|R| + |R'| - |R ∩ R'|)``.

    Args:
        image_size: ``H * W`` to divide the areas by (``normalize_by_image_size``),
            or ``None``.

    Returns:
        ``(weighted_iou, gt_area)``: ``(C,)`` float64 sums.
    """
    keep = ~gt.iscrowd
    rows = conf[1:][keep]  # (G, N_pred + 1) the kept GT regions
    gcat = gt.category_index[keep]
    g_area = rows.sum(axis=1).astype(np.float64)
    p_area = rows[:, 1:].sum(axis=0).astype(np.float64)
    inter = rows[:, 1:]
    cand = (inter > 0) & (gcat[:, None] == pred.category_index[None, :])
    gi, pj = np.nonzero(cand)
    i = inter[gi, pj].astype(np.float64)
    ious = i / (g_area[gi] + p_area[pj] - i)
    best = np.zeros(gcat.shape[0])
    np.maximum.at(best, gi, ious)
    if image_size is not None:
        g_area = g_area / image_size
    weighted = np.bincount(gcat, weights=best * g_area, minlength=n_categories)
    area = np.bincount(gcat, weights=g_area, minlength=n_categories)
    return weighted, area


def image_variant_stats(
    settings: VariantSettings,
    categories: Sequence[Category],
    conf: np.ndarray,
    gt: ImageSegments,
    pred: ImageSegments,
    *,
    gt_area: np.ndarray | None = None,
    boundary_conf: np.ndarray | None = None,
    matches: tuple | None = None,
) -> VariantStats:
    """Every asked metric's statistics of one image.

    Args:
        settings: the metrics and their parameters.
        categories: the class axis (``gt`` / ``pred`` category indices point into it).
        conf: ``(N_gt + 1, N_pred + 1)`` confusion matrix of the id maps.
        gt, pred: segment attributes.
        gt_area: ``(N_gt,)`` GT areas for the PQ unions (panopticapi's JSON
            areas under ``--trust-gt-area``); default the pixel counts.
        boundary_conf: ``(N_gt + 2, N_pred + 2)`` from :func:`boundary_confusion`,
            needed for Boundary PQ.
        matches: :func:`~pss_bench.metrics.pq.pq_matches` of the image when
            the caller computed it for PQ (else computed here).

    Returns:
        One image's :class:`VariantStats`.
    """
    cats = tuple(categories)
    c = len(cats)
    out = VariantStats.zeros(cats, settings)
    gcat, pcat = gt.category_index, pred.category_index
    gcrowd = gt.iscrowd.astype(bool)
    image_size = int(conf.sum())
    if out.dagger is not None or out.area is not None or out.boundary is not None:
        gi, pj, ious, ignored = matches if matches is not None else pq_matches(conf, gt, pred, c, gt_area)
    if out.boundary is not None:
        if boundary_conf is None:
            raise ValueError("Boundary PQ needs the boundary confusion matrix")
        bgi, bpj, bious = boundary_matches(conf, boundary_conf, gt, pred, gt_area)
        out.boundary.add(*(a[0] for a in _tally(gcat, pcat, gcrowd, bgi, bpj, bious, ignored, c)))
    if out.area is not None:
        g_area = gt_area if gt_area is not None else conf[1:, :].sum(axis=1)
        p_area = conf[:, 1:].sum(axis=0)
        parts = _tally(gcat, pcat, gcrowd, gi, pj, ious, ignored, c, area_bin(g_area), area_bin(p_area),
                       len(AREA_RANGES))
        for r, st in enumerate(out.area):
            st.add(*(a[r] for a in parts))
    if out.dagger is not None:
        iou, tp, fp, fn = (a[0] for a in _tally(gcat, pcat, gcrowd, gi, pj, ious, ignored, c))
        stuff = np.array([not cat.isthing for cat in cats], dtype=bool)
        iou[stuff] = 0.0
        tp[stuff] = fp[stuff] = fn[stuff] = 0
        # Stuff: each non-crowd GT segment against the union of the image's predictions of its class.
        sel = np.flatnonzero(stuff[gcat] & ~gcrowd)
        cs = gcat[sel]
        same = pcat[None, :] == cs[:, None]  # (S, N_pred): the predictions of each GT segment's class
        inter = (conf[sel + 1, 1:] * same).sum(axis=1)
        p_area = (conf[:, 1:].sum(axis=0) * same).sum(axis=1)
        p_void = (conf[0, 1:] * same).sum(axis=1)
        g_area = (gt_area if gt_area is not None else conf[1:, :].sum(axis=1))[sel]
        union = p_area + g_area - inter - p_void
        with np.errstate(divide="ignore", invalid="ignore"):
            s_iou = np.where(inter > 0, inter / np.where(inter > 0, union, 1), 0.0)
        iou += np.bincount(cs, weights=s_iou, minlength=c)
        tp += np.bincount(cs, minlength=c).astype(np.int64)
        out.dagger.add(iou, tp, fp, fn)
    if out.pc_iou is not None:
        w, a = parsing_covering_image(conf, gt, pred, c, image_size if settings.pc_normalize else None)
        out.pc_iou += w
        out.pc_area += a
    return out


# --------------------------------------------------------------------------- per image, for the bootstrap


class PackedVariantImages(Sequence):
    """Per-image :class:`VariantStats` kept as one ``(n_images, K, C)`` array of their :meth:`~VariantStats.to_array`.

    What :func:`~pss_bench.evaluation.pq.evaluate_pq` stores in
    :attr:`~pss_bench.metrics.results.PQResult.variant_images`: an image's
    :class:`VariantStats` is built when asked for (indexing, iterating), and
    :meth:`total` and :func:`variant_image_stats` read the array directly
    instead of building one object per image.
    """

    def __init__(self, categories: Sequence[Category], settings: VariantSettings, packed: np.ndarray) -> None:
        self.categories = tuple(categories)
        self.settings = settings
        self.packed = np.asarray(packed, dtype=np.float64)
        if self.packed.ndim != 3 or self.packed.shape[2] != len(self.categories):
            raise ValueError(f"packed statistics must be (images, rows, {len(self.categories)}), "
                             f"found {self.packed.shape}")

    def __len__(self) -> int:
        return self.packed.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return VariantStats.from_array(self.categories, self.settings, self.packed[i])

    def total(self) -> VariantStats:
        """The sum over the images, added one image after the other in their order (as ``+=`` of each would)."""
        acc = np.zeros(self.packed.shape[1:])
        for row in self.packed:
            acc += row
        return VariantStats.from_array(self.categories, self.settings, acc)


#: The keys of :func:`variant_image_stats`, in report order.
BOOTSTRAP_KEYS = {
    "boundary-pq": ("boundary_pq",),
    "pq-dagger": ("pq_dagger",),
    "pc": ("pc",),
    "pq-area": ("pq_area/small", "pq_area/medium", "pq_area/large"),
}


def variant_image_stats(per_image: Sequence[VariantStats], image_ids: Sequence) -> dict:
    """Each asked metric's per-image statistics in the shape the PQ bootstrap resamples.

    Every metric here is, per class, a ratio of sums over images that
    :func:`~pss_bench.metrics.bootstrap.bootstrap_pq` recomputes from its
    ``(iou, tp, fp, fn)`` resampled sums as ``iou / (tp + fp/2 + fn/2)``
    (a class counting when ``tp + fp + fn > 0``), then averages over classes:

    * Boundary PQ and each PQ-by-size range are PQ statistics;
    * PQ† keeps its stuff sums in ``iou`` and GT counts in ``tp`` (``fp = fn = 0``);
    * Parsing Covering puts ``Σ|R| max IoU`` in ``iou`` and ``Σ|R|`` (a float
      when normalised) in ``tp``, so the ratio is the class's covering and
      the class counts when it has GT area.

    Only the ``pq`` scores of the bootstrap are meaningful for PQ† and PC.

    Args:
        per_image: one :class:`VariantStats` per image, as
            :attr:`~pss_bench.metrics.results.PQResult.variant_images`.
        image_ids: the images, in the same order.

    Returns:
        ``{key: PQImageStats}`` with the keys of :data:`BOOTSTRAP_KEYS` of
        the asked metrics.
    """
    from pss_bench.metrics.pq import PQImageStats

    if not len(per_image):
        return {}
    if isinstance(per_image, PackedVariantImages):
        return _packed_image_stats(per_image, tuple(image_ids))
    first = per_image[0]
    packed = np.stack([v.to_array() for v in per_image])  # one layout, one reader: :func:`_packed_image_stats`
    return _packed_image_stats(PackedVariantImages(first.categories, first.settings, packed), tuple(image_ids))


def packed_layout(settings: VariantSettings) -> tuple[tuple[str, int], ...]:
    """The blocks of :meth:`VariantStats.to_array`, in order: ``(bootstrap key, rows)``.

    Boundary PQ, PQ† and each PQ-by-size range are 4 rows (iou, tp, fp, fn),
    Parsing Covering 2 (its covering and area sums).
    """
    out = []
    if settings.wants("boundary-pq"):
        out.append(("boundary_pq", 4))
    if settings.wants("pq-dagger"):
        out.append(("pq_dagger", 4))
    if settings.wants("pq-area"):
        out += [(f"pq_area/{name}", 4) for name in AREA_NAMES]
    if settings.wants("pc"):
        out.append(("pc", 2))
    return tuple(out)


def _packed_image_stats(per_image: PackedVariantImages, ids: tuple) -> dict:
    """:func:`variant_image_stats` from the packed array, in report order (PC before the size ranges)."""
    from pss_bench.metrics.pq import PQImageStats

    a, cats = per_image.packed, per_image.categories
    blocks: dict = {}
    k = 0
    for key, rows in packed_layout(per_image.settings):
        if rows == 4:
            counts = np.rint(a[:, k + 1: k + 4]).astype(np.int64)  # as PQStats.from_array
            blocks[key] = PQImageStats(cats, ids, a[:, k].copy(), counts[:, 0], counts[:, 1], counts[:, 2])
        else:
            zeros = np.zeros((a.shape[0], len(cats)), dtype=np.int64)
            blocks[key] = PQImageStats(cats, ids, a[:, k].copy(), a[:, k + 1].copy(), zeros, zeros)
        k += rows
    if k != a.shape[1]:
        raise ValueError(f"{a.shape[1]} packed rows for {k} expected")
    return {key: blocks[key] for key in sorted(blocks, key=lambda x: x.startswith("pq_area/"))}
