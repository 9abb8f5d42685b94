"""PQ over folders of COCO panoptic PNGs: the engine behind ``pss-bench pq``.

Each image pair is scored in a worker thread, or (``processes=True``, what
``pss-bench pq`` uses on Linux) in a forked worker process: both PNGs are read and
decoded (pyspng where installed, PIL otherwise), each id map becomes runs of
equal pixels with dense segment indices (:func:`~pss_bench.metrics.pq.id_runs`),
and the pair counts come from the joint runs. Past decoding, no step touches
every pixel more than twice, and nothing loops over segments in Python. GT
runs can be cached on disk (:mod:`pss_bench.evaluation.cache`), so a warm
run decodes only the prediction PNGs.

Why processes: pyspng holds the GIL while it decodes, so threads decode one
PNG at a time; forked workers each have their own interpreter and decode in
parallel, and only the per-image statistics (four arrays of one value per
category) travel back. The parent sums them in image order, so the result is
bit-identical to the threaded and the serial runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from pss_bench.errors import GroundTruthFormatError, PredictionFormatError, PssBenchError, blamed_on
from pss_bench.evaluation.cache import GTCache
from pss_bench.io.panoptic import (
    MAX_SEGMENT_ID,
    PanopticAnnotation,
    PanopticJson,
    PngFile,
    check_id_png,
    check_png_folder,
    decode_id_words,
    load_panoptic_json,
    png_decoder_name,
    read_png_file,
    resolve_panoptic_input,
)
from pss_bench.metrics.pq import (
    ImageSegments,
    PQImageStats,
    PQResult,
    PQStats,
    Runs,
    UnknownSegmentError,
    confusion_from_runs,
    id_runs,
    match_image,
    pq_matches,
)
from pss_bench.metrics.boundary import DEFAULT_DILATION_RATIO, dilation_pixels
from pss_bench.metrics.variants import (
    PackedVariantImages,
    VariantSettings,
    boundary_confusion_from_runs,
    boundary_runs,
    image_variant_stats,
    packed_layout,
    parse_metrics,
)
from pss_bench.threads import WorkerDied, default_workers, fork_available, map_forked, map_ordered
from pss_bench.structures import Category
from pss_bench.text import near_image_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pair:
    gt: PanopticAnnotation
    pred: PanopticAnnotation


class _Evaluator:
    """Scores one (GT, prediction) pair; called from several threads at once."""

    def __init__(
        self,
        gt: PanopticJson,
        pred: PanopticJson,
        cache: GTCache | None,
        trust_gt_area: bool,
        settings: VariantSettings | None = None,
    ) -> None:
        self.gt = gt
        self.pred = pred
        self.cache = cache
        self.trust_gt_area = trust_gt_area
        self.settings = settings if settings is not None and settings.any else None
        self.categories = tuple(gt.categories.values())
        cat_ids = np.array([c.id for c in self.categories], dtype=np.int64)
        self._cat_order = np.argsort(cat_ids, kind="stable")
        self._cat_sorted = cat_ids[self._cat_order]

    def _cat_index(self, cat_ids: np.ndarray) -> np.ndarray:
        # Every category id was checked against the GT's when the JSONs were parsed.
        return self._cat_order[np.searchsorted(self._cat_sorted, cat_ids)]

    def _gt_boundary(self, ann: PanopticAnnotation, png: PngFile, runs: Runs, d: int) -> Runs:
        """The GT's boundary runs at radius ``d``, from the cache when there."""
        n = len(ann.segments)
        key = None
        if self.cache is not None:
            key = self.cache.boundary_key(self.cache.key(png, ann.segments.ids), d)
            cached = self.cache.get(key, png, n + 1)
            if cached is not None:
                return cached
        b = boundary_runs(runs, png.height, png.width, n, d)
        if key is not None:
            self.cache.put(key, png, n + 1, b)
        return b

    def _gt_runs(self, ann: PanopticAnnotation) -> tuple[PngFile, Runs]:
        path = self.gt.png_path(ann)
        where = f"{path}: image {ann.image_id!r}"
        n = len(ann.segments)
        with blamed_on(GroundTruthFormatError):
            png = read_png_file(path, where)
            check_id_png(png, where)
        key = None
        if self.cache is not None:
            key = self.cache.key(png, ann.segments.ids)
            runs = self.cache.get(key, png, n)
            if runs is not None:
                return png, runs
        with blamed_on(GroundTruthFormatError):
            words = decode_id_words(png, where)
        try:
            runs = id_runs(words, ann.segments.ids, id_mask=MAX_SEGMENT_ID)
        except UnknownSegmentError as exc:
            raise GroundTruthFormatError(
                f"{where}, segment {int(exc.unknown_ids[0])}: in the PNG but not in the JSON {self.gt.path}"
            ) from None
        del words
        if key is not None:
            self.cache.put(key, png, n, runs)
        return png, runs

    def __call__(self, pair: _Pair):
        """PQ's ``(iou, tp, fp, fn)`` of one pair; with other metrics asked, ``(that, VariantStats.to_array())``."""
        gseg, pseg = pair.gt.segments, pair.pred.segments
        gpng, gruns = self._gt_runs(pair.gt)
        ppath = self.pred.png_path(pair.pred)
        pwhere = f"{ppath}: image {pair.pred.image_id!r}"
        with blamed_on(PredictionFormatError):
            ppng = read_png_file(ppath, pwhere)
            check_id_png(ppng, pwhere)
            if (ppng.height, ppng.width) != (gpng.height, gpng.width):
                raise PredictionFormatError(
                    f"{pwhere}: prediction is {ppng.width}x{ppng.height} (WxH) but the GT "
                    f"{gpng.path} is {gpng.width}x{gpng.height}"
                )
            words = decode_id_words(ppng, pwhere)
        try:
            pruns = id_runs(words, pseg.ids, id_mask=MAX_SEGMENT_ID)
        except UnknownSegmentError as exc:
            raise PredictionFormatError(
                f"{pwhere}, segment {int(exc.unknown_ids[0])}: in the PNG but not in the JSON {self.pred.path}"
            ) from None
        del words
        conf = confusion_from_runs(gruns, pruns, len(gseg), len(pseg))

        pred_area = conf[:, 1:].sum(axis=0)
        missing = np.flatnonzero(pred_area == 0)
        if missing.size:
            raise PredictionFormatError(f"{pwhere}, segment {int(pseg.ids[missing[0]])}: in the JSON but not in the PNG")
        gt_area = conf[1:, :].sum(axis=1)
        gwhere = f"{gpng.path}: image {pair.gt.image_id!r}"
        if self.trust_gt_area:
            used_area = gseg.areas
        else:
            used_area = None
            missing = np.flatnonzero(gt_area == 0)
            if missing.size:
                raise GroundTruthFormatError(f"{gwhere}, segment {int(gseg.ids[missing[0]])}: in the JSON but not in the PNG")
            wrong = np.flatnonzero(gt_area != gseg.areas)
            if wrong.size:
                i = wrong[0]
                raise GroundTruthFormatError(
                    f"{gwhere}, segment {int(gseg.ids[i])}: JSON area {int(gseg.areas[i])} differs from its "
                    f"{int(gt_area[i])} pixels in the PNG (--trust-gt-area uses the JSON's, as panopticapi does)"
                )
        gt = ImageSegments(self._cat_index(gseg.category_ids), gseg.iscrowd)
        pred = ImageSegments(self._cat_index(pseg.category_ids), np.zeros(len(pseg), dtype=bool))
        if self.settings is None:
            return match_image(conf, gt, pred, len(self.categories), gt_area=used_area)
        matches = pq_matches(conf, gt, pred, len(self.categories), gt_area=used_area)
        stats = match_image(conf, gt, pred, len(self.categories), gt_area=used_area, matches=matches)
        bconf = None
        if self.settings.wants("boundary-pq"):
            d = dilation_pixels(gpng.height, gpng.width, self.settings.dilation_ratio)
            gb = self._gt_boundary(pair.gt, gpng, gruns, d)
            pb = boundary_runs(pruns, ppng.height, ppng.width, len(pseg), d)
            bconf = boundary_confusion_from_runs(gb, pb, len(gseg), len(pseg))
        extra = image_variant_stats(self.settings, self.categories, conf, gt, pred, gt_area=used_area,
                                    boundary_conf=bconf, matches=matches)
        # Packed: a worker process sends one small array back, not the category list with it.
        return stats, extra.to_array()


