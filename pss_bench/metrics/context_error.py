"""Context Error (Hwang, Ke, Yu, MULL '21): pure compute on arrays, no files.

The definition implemented here (``docs/context_error.md`` quotes the paper):

* Semantic map: each pixel takes the category of its GT segment, crowd
  included; id 0 and ids missing from the segment list belong to no class.
* Instances: non-crowd segments of thing categories; box = the tight box of
  the mask, ``x0, y0, w, h``.
* Eight regions: the ``w x h`` boxes at ``(x0 + i*w, y0 + j*h)`` for
  ``(i, j)`` in ``{-1, 0, 1}^2 \\ {(0, 0)}``, clipped to the image.
  ``P_c`` = pixels of class ``c`` in the clipped region / its area; a region
  entirely outside the image is the zero vector.
* ``KL(P||Q) = sum_{c: P_c > 0} P_c ln(P_c / Q'_c)``, ``Q'_c = Q_c`` or 0.1
  where ``Q_c = 0``. Pair CE = mean over the 8 regions of
  ``KL(P||Q) + KL(Q||P)``.
* Query CE = mean pair CE over its ``K_eff = min(K, others)`` retrieved
  neighbours; random bound = mean pair CE over all other same-category
  instances; oracle = mean of the ``K_eff`` smallest pair CEs.

Pair CEs of many pairs come from one matrix product: with
``h_a = sum_{r,c} P ln P`` (0 ln 0 = 0) and ``L = ln P'``,
``8 * CE(a, b) = h_a + h_b - <P_a, L_b> - <P_b, L_a>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pss_bench.metrics.results import CERow, ContextErrorResult, QueryScores  # noqa: F401  (re-exported)
from pss_bench.structures import Category, Segments

#: (i, j) offsets of the 8 regions in units of the box size, row by row.
REGION_OFFSETS: tuple[tuple[int, int], ...] = (
    (-1, -1), (0, -1), (1, -1),
    (-1, 0), (1, 0),
    (-1, 1), (0, 1), (1, 1),
)
N_REGIONS = 8
ZERO_FLOOR = 0.1  # the paper's "small probability 0.1" for Q_c = 0


# --------------------------------------------------------------------------- context descriptors


@dataclass(frozen=True)
class ContextDescriptors:
    """The context of every instance of one image.

    Attributes:
        segment_ids: ``(M,)`` int64 GT segment ids of the instances.
        category_ids: ``(M,)`` int64 their category ids.
        areas: ``(M,)`` int64 pixel counts in the id map (0: declared but absent).
        boxes: ``(M, 4)`` int64 tight boxes ``x0, y0, w, h``.
        counts: ``(M, 8, C)`` int64 pixels of each class in each clipped region,
            classes in the order given to :func:`image_context_descriptors`.
        region_areas: ``(M, 8)`` int64 areas of the clipped regions.
    """

    segment_ids: np.ndarray
    category_ids: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray
    counts: np.ndarray
    region_areas: np.ndarray

    def __len__(self) -> int:
        return int(self.segment_ids.shape[0])

    def distributions(self) -> np.ndarray:
        """``(M, 8, C)`` float64 ``P``: counts / region area (0 for empty regions)."""
        area = self.region_areas.astype(np.float64)[:, :, None]
        return np.divide(self.counts, area, out=np.zeros(self.counts.shape, np.float64), where=area > 0)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in ("segment_ids", "category_ids", "areas", "boxes", "counts", "region_areas")}

    @classmethod
    def from_arrays(cls, arrays) -> "ContextDescriptors":
        return cls(**{f: np.asarray(arrays[f]) for f in ("segment_ids", "category_ids", "areas", "boxes", "counts", "region_areas")})


def region_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The 8 context regions of each box, clipped to the image.

    Args:
        boxes: ``(M, 4)`` int ``x0, y0, w, h``.
        height, width: the image size.

    Returns:
        ``(M, 8, 4)`` int64 ``x0, y0, x1, y1`` (exclusive ends) with
        ``0 <= x0 <= x1 <= width``; an empty region has ``x0 == x1`` or ``y0 == y1``.
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    off = np.asarray(REGION_OFFSETS, dtype=np.int64)
    x0, y0, w, h = (boxes[:, k : k + 1] for k in range(4))
    rx0 = x0 + off[None, :, 0] * w
    ry0 = y0 + off[None, :, 1] * h
    out = np.stack([rx0, ry0, rx0 + w, ry0 + h], axis=-1)
    out[..., 0::2] = np.clip(out[..., 0::2], 0, width)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, height)
    return out


@dataclass(frozen=True)
class Runs:
    """Horizontal runs of equal ids: a compact, exact form of an id map.

    Attributes:
        values: ``(R,)`` the id of each run.
        rows: ``(R,)`` int64 row of each run.
        x0, x1: ``(R,)`` int64 first and one-past-last column.
        height, width: the map's size.
    """

    values: np.ndarray
    rows: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    height: int
    width: int


def run_lengths(ids: np.ndarray) -> Runs:
    """Splits an ``(H, W)`` id map into horizontal runs (one pass over the pixels)."""
    ids = np.ascontiguousarray(ids)
    height, width = ids.shape
    flat = ids.reshape(-1)
    n = flat.shape[0]
    if n == 0:
        z = np.zeros(0, np.int64)
        return Runs(flat[:0], z, z, z, height, width)
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::width] = True  # every row starts a run
    starts = np.flatnonzero(change)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = n
    rows = starts // width
    x0 = starts - rows * width
    return Runs(flat[starts], rows, x0, x0 + (ends - starts), height, width)


def _lookup(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each value in ``keys`` (distinct), -1 where absent."""
    if keys.shape[0] == 0:
        return np.full(values.shape, -1, np.int64)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    pos = np.searchsorted(sk, values)
    pos_c = np.minimum(pos, sk.shape[0] - 1)
    hit = sk[pos_c] == values
    return np.where(hit, order[pos_c], -1)


