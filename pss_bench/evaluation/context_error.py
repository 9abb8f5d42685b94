"""Context Error over files: retrieval within (or across) instance sets, then scoring.

The engine behind ``pss-bench context-error``, ``show-retrievals`` and
``context-map``; the instance sets (GT descriptors, embeddings) come from
:mod:`pss_bench.evaluation.instances`. Retrieval is exact inner-product search
with faiss (``IndexFlatIP`` on L2-normalised float32 vectors,
:func:`pss_bench.metrics.retrieval.search`), one index per category.
``pss-bench embed`` is :mod:`pss_bench.evaluation.embed`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pss_bench.errors import GroundTruthFormatError, PredictionFormatError
from pss_bench.evaluation.instances import InstanceSet, load_instances
from pss_bench.metrics.context_error import (
    CategoryScores,
    ContextErrorResult,
    ContextErrorStats,
    PairTerms,
    QueryScores,
    score_category,
)
from pss_bench.metrics.ce_resample import CEIndex, build_ce_index, fixed_index
from pss_bench.metrics.retrieval import search

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class CategoryRetrieval:
    """Queries, gallery rows and neighbours of one category (indices into the sets)."""

    category_id: int
    query_rows: np.ndarray
    gallery_rows: np.ndarray
    neighbours: np.ndarray  # (n_q, K_eff) indices into gallery_rows
    self_index: np.ndarray | None


def retrieve(queries: InstanceSet, gallery: InstanceSet | None, k: int, category_id: int) -> CategoryRetrieval:
    """Retrieval of one category (``gallery=None``: the query set itself, query excluded)."""
    q_rows = np.flatnonzero(queries.category_ids == category_id)
    if gallery is None:
        g_rows = q_rows
        self_index = np.arange(q_rows.shape[0])
        gal = queries
    else:
        g_rows = np.flatnonzero(gallery.category_ids == category_id)
        self_index = None
        gal = gallery
    nb = search(queries.embeddings[q_rows], gal.embeddings[g_rows], k, self_index)
    return CategoryRetrieval(category_id, q_rows, g_rows, nb, self_index)


def score_instances(
    queries: InstanceSet,
    gallery: InstanceSet | None = None,
    *,
    k: int = 20,
    all_classes: bool = False,
    retrievals: dict[int, CategoryRetrieval] | None = None,
    index: bool = False,
) -> ContextErrorResult:
    """Context Error of an instance set (``gallery=None``: retrieval within the set).

    Args:
        queries: the query instances.
        gallery: another instance set to retrieve from, or ``None``.
        k: neighbours per query.
        all_classes: the headline mean averages every class with a query (the
            paper's plain mean) instead of the informative ones only.
        retrievals: a dict to receive each category's
            :class:`CategoryRetrieval` (category id -> retrieval), for
            pictures of the retrievals without searching again.
        index: also rank each query's neighbours once for the bootstrap
            (``result.index``, :func:`context_error_index`).

    Returns:
        The result, with its per-query values in ``result.queries``.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    cats = tuple(c for c in queries.gt.categories.values() if c.isthing)
    if gallery is not None and list(gallery.gt.categories) != list(queries.gt.categories):
        raise GroundTruthFormatError(
            f"{gallery.gt.path}: the gallery GT's categories {list(gallery.gt.categories)} differ from those of "
            f"the query GT {queries.gt.path} {list(queries.gt.categories)}: their contexts cannot be compared"
        )
    if gallery is not None and gallery.embeddings.shape[1] != queries.embeddings.shape[1]:
        raise PredictionFormatError(
            f"gallery embeddings have dimension {gallery.embeddings.shape[1]} but the queries' have "
            f"{queries.embeddings.shape[1]}"
        )
    stats = ContextErrorStats(cats, k)
    gal = gallery if gallery is not None else queries
    use_labels = queries.labels is not None and gal.labels is not None
    per_query: dict[str, list[np.ndarray]] = {f: [] for f in ("cls", "rows", "ce", "random", "oracle", "precision")}
    for ci, c in enumerate(cats):
        r = retrieve(queries, gallery, k, c.id)
        if retrievals is not None:
            retrievals[c.id] = r
        if r.query_rows.shape[0] == 0 or r.neighbours.shape[1] == 0:
            continue
        qt = PairTerms.from_distributions(queries.distributions[r.query_rows])
        gt_terms = qt if gallery is None else PairTerms.from_distributions(gal.distributions[r.gallery_rows])
        scores: CategoryScores = score_category(
            qt, gt_terms, r.neighbours, r.self_index, k,
            query_labels=queries.labels[r.query_rows] if use_labels else None,
            gallery_labels=gal.labels[r.gallery_rows] if use_labels else None,
        )
        stats.add(c.id, scores)
        per_query["cls"].append(np.full(r.query_rows.shape[0], ci, np.int64))
        per_query["rows"].append(r.query_rows)
        for f in ("ce", "random", "oracle", "precision"):
            per_query[f].append(getattr(scores, f))
    result = stats.compute(all_classes=all_classes)
    cat = {f: (np.concatenate(v) if v else np.zeros(0, np.int64 if f in ("cls", "rows") else np.float64))
           for f, v in per_query.items()}
    rows = cat["rows"].astype(np.int64)
    table = QueryScores(
        categories=cats, k=k, class_index=cat["cls"].astype(np.int64),
        keys=np.stack([queries.image_index[rows], queries.segment_ids[rows]], axis=1).astype(np.int64).reshape(-1, 2),
        ce=cat["ce"], random=cat["random"], oracle=cat["oracle"], precision=cat["precision"],
        others=stats.others.copy(),
    )
    result = dataclasses.replace(result, queries=table,
                                 index=context_error_index(queries, gallery, table, k) if index else None)
    if result.mean_all_classes.queries == 0:
        log.warning("no category has two instances with embeddings: the Context Error is undefined")
    elif result.mean.queries == 0:
        log.warning("no category is informative (K=%d retrieves every other instance of each): the mean CE is "
                    "undefined; use more images, a smaller K, or all_classes (--all-classes)", k)
    return result


def context_error_index(queries: InstanceSet, gallery: InstanceSet | None, table: QueryScores, k: int) -> CEIndex:
    """What :func:`~pss_bench.metrics.bootstrap.bootstrap_context_error` resamples.

    With ``gallery=None`` (the set is its own gallery) each class's instances
    are ranked once (:func:`~pss_bench.metrics.ce_resample.build_ce_index`),
    so that a resample of images re-forms its own gallery; with another
    gallery the per-query values of ``table`` are kept and only the query
    images are resampled.
    """
    n_images = len(queries.gt.annotations)
    if gallery is not None:
        vals = np.stack([table.ce, table.random, table.oracle, table.precision], axis=1)
        return fixed_index(table.categories, k, n_images, table.class_index, table.keys, vals, table.others)
    cat_pos = {c.id: i for i, c in enumerate(table.categories)}
    cls = np.array([cat_pos.get(int(c), -1) for c in queries.category_ids.tolist()], np.int64)
    return build_ce_index(table.categories, k, n_images, cls, queries.image_index, queries.segment_ids,
                          queries.embeddings, queries.distributions, labels=queries.labels)


def evaluate_context_error(
    pred_dir: str | os.PathLike,
    gt_json: str | os.PathLike,
    *,
    gt_dir: str | os.PathLike | None = None,
    k: int = 20,
    gallery: str | os.PathLike | None = None,
    gallery_gt: str | os.PathLike | None = None,
    gallery_gt_dir: str | os.PathLike | None = None,
    min_area: int = 0,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    all_classes: bool = False,
    index: bool = False,
) -> ContextErrorResult:
    """Context Error of a prediction directory's embeddings.

    Args:
        pred_dir: a prediction directory with ``manifest.json`` and ``embeddings/``.
        gt_json, gt_dir: the ground truth (PNG folder default: the JSON path without ``.json``).
        k: neighbours per query.
        gallery, gallery_gt, gallery_gt_dir: retrieve from another prediction
            directory and its GT instead of from the queries' own set.
        min_area: instances (queries and gallery) below this many pixels are left out.
        workers: decoding threads.
        cache_dir, use_cache: the GT descriptor cache.
        progress: ``progress(done, total)`` per decoded image.
        all_classes: the headline mean averages every class with a query
            (the paper's plain mean), not only the informative ones.
        index: keep what the bootstrap resamples (``result.index``).

    Raises:
        GroundTruthFormatError | PredictionFormatError: the first bad input.
    """
    q = load_instances(pred_dir, gt_json, gt_dir, min_area=min_area, workers=workers,
                       cache_dir=cache_dir, use_cache=use_cache, progress=progress)
    g = None
    if gallery is not None:
        if gallery_gt is None:
            raise ValueError("a gallery needs its ground truth")
        g = load_instances(gallery, gallery_gt, gallery_gt_dir, min_area=min_area, workers=workers,
                           cache_dir=cache_dir, use_cache=use_cache, progress=progress)
    return score_instances(q, g, k=k, all_classes=all_classes, index=index)