def _score(evaluator: _Evaluator, pairs: list[_Pair], workers: int,
           processes: bool) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
    """``(i, statistics of pairs[i])`` for every pair, in completion order."""
    if workers <= 1:
        yield from enumerate(map(evaluator, pairs))
    elif processes and fork_available() and threading.active_count() == 1:
        # (with another thread running, a lock it holds at the fork would stay locked in the workers: threads then)
        png_decoder_name()  # import the decoder once, before forking, not in every worker
        try:
            yield from map_forked(evaluator, pairs, workers)
        except WorkerDied as exc:
            pair = pairs[exc.index]
            raise PssBenchError(
                f"image {pair.gt.image_id!r} ({evaluator.pred.png_path(pair.pred)}): the worker process scoring it "
                f"{exc.how} (out of memory? --workers 1 scores in this process)"
            ) from None
    else:
        yield from enumerate(map_ordered(evaluator, pairs, workers, None, "pss-pq"))


def load_pair(
    pred_json: str | os.PathLike,
    gt_json: str | os.PathLike,
    pred_dir: str | os.PathLike | None = None,
    gt_dir: str | os.PathLike | None = None,
    categories: dict[int, Category] | None = None,
) -> tuple[PanopticJson, PanopticJson]:
    """Loads and cross-checks a GT and a prediction JSON (no PNG decoded); a parsed GT is used as it is.

    ``categories`` replace the GT JSON's own (for a GT without ``categories``).
    """
    gt = gt_json if isinstance(gt_json, PanopticJson) else load_panoptic_json(gt_json, gt_dir, role="gt",
                                                                              categories=categories)
    check_png_folder(gt, GroundTruthFormatError)
    pred_json_path, pred_png_dir = resolve_panoptic_input(pred_json, pred_dir)
    pred = load_panoptic_json(pred_json_path, pred_png_dir, role="prediction", categories=gt.categories)
    check_png_folder(pred, PredictionFormatError)
    return gt, pred