def _integral_at(runs: Runs, cls: np.ndarray, n_classes: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Per-class pixel counts in ``[0, ys[j]) x [0, xs[k])`` from the runs.

    Args:
        runs: the runs; ``cls`` ``(R,)`` gives each run's class (-1: none).
        ys, xs: sorted distinct grid coordinates.

    Returns:
        ``(len(ys), len(xs), C)`` float64 integral image sampled on the grid.

    A run in row ``y`` counts for every ``ys[j] > y``; its overlap with
    ``[0, X)`` is ``relu(X - x0) - relu(X - x1)``, and per group
    ``sum_{a < X} (X - a) = X * #{a < X} - sum_{a < X} a``: two weighted
    bincounts over the runs, then cumulative sums over the small grid.
    """
    ny, nx = ys.shape[0], xs.shape[0]
    out = np.zeros((ny, nx, n_classes))
    # Small lookup tables instead of a binary search per run.
    band = np.searchsorted(ys, np.arange(runs.height), side="right")[runs.rows]
    keep = (cls >= 0) & (band < ny)
    if not keep.any():
        return out
    x_lut = np.searchsorted(xs, np.arange(runs.width + 1), side="right")
    band, c, x0, x1 = band[keep], cls[keep], runs.x0[keep], runs.x1[keep]
    used = np.bincount(c, minlength=n_classes) > 0  # only the classes present
    nc = int(used.sum())
    c = (np.cumsum(used) - 1)[c]
    group = (band * nc + c) * nx
    size = ny * nc * nx
    cnt = np.zeros(size, np.int64)
    tot = np.zeros(size)
    for a, sign in ((x0, 1), (x1, -1)):
        p = x_lut[a]
        ok = p < nx
        key = group[ok] + p[ok]
        if sign > 0:
            cnt += np.bincount(key, minlength=size)
            tot += np.bincount(key, weights=a[ok], minlength=size)
        else:
            cnt -= np.bincount(key, minlength=size)
            tot -= np.bincount(key, weights=a[ok], minlength=size)
    cnt = cnt.reshape(ny, nc, nx).cumsum(axis=2)
    tot = tot.reshape(ny, nc, nx).cumsum(axis=2)
    grid = cnt * xs[None, None, :] - tot
    np.cumsum(grid, axis=0, out=grid)
    out[:, :, used] = grid.transpose(0, 2, 1)
    return out


def image_context_descriptors(
    ids: np.ndarray,
    segments: Segments,
    categories: Sequence[Category],
    *,
    runs: Runs | None = None,
) -> ContextDescriptors:
    """The 8-region class histograms of every instance of one GT image.

    Args:
        ids: ``(H, W)`` integer GT panoptic ids (ignored when ``runs`` is given).
        segments: the image's GT segments.
        categories: the classes, in the order of the class axis.
        runs: :func:`run_lengths` of ``ids``, when already computed.

    Returns:
        :class:`ContextDescriptors` of the non-crowd thing segments, in
        ``segments`` order; one absent from the map has area 0 and zero counts.
    """
    if runs is None:
        runs = run_lengths(ids)
    height, width = runs.height, runs.width
    n_classes = len(categories)
    cat_index = {c.id: i for i, c in enumerate(categories)}
    seg_cls = np.array([cat_index.get(int(c), -1) for c in segments.category_ids.tolist()], dtype=np.int64)
    isthing = np.array([c.isthing for c in categories], dtype=bool)
    is_inst = ~segments.iscrowd & (seg_cls >= 0)
    is_inst[is_inst] = isthing[seg_cls[is_inst]]
    inst_seg = np.flatnonzero(is_inst)
    m = inst_seg.shape[0]

    run_seg = _lookup(runs.values.astype(np.int64), segments.ids.astype(np.int64))
    run_cls = np.where(run_seg >= 0, seg_cls[np.maximum(run_seg, 0)], -1) if len(segments) else np.full(run_seg.shape, -1)
    inst_of_seg = np.full(len(segments), -1, np.int64)
    inst_of_seg[inst_seg] = np.arange(m)
    run_inst = np.where(run_seg >= 0, inst_of_seg[np.maximum(run_seg, 0)], -1) if len(segments) else run_seg

    sel = run_inst >= 0
    ri = run_inst[sel]
    areas = np.bincount(ri, weights=(runs.x1[sel] - runs.x0[sel]), minlength=m).astype(np.int64)
    big = np.iinfo(np.int64).max
    bx0 = np.full(m, big)
    by0 = np.full(m, big)
    bx1 = np.full(m, -1, np.int64)
    by1 = np.full(m, -1, np.int64)
    np.minimum.at(bx0, ri, runs.x0[sel])
    np.minimum.at(by0, ri, runs.rows[sel])
    np.maximum.at(bx1, ri, runs.x1[sel])
    np.maximum.at(by1, ri, runs.rows[sel] + 1)
    present = areas > 0
    boxes = np.zeros((m, 4), np.int64)
    boxes[present] = np.stack([bx0, by0, bx1 - bx0, by1 - by0], axis=1)[present]

    regions = region_boxes(boxes, height, width)
    region_areas = (regions[..., 2] - regions[..., 0]) * (regions[..., 3] - regions[..., 1])
    region_areas[~present] = 0
    counts = np.zeros((m, N_REGIONS, n_classes), np.int64)
    if m and n_classes and present.any():
        ys = np.unique(regions[present][..., 1::2])
        xs = np.unique(regions[present][..., 0::2])
        grid = _integral_at(runs, run_cls, n_classes, ys, xs)
        jy = np.searchsorted(ys, regions[..., 1::2])  # (M, 8, 2): y0, y1
        kx = np.searchsorted(xs, regions[..., 0::2])
        jy = np.minimum(jy, ys.shape[0] - 1)
        kx = np.minimum(kx, xs.shape[0] - 1)
        c = (
            grid[jy[..., 1], kx[..., 1]] - grid[jy[..., 0], kx[..., 1]]
            - grid[jy[..., 1], kx[..., 0]] + grid[jy[..., 0], kx[..., 0]]
        )
        counts = np.rint(c).astype(np.int64)
        counts[region_areas == 0] = 0
    return ContextDescriptors(
        segment_ids=segments.ids[inst_seg].astype(np.int64),
        category_ids=segments.category_ids[inst_seg].astype(np.int64),
        areas=areas,
        boxes=boxes,
        counts=counts,
        region_areas=region_areas.astype(np.int64),
    )


def semantic_map(ids: np.ndarray, segments: Segments, categories: Sequence[Category]) -> np.ndarray:
    """``(H, W)`` int64 class index of each pixel (-1: none), crowd included (for figures)."""
    cat_index = {c.id: i for i, c in enumerate(categories)}
    seg_cls = np.array([cat_index.get(int(c), -1) for c in segments.category_ids.tolist()], dtype=np.int64)
    idx = _lookup(np.asarray(ids).astype(np.int64).reshape(-1), segments.ids.astype(np.int64))
    out = np.where(idx >= 0, seg_cls[np.maximum(idx, 0)] if len(segments) else -1, -1)
    return out.reshape(np.shape(ids))


# --------------------------------------------------------------------------- pair context errors


@dataclass(frozen=True)
class PairTerms:
    """Per-instance terms of the pair CE: ``8 * CE(a, b) = h_a + h_b - <P_a, L_b> - <P_b, L_a>``.

    Attributes:
        h: ``(n,)`` float64 ``sum_{r, c} P ln P`` (0 ln 0 = 0).
        p: ``(n, 8*C)`` float64 distributions, flattened.
        log_floor: ``(n, 8*C)`` float64 ``ln P'`` (``P' = 0.1`` where ``P = 0``).
    """

    h: np.ndarray
    p: np.ndarray
    log_floor: np.ndarray

    def __len__(self) -> int:
        return int(self.h.shape[0])

    @classmethod
    def from_distributions(cls, dist: np.ndarray) -> "PairTerms":
        """From ``(n, 8, C)`` distributions."""
        dist = np.asarray(dist, dtype=np.float64)
        flat = dist.reshape(dist.shape[0], -1)
        pos = flat > 0
        log_floor = np.log(np.where(pos, flat, ZERO_FLOOR))
        h = np.where(pos, flat * log_floor, 0.0).sum(axis=1)
        return cls(h=h, p=flat, log_floor=log_floor)

    def take(self, index: np.ndarray) -> "PairTerms":
        return PairTerms(self.h[index], self.p[index], self.log_floor[index])

    def columns(self, keep: np.ndarray) -> "PairTerms":
        """The same terms restricted to some (region, class) columns (``h`` unchanged)."""
        return PairTerms(self.h, np.ascontiguousarray(self.p[:, keep]), np.ascontiguousarray(self.log_floor[:, keep]))


def pair_context_error(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Pair CE of broadcastable ``(..., 8, C)`` distributions, elementwise: ``(...)`` float64."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    lp = np.log(np.where(p > 0, p, ZERO_FLOOR))
    lq = np.log(np.where(q > 0, q, ZERO_FLOOR))
    kl_pq = np.where(p > 0, p * (lp - lq), 0.0).sum(axis=-1)
    kl_qp = np.where(q > 0, q * (lq - lp), 0.0).sum(axis=-1)
    return (kl_pq + kl_qp).mean(axis=-1)


def pair_ce_matrix(a: PairTerms, b: PairTerms, dtype=np.float64) -> np.ndarray:
    """``(len(a), len(b))`` pair CEs of every instance of ``a`` with every one of ``b``.

    One matrix product: ``<[P_a, L_a], [L_b, P_b]> = <P_a, L_b> + <L_a, P_b>``.
    ``dtype=np.float32`` halves the cost (absolute error about 1e-5); the
    scores below only use it to pick candidates, then recompute in float64.
    """
    left = np.concatenate([a.p, a.log_floor], axis=1).astype(dtype, copy=False)
    right = np.concatenate([b.log_floor, b.p], axis=1).astype(dtype, copy=False)
    m = left @ right.T
    np.subtract(a.h.astype(dtype)[:, None], m, out=m)
    m += b.h.astype(dtype)[None, :]
    m /= N_REGIONS
    return m


def pair_ce_rows(a: PairTerms, b: PairTerms, index: np.ndarray) -> np.ndarray:
    """``(n_a, m)`` float64 pair CEs of query ``i`` with gallery rows ``index[i, :]``."""
    index = np.asarray(index, dtype=np.int64)
    out = np.empty(index.shape)
    step = max(1, (1 << 22) // max(1, index.shape[1] * a.p.shape[1]))
    for s in range(0, index.shape[0], step):
        e = min(index.shape[0], s + step)
        ix = index[s:e]
        cross = np.einsum("qd,qkd->qk", a.p[s:e], b.log_floor[ix]) + np.einsum("qd,qkd->qk", a.log_floor[s:e], b.p[ix])
        out[s:e] = (a.h[s:e, None] + b.h[ix] - cross) / N_REGIONS
    return out


# --------------------------------------------------------------------------- scoring one category


@dataclass(frozen=True)
class CategoryScores:
    """Per-query values of one category.

    Attributes:
        ce: ``(n_q,)`` mean pair CE over the retrieved neighbours.
        random: ``(n_q,)`` mean pair CE over all other gallery instances.
        oracle: ``(n_q,)`` mean of the ``K_eff`` smallest pair CEs.
        precision: ``(n_q,)`` share of neighbours with the query's context
            label; NaN where the query has no label (or labels were not given).
        k_eff: the number of neighbours each query got.
        others: the gallery instances a query can retrieve (the query itself
            excluded). ``others <= K`` makes the class uninformative: every
            query retrieves all of them, so CE = random = oracle.
    """

    ce: np.ndarray
    random: np.ndarray
    oracle: np.ndarray
    precision: np.ndarray
    k_eff: int
    others: int


def score_category(
    queries: PairTerms,
    gallery: PairTerms,
    neighbours: np.ndarray,
    self_index: np.ndarray | None,
    k: int,
    *,
    query_labels: np.ndarray | None = None,
    gallery_labels: np.ndarray | None = None,
    chunk: int | None = None,
    threads: int = 2,
) -> CategoryScores:
    """CE, bounds and context precision of the queries of one category.

    * CE: the pair CEs of the retrieved pairs, in float64.
    * random: linear in the terms, so ``sum_b CE(a, b)`` comes from the
      gallery's summed terms in O(n) (the self pair is exactly 0).
    * oracle: the full pair-CE matrix in float32 (one matrix product per
      block of queries) picks ``2 K_eff + 8`` candidates per query; they are
      recomputed in float64 and the ``K_eff`` smallest kept. This equals the
      exact oracle unless more than ``K_eff + 8`` candidates tie within
      float32 error (about 1e-5), where it can differ by that much.

    Args:
        queries: terms of the ``n_q`` queries.
        gallery: terms of the ``n_g`` gallery instances of the same category.
        neighbours: ``(n_q, >= K_eff)`` int gallery indices, best first, the
            query itself already removed; only the first ``K_eff`` are used.
        self_index: ``(n_q,)`` each query's own gallery index (excluded from
            the bounds), or ``None`` when the gallery is another set.
        k: the requested K.
        query_labels, gallery_labels: ``(n_q,)`` / ``(n_g,)`` object arrays
            of hidden context labels (``None``: unlabelled), for precision@K.
        chunk: queries per block of the pair-CE matrix (memory bound).
        threads: blocks computed at once.

    Returns:
        :class:`CategoryScores`; with no other gallery instance (``K_eff = 0``)
        all arrays are empty.
    """
    nq, ng = len(queries), len(gallery)
    others = ng - (1 if self_index is not None else 0)
    k_eff = max(0, min(k, others))
    empty = np.zeros(0)
    if nq == 0 or k_eff == 0:
        return CategoryScores(empty, empty, empty, empty, 0, max(0, others))
    neighbours = np.asarray(neighbours, dtype=np.int64)[:, :k_eff]
    if neighbours.shape != (nq, k_eff):
        raise ValueError(f"neighbours must be ({nq}, >= {k_eff}), got {np.shape(neighbours)}")
    # A (region, class) column where no instance has pixels adds exactly 0 to every pair: drop it.
    cols = (queries.p > 0).any(axis=0) | (gallery.p > 0).any(axis=0)
    queries, gallery = queries.columns(cols), gallery.columns(cols)
    ce = pair_ce_rows(queries, gallery, neighbours).mean(axis=1)

    sum_l = gallery.log_floor.sum(axis=0)
    sum_p = gallery.p.sum(axis=0)
    total = (ng * queries.h + gallery.h.sum() - queries.p @ sum_l - queries.log_floor @ sum_p) / N_REGIONS
    rnd = total / others  # the self pair adds 0

    if k_eff == others:
        orc = rnd.copy()
    else:
        n_cand = min(others, 2 * k_eff + 8)
        if chunk is None:
            chunk = max(1, min(nq, (1 << 22) // max(1, ng)))
        cand = np.empty((nq, n_cand), np.int64)
        gallery_f32 = PairTerms(gallery.h, gallery.p.astype(np.float32), gallery.log_floor.astype(np.float32))

        def block(s: int) -> None:
            e = min(nq, s + chunk)
            m = pair_ce_matrix(queries.take(np.arange(s, e)), gallery_f32, dtype=np.float32)
            if self_index is not None:
                m[np.arange(e - s), self_index[s:e]] = np.inf
            if n_cand < ng:
                cand[s:e] = np.argpartition(m, n_cand - 1, axis=1)[:, :n_cand]
            else:
                cand[s:e] = np.argsort(m, axis=1)[:, :n_cand]

        starts = range(0, nq, chunk)
        if len(starts) > 1 and threads > 1:
            # numpy's selection is single-threaded and releases the GIL: overlap it with the next product.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=threads) as ex:
                list(ex.map(block, starts))
        else:
            for s in starts:
                block(s)
        exact = pair_ce_rows(queries, gallery, cand)
        orc = np.partition(exact, k_eff - 1, axis=1)[:, :k_eff].mean(axis=1)
    precision = np.full(nq, np.nan)
    if query_labels is not None and gallery_labels is not None:
        q_lab = np.asarray(query_labels, dtype=object)
        same = np.asarray(np.asarray(gallery_labels, dtype=object)[neighbours] == q_lab[:, None], dtype=bool)
        labelled = np.array([lab is not None for lab in q_lab], dtype=bool)
        precision[labelled] = same[labelled].mean(axis=1)
    return CategoryScores(ce, rnd, orc, precision, k_eff, others)


# --------------------------------------------------------------------------- accumulator and result


def _score(ce: float | None, random: float | None, oracle: float | None) -> float | None:
    if ce is None or random is None or oracle is None or not random > oracle:
        return None
    return (random - ce) / (random - oracle)


@dataclass
class ContextErrorStats:
    """Summable per-class sums: ``stats += other`` merges shards.

    Attributes:
        categories: the thing categories.
        sums: ``(n_classes, 3)`` float64 sums of query CE, random, oracle.
        queries: ``(n_classes,)`` int64 query counts.
        precision_sum: ``(n_classes,)`` float64 sum of labelled queries' precision.
        precision_n: ``(n_classes,)`` int64 labelled query counts.
        others: ``(n_classes,)`` int64 gallery instances a query could
            retrieve (the largest seen; merged with ``max``).
    """

    categories: tuple[Category, ...]
    k: int
    sums: np.ndarray = field(default=None)  # type: ignore[assignment]
    queries: np.ndarray = field(default=None)  # type: ignore[assignment]
    precision_sum: np.ndarray = field(default=None)  # type: ignore[assignment]
    precision_n: np.ndarray = field(default=None)  # type: ignore[assignment]
    others: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.categories = tuple(self.categories)
        n = len(self.categories)
        self._index = {c.id: i for i, c in enumerate(self.categories)}
        if self.sums is None:
            self.sums = np.zeros((n, 3))
            self.queries = np.zeros(n, np.int64)
            self.precision_sum = np.zeros(n)
            self.precision_n = np.zeros(n, np.int64)
        if self.others is None:
            self.others = np.zeros(n, np.int64)

    def add(self, category_id: int, scores: CategoryScores) -> None:
        i = self._index[category_id]
        self.sums[i] += [scores.ce.sum(), scores.random.sum(), scores.oracle.sum()]
        self.queries[i] += scores.ce.shape[0]
        labelled = ~np.isnan(scores.precision)
        self.precision_sum[i] += scores.precision[labelled].sum()
        self.precision_n[i] += int(labelled.sum())
        self.others[i] = max(int(self.others[i]), int(scores.others))

    def __iadd__(self, other: "ContextErrorStats") -> "ContextErrorStats":
        if other.categories != self.categories or other.k != self.k:
            raise ValueError("cannot merge Context Error statistics of different categories or K")
        self.sums += other.sums
        self.queries += other.queries
        self.precision_sum += other.precision_sum
        self.precision_n += other.precision_n
        np.maximum(self.others, other.others, out=self.others)
        return self

    def compute(self, *, all_classes: bool = False) -> ContextErrorResult:
        """Per-class rows and the means.

        Args:
            all_classes: average every class with a query in ``mean`` (the
                paper's plain mean), not only the informative ones.
        """
        per_class: dict[int, CERow] = {}
        for i, c in enumerate(self.categories):
            n = int(self.queries[i])
            prec = float(self.precision_sum[i] / self.precision_n[i]) if self.precision_n[i] else None
            if n:
                ce, rnd, orc = (float(v) for v in self.sums[i] / n)
                per_class[c.id] = CERow(ce, rnd, orc, _score(ce, rnd, orc), n, prec,
                                        informative=bool(self.others[i] > self.k))
            else:
                per_class[c.id] = CERow(None, None, None, None, 0, None)
        plain = _mean_row([r for r in per_class.values() if r.queries])
        mean = plain if all_classes else _mean_row([r for r in per_class.values() if r.queries and r.informative])
        return ContextErrorResult(self.k, self.categories, per_class, mean, plain, all_classes)


def _mean_row(rows: Sequence[CERow]) -> CERow:
    """The plain mean of class rows (classes weigh equally); its score from the means."""
    if not rows:
        return CERow(None, None, None, None, 0, None, classes=0)
    ce, rnd, orc = (float(v) for v in np.mean(np.array([(r.ce, r.random, r.oracle) for r in rows]), axis=0))
    precisions = [r.precision for r in rows if r.precision is not None]
    return CERow(ce, rnd, orc, _score(ce, rnd, orc), sum(r.queries for r in rows),
                 float(np.mean(precisions)) if precisions else None, classes=len(rows))


# --------------------------------------------------------------------------- pooling dense features


def _bilinear_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of ``F.interpolate(mode="bilinear", align_corners=False)``.

    Output pixel ``o`` reads ``src = max(0, (o + 0.5) * n_in / n_out - 0.5)``
    from ``i0 = floor(src)`` with weight ``1 - l`` and ``i1 = min(i0 + 1, n_in - 1)``
    with weight ``l = src - i0``.
    """
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = src - i0
    return i0, i1, 1.0 - l1, l1


def pool_features(features: np.ndarray, segment_index: np.ndarray, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of bilinearly upsampled dense features over each segment.

    Equal to resizing ``features`` to the map's size with
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    and averaging over each segment's pixels, without building the
    full-resolution ``(D, H, W)`` array: bilinear resizing is linear, so each
    segment's mean is its ``(h, w)`` map of summed interpolation weights
    (four weighted bincounts) times the features.

    Args:
        features: ``(D, h, w)`` float dense features at any stride.
        segment_index: ``(H, W)`` int, ``i + 1`` for pixels of segment ``i``,
            0 for pixels of no segment.
        n_segments: ``N``.

    Returns:
        ``(N, D)`` float32 means (zero rows for absent segments) and ``(N,)``
        int64 pixel counts.
    """
    features = np.asarray(features)
    d, h, w = features.shape
    height, width = segment_index.shape
    yi0, yi1, yw0, yw1 = _bilinear_taps(height, h)
    xi0, xi1, xw0, xw1 = _bilinear_taps(width, w)
    seg = segment_index.astype(np.int64)
    area = np.bincount(seg.reshape(-1), minlength=n_segments + 1)[1 : n_segments + 1]
    weights = np.zeros((n_segments + 1) * h * w)
    base = seg * (h * w)
    for yi, yw in ((yi0, yw0), (yi1, yw1)):
        for xi, xw in ((xi0, xw0), (xi1, xw1)):
            key = base + (yi * w)[:, None] + xi[None, :]
            weights += np.bincount(key.reshape(-1), weights=(yw[:, None] * xw[None, :]).reshape(-1),
                                   minlength=weights.shape[0])
    m = weights.reshape(n_segments + 1, h * w)[1:]
    sums = m @ features.reshape(d, h * w).astype(np.float64).T
    means = np.divide(sums, area[:, None], out=np.zeros_like(sums), where=area[:, None] > 0)
    return means.astype(np.float32), area.astype(np.int64)


def segment_index_map(ids: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
    """``(H, W)`` int64: ``i + 1`` where ``ids == segment_ids[i]``, 0 elsewhere (VOID, unknown ids)."""
    idx = _lookup(np.asarray(ids).astype(np.int64).reshape(-1), np.asarray(segment_ids, dtype=np.int64))
    return (idx + 1).reshape(np.shape(ids))