def match_annotations(gt: PanopticJson, pred: PanopticJson) -> list[_Pair]:
    """Pairs every GT image with its prediction by ``image_id``, in GT order."""
    by_id = {a.image_id: a for a in pred.annotations}
    pairs = []
    for g in gt.annotations:
        p = by_id.pop(g.image_id, None)
        if p is None:
            near = near_image_id(g.image_id, by_id)
            hint = f" (the prediction has image {near!r}: image ids must equal the GT's)" if near is not None else ""
            raise PredictionFormatError(f"{pred.path}: no prediction for GT image {g.image_id!r} of {gt.path}{hint}")
        pairs.append(_Pair(g, p))
    if by_id:
        extra = list(by_id)[:5]
        log.warning("%s: %d predicted images are not in the GT and are ignored (e.g. %s)", pred.path, len(by_id), extra)
    return pairs


def evaluate_pq(
    pred: str | os.PathLike,
    gt_json: str | os.PathLike,
    *,
    pred_dir: str | os.PathLike | None = None,
    gt_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    trust_gt_area: bool = False,
    progress: Callable[[int, int], None] | None = None,
    processes: bool = False,
    metrics: str | Sequence[str] | None = None,
    dilation_ratio: float = DEFAULT_DILATION_RATIO,
    pc_normalize: bool = True,
    categories: dict[int, Category] | None = None,
) -> PQResult:
    """Panoptic quality of a COCO panoptic prediction against the ground truth.

    Args:
        pred: a prediction JSON, or a directory with ``panoptic.json`` and
            ``panoptic/``.
        gt_json: the ground-truth JSON, or the :class:`~pss_bench.io.panoptic.PanopticJson`
            parsed from it (then ``gt_dir`` is not used).
        pred_dir, gt_dir: PNG folders (default: the JSON path without ``.json``).
        workers: decoding threads (default: the usable cores).
        cache_dir: GT cache root (default :func:`~pss_bench.evaluation.cache.default_cache_dir`).
        use_cache: read and write the GT cache.
        trust_gt_area: use the GT JSON's ``area`` in the IoU, as panopticapi
            does, instead of refusing a GT whose areas differ from its PNGs.
        progress: called as ``progress(done, total)`` after each image.
        processes: score images in ``workers`` forked processes instead of
            threads: pyspng holds the GIL, so only processes decode in
            parallel. Used on Linux when no other thread is running (as in
            ``pss-bench pq``), threads otherwise; the result is the same
            either way.
        metrics: names of :data:`~pss_bench.metrics.variants.METRIC_NAMES`
            (a list or ``"pq,boundary-pq"``; ``"all"``): the metrics besides
            PQ are computed from the same decoded maps, in the same pass.
        dilation_ratio: Boundary PQ's ratio of the image diagonal (boundary-iou-api's 0.02).
        pc_normalize: Parsing Covering's ``normalize_by_image_size`` (tf-models' default True).
        categories: the GT's categories instead of its JSON's own (for a
            GT JSON without ``categories``).

    Returns:
        The :class:`~pss_bench.metrics.pq.PQResult`; with other metrics asked,
        their scores in its ``variants`` (and in ``to_dict()``).

    Raises:
        GroundTruthFormatError | PredictionFormatError: the first bad input.
    """
    settings = VariantSettings(parse_metrics(metrics), dilation_ratio, pc_normalize)
    gt, pr = load_pair(pred, gt_json, pred_dir, gt_dir, categories)
    pairs = match_annotations(gt, pr)
    cache = None
    if use_cache:
        from pss_bench.evaluation.cache import default_cache_dir

        cache = GTCache(cache_dir if cache_dir is not None else default_cache_dir())
    evaluator = _Evaluator(gt, pr, cache, trust_gt_area, settings)
    workers = min(workers or default_workers(), max(len(pairs), 1))
    per_image: list = [None] * len(pairs)
    for done, (i, r) in enumerate(_score(evaluator, pairs, workers, processes), 1):
        per_image[i] = r
        if progress:
            progress(done, len(pairs))
    extra = None
    if evaluator.settings is not None:
        cats, settings = evaluator.categories, evaluator.settings
        packed = (np.stack([r[1] for r in per_image]) if per_image
                  else np.zeros((0, sum(rows for _, rows in packed_layout(settings)), len(cats))))
        extra = PackedVariantImages(cats, settings, packed)
        per_image = [r[0] for r in per_image]
    # Summed in image order whatever order they arrived in: the same float sums every run.
    stats = PQStats(evaluator.categories)
    for r in per_image:
        stats.add(*r)
    # The per-image statistics ride along for the bootstrap (images resampled, statistics re-summed).
    images = PQImageStats.from_images(evaluator.categories, [p.gt.image_id for p in pairs], per_image)
    result = dataclasses.replace(stats.compute(), images=images)
    if extra is not None:
        result = dataclasses.replace(result, variants=extra.total().compute(), variant_images=extra)
    for name in ("All", "Things", "Stuff"):
        if result.row(name) is None:
            log.warning("no %s class has a GT or predicted segment: the %s row is null", name.lower(), name)
    return result
