"""Context Error of image resamples, each with its own gallery, without searching again.

Pure compute on arrays, no files. What the Context Error bootstrap
(:func:`pss_bench.metrics.bootstrap.bootstrap_context_error`) resamples is the
*image*: a study of ``n`` images is ``n`` independent draws from a population
of scenes, and its Context Error is computed with its own instances as the
gallery. A resample draws ``n`` of the ``n`` images with replacement; image
``j`` drawn ``w_j`` times puts every instance of it ``w_j`` times in the
resample, as queries and as gallery items, exactly as a new study of those
images would (its mean CE, bounds and precision are those of
``score_instances`` on the resampled set), with one rule for the copies a
resample makes and a new study never has: a query does not see copies of its
own image (the same scene photographed twice); its own image's other
instances count once, as in the original study.

**Index once, re-weight per resample.** Retrieval depends on the weights only
through the order of the gallery, which does not change: query ``i``'s K
neighbours in a resample are the first entries of its ranked list (by
embedding similarity) whose cumulative weight reaches ``K_eff``; a neighbour
drawn twice fills two slots. So :func:`build_class_index` ranks each query's
``depth`` nearest gallery items once (faiss, like the evaluation), with their
pair CEs, and a resample only gathers weights along the lists
(:func:`resample_class`). The same holds for the oracle (the ``depth``
smallest pair CEs, sorted) and for precision@K. The random bound is linear
in the gallery's pair-CE terms, so it is one weighted sum. Where a list is too
short for a resample (its first ``depth`` entries weigh less than ``K_eff``),
that query's full list is computed on the spot: the result is exact, not an
approximation of the re-search.

A query table scored against *another* gallery (``context-error --gallery``)
keeps its per-query values: the gallery is fixed by the user, only the query
images are resampled (as clusters of their queries).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pss_bench.metrics.context_error import PairTerms, pair_ce_matrix, pair_ce_rows
from pss_bench.metrics.retrieval import search
from pss_bench.structures import Category

#: Elements of one ``(resamples, queries, depth)`` block: about 8 MB of float32.
_BLOCK = 1 << 21
#: Fields a resample gives per class: CE, random, oracle, precision.
FIELDS = ("ce", "random", "oracle", "precision")


def default_depth(k: int) -> int:
    """How many neighbours of each query the index keeps (more are computed on demand)."""
    return max(4 * k, k + 40)


@dataclass
class ClassIndex:
    """One class's instances, ranked once.

    Attributes:
        class_index: index into the categories.
        image: ``(n,)`` int64 image index of each instance.
        keys: ``(n, 2)`` int64 ``(image index, segment id)``.
        fixed: ``(n, 4)`` float64 per-query CE, random, oracle, precision when
            scored against another (fixed) gallery; ``None`` in the
            self-gallery mode, where the fields below are set.
        embeddings: ``(n, D)`` float32 L2-normalised.
        terms: the pair-CE terms (columns where no instance has pixels dropped).
        labels: ``(n,)`` object context labels, or ``None``.
        nb, nb_ce, nb_same, nb_label: ``(n, depth)`` each query's gallery
            items by decreasing similarity (itself removed), their pair CEs,
            whether each is of the query's image, whether it has the query's label.
        orc_nb, orc_ce, orc_same: ``(n, depth)`` the gallery items of the
            smallest pair CEs, ascending, those CEs, and whether each is of the
            query's image.
        same_sum, same_n: ``(n,)`` sum of the pair CEs with the other instances
            of the query's image, and their number.
        complete: whether the lists hold every other instance.
    """

    class_index: int
    image: np.ndarray
    keys: np.ndarray
    fixed: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    terms: PairTerms | None = None
    labels: np.ndarray | None = None
    nb: np.ndarray | None = None
    nb_ce: np.ndarray | None = None
    nb_same: np.ndarray | None = None
    nb_label: np.ndarray | None = None
    orc_nb: np.ndarray | None = None
    orc_ce: np.ndarray | None = None
    orc_same: np.ndarray | None = None
    same_sum: np.ndarray | None = None
    same_n: np.ndarray | None = None
    complete: bool = True
    _full_nb: dict = field(default_factory=dict, repr=False)
    _full_orc: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class CEIndex:
    """Everything the Context Error bootstrap needs of one model.

    Attributes:
        categories: the thing categories (the class axis).
        k: the requested K.
        n_images: the images of the evaluated set (those without instances included).
        classes: class index -> its :class:`ClassIndex` (classes with queries).
        others: ``(n_classes,)`` int64 gallery instances a query of the class
            can retrieve in the evaluated set (what makes a class informative).
        self_gallery: whether the gallery is the evaluated set itself.
    """

    categories: tuple[Category, ...]
    k: int
    n_images: int
    classes: dict[int, ClassIndex]
    others: np.ndarray
    self_gallery: bool = True

    def counts(self) -> np.ndarray:
        """``(n_classes,)`` queries per class."""
        out = np.zeros(len(self.categories), np.int64)
        for c, ci in self.classes.items():
            out[c] = len(ci)
        return out


# --------------------------------------------------------------------------- building


def _smallest(terms: PairTerms, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, depth)`` indices and float64 pair CEs of each row's smallest pair CEs (itself excluded), ascending."""
    n = len(terms)
    f32 = PairTerms(terms.h, terms.p.astype(np.float32), terms.log_floor.astype(np.float32))
    cand_n = min(n - 1, depth + 8)
    cand = np.empty((n, cand_n), np.int64)
    chunk = max(1, min(n, (1 << 22) // max(1, n)))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        m = pair_ce_matrix(f32.take(np.arange(s, e)), f32, dtype=np.float32)
        m[np.arange(e - s), np.arange(s, e)] = np.inf
        if cand_n < n - 1:
            cand[s:e] = np.argpartition(m, cand_n - 1, axis=1)[:, :cand_n]
        else:
            cand[s:e] = np.argsort(m, axis=1)[:, :cand_n]
    exact = pair_ce_rows(terms, terms, cand)
    order = np.argsort(exact, axis=1, kind="stable")[:, :depth]
    return np.take_along_axis(cand, order, 1), np.take_along_axis(exact, order, 1)


def build_class_index(
    class_index: int,
    image: np.ndarray,
    keys: np.ndarray,
    embeddings: np.ndarray,
    distributions: np.ndarray,
    k: int,
    *,
    labels: np.ndarray | None = None,
    depth: int | None = None,
) -> ClassIndex:
    """Ranks the instances of one class against each other (self-gallery mode).

    Args:
        class_index: the class's index into the categories.
        image: ``(n,)`` int image index of each instance.
        keys: ``(n, 2)`` int ``(image index, segment id)``.
        embeddings: ``(n, D)`` float32 L2-normalised.
        distributions: ``(n, 8, C)`` region class distributions.
        k: the requested K.
        labels: ``(n,)`` object context labels (``None`` entries: unlabelled), or ``None``.
        depth: neighbours kept per query (default :func:`default_depth`).

    Returns:
        The :class:`ClassIndex`.
    """
    image = np.asarray(image, np.int64)
    n = image.shape[0]
    terms = PairTerms.from_distributions(distributions)
    cols = (terms.p > 0).any(axis=0)
    terms = terms.columns(cols)
    depth = min(n - 1, default_depth(k) if depth is None else int(depth))
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    ci = ClassIndex(class_index, image, np.asarray(keys, np.int64).reshape(-1, 2), embeddings=emb, terms=terms,
                    labels=None if labels is None else np.asarray(labels, dtype=object), complete=depth == n - 1)
    if depth <= 0:
        z = np.zeros((n, 0))
        ci.nb, ci.nb_ce, ci.nb_same = z.astype(np.int64), z, z.astype(bool)
        ci.orc_nb, ci.orc_ce, ci.orc_same = z.astype(np.int64), z, z.astype(bool)
        ci.nb_label = None if labels is None else z.astype(bool)
        ci.same_sum, ci.same_n = np.zeros(n), np.zeros(n)
        return ci
    ci.nb = search(emb, emb, depth, np.arange(n))
    ci.nb_ce = pair_ce_rows(terms, terms, ci.nb)
    ci.nb_same = image[ci.nb] == image[:, None]
    if ci.labels is not None:
        ci.nb_label = _same_label(ci.labels, ci.nb)
    ci.orc_nb, ci.orc_ce = _smallest(terms, depth)
    ci.orc_same = image[ci.orc_nb] == image[:, None]
    ci.same_sum, ci.same_n = np.zeros(n), np.zeros(n)
    order = np.argsort(image, kind="stable")
    bounds = np.flatnonzero(np.diff(image[order])) + 1
    for grp in np.split(order, bounds):
        if grp.shape[0] < 2:
            continue
        t = terms.take(grp)
        m = pair_ce_matrix(t, t)
        np.fill_diagonal(m, 0.0)
        ci.same_sum[grp] = m.sum(axis=1)
        ci.same_n[grp] = grp.shape[0] - 1
    return ci


def _same_label(labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``(n, depth)`` whether each listed item has the query's (non-``None``) label."""
    lab = np.asarray(labels, dtype=object)
    has = np.array([x is not None for x in lab], bool)
    return np.asarray(lab[idx] == lab[:, None], dtype=bool) & has[:, None]


def build_ce_index(
    categories: tuple[Category, ...],
    k: int,
    n_images: int,
    class_index: np.ndarray,
    image: np.ndarray,
    segment_ids: np.ndarray,
    embeddings: np.ndarray,
    distributions: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    depth: int | None = None,
) -> CEIndex:
    """The self-gallery index of an instance set (each class retrieves from its own instances).

    Args:
        categories: the thing categories; ``class_index`` indexes them (-1: not a thing class).
        k: the requested K.
        n_images: the images of the evaluated set.
        class_index, image, segment_ids: ``(n,)`` int per instance.
        embeddings: ``(n, D)`` float32 L2-normalised.
        distributions: ``(n, 8, C)`` region class distributions.
        labels: ``(n,)`` object context labels, or ``None``.
        depth: neighbours kept per query (default :func:`default_depth`).
    """
    class_index = np.asarray(class_index, np.int64)
    image = np.asarray(image, np.int64)
    others = np.zeros(len(categories), np.int64)
    classes = {}
    for c in range(len(categories)):
        rows = np.flatnonzero(class_index == c)
        others[c] = max(0, rows.shape[0] - 1)
        if rows.shape[0] < 2:
            continue
        keys = np.stack([image[rows], np.asarray(segment_ids)[rows]], axis=1)
        classes[c] = build_class_index(c, image[rows], keys, embeddings[rows], distributions[rows], k,
                                       labels=None if labels is None else np.asarray(labels, dtype=object)[rows],
                                       depth=depth)
    return CEIndex(tuple(categories), int(k), int(n_images), classes, others, True)


def fixed_index(categories: tuple[Category, ...], k: int, n_images: int, class_index: np.ndarray,
                keys: np.ndarray, values: np.ndarray, others: np.ndarray) -> CEIndex:
    """The index of queries scored against a fixed gallery: per-query values, images resampled.

    Args:
        categories, k, n_images: as for :func:`build_ce_index`.
        class_index: ``(n,)`` int each query's class.
        keys: ``(n, 2)`` int ``(image index, segment id)``.
        values: ``(n, 4)`` float64 CE, random, oracle, precision (NaN: undefined).
        others: ``(n_classes,)`` int gallery instances per class.
    """
    class_index = np.asarray(class_index, np.int64)
    keys = np.asarray(keys, np.int64).reshape(-1, 2)
    classes = {}
    for c in np.unique(class_index).tolist():
        rows = np.flatnonzero(class_index == c)
        classes[int(c)] = ClassIndex(int(c), keys[rows, 0], keys[rows], fixed=np.asarray(values, np.float64)[rows])
    return CEIndex(tuple(categories), int(k), int(n_images), classes, np.asarray(others, np.int64), False)


# --------------------------------------------------------------------------- resampling


def _walk(w: np.ndarray, idx: np.ndarray, same: np.ndarray, values: list[np.ndarray],
          keff: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Weighted sums over the first ``keff`` slots of ranked lists, one list position at a time.

    Args:
        w: ``(b, n)`` instance weights.
        idx: ``(depth, n)`` the ranked lists, position first.
        same: ``(depth, n)`` bool, entries of the query's own image (weight 1).
        values: ``(depth, n)`` arrays to sum.
        keff: ``(b, n)`` slots to fill.

    Returns:
        ``sum take * value`` for each value (``(b, n)``) and the filled weight.
        Stops at the first position where every list is full.
    """
    dt = w.dtype
    cum = np.zeros(keff.shape, dt)
    sums = [np.zeros(keff.shape, dt) for _ in values]
    take = np.empty(keff.shape, dt)
    for d in range(idx.shape[0]):
        g = np.where(same[d], dt.type(1.0), w[:, idx[d]])
        np.subtract(keff, cum, out=take)
        np.clip(take, 0.0, g, out=take)
        for acc, v in zip(sums, values):
            acc += take * v[d]
        cum += g
        if (d & 7) == 7 and bool((cum >= keff).all()):
            break
    return sums, cum


def _full_lists(ci: ClassIndex, i: int) -> tuple:
    """Query ``i``'s complete lists (by similarity, by pair CE), computed once."""
    if i not in ci._full_nb:
        n = len(ci)
        sims = ci.embeddings @ ci.embeddings[i]
        sims[i] = -np.inf
        order = np.argsort(-sims, kind="stable")[: n - 1]
        pce = pair_ce_rows(ci.terms.take(np.array([i])), ci.terms, order[None])[0]
        same = ci.image[order] == ci.image[i]
        lab = None
        if ci.labels is not None:
            lab = (ci.labels[order] == ci.labels[i]) & (ci.labels[i] is not None)
        ci._full_nb[i] = (order, pce, same, lab)
        o = np.argsort(pce, kind="stable")
        ci._full_orc[i] = (order[o], pce[o], same[o])
    return ci._full_nb[i], ci._full_orc[i]


def _one(w: np.ndarray, idx: np.ndarray, same: np.ndarray, vals: list, keff: float) -> list[float]:
    g = np.where(same, 1.0, w[idx])
    cum = np.cumsum(g)
    take = np.clip(keff - (cum - g), 0.0, g)
    return [float(take @ np.asarray(v, np.float64)) for v in vals]


def resample_class(ci: ClassIndex, w: np.ndarray, k: int) -> np.ndarray:
    """Class CE, random, oracle and precision of resamples with instance weights ``w``.

    Args:
        ci: the class's index.
        w: ``(b, n)`` how often each instance's image is drawn (ones: the evaluated set).
        k: the requested K.

    Returns:
        ``(b, 4)`` float64: weighted means over the queries (a query counts as
        often as its image is drawn) of CE, random, oracle, precision; NaN
        where undefined (no query with a neighbour, no labelled query).
    """
    w = np.asarray(w, np.float64)
    if ci.fixed is not None:
        vals = ci.fixed
        ok = ~np.isnan(vals)
        num = w @ np.where(ok, vals, 0.0)
        den = w @ ok.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / den, np.nan)
    q = query_values(ci, w, k)  # (b, n, 4), NaN where a query has no value
    out = np.full((w.shape[0], 4), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(4):
            ok = ~np.isnan(q[..., j])
            wv = np.where(ok, w, 0.0)
            den = wv.sum(axis=1)
            out[:, j] = np.where(den > 0, (wv * np.where(ok, q[..., j], 0.0)).sum(axis=1) / den, np.nan)
    return out


def query_values(ci: ClassIndex, w: np.ndarray, k: int) -> np.ndarray:
    """Each query's CE, random, oracle and precision in resamples with instance weights ``w``.

    Args:
        ci: the class's index (self-gallery mode).
        w: ``(b, n)`` instance weights.
        k: the requested K.

    Returns:
        ``(b, n, 4)`` float64; NaN for a query that is not drawn, has no
        neighbour, or (precision) has no label.
    """
    w = np.asarray(w, np.float64)
    b, n = w.shape
    if ci.fixed is not None:
        return np.where((w > 0)[..., None], ci.fixed[None], np.nan)
    wc = w.sum(axis=1, keepdims=True)
    others_w = wc - w * (1.0 + ci.same_n) + ci.same_n  # the query's own image counts once
    keff = np.minimum(float(k), others_w)
    valid = (w > 0) & (keff > 0)
    # Random bound: sum_j weight_j CE(i, j) from the summed terms (the self pair is 0).
    t = ci.terms
    s = (wc * t.h[None] + (w @ t.h)[:, None] - (w @ t.log_floor) @ t.p.T - (w @ t.p) @ t.log_floor.T) / 8.0
    s -= (w - 1.0) * ci.same_sum
    with np.errstate(divide="ignore", invalid="ignore"):
        rnd = s / others_w
    ce = np.zeros((b, n))
    orc = np.zeros((b, n))
    prec = np.zeros((b, n))
    labelled = None
    if ci.labels is not None:
        labelled = np.array([x is not None for x in ci.labels], bool)
    nb_t, nb_same_t = np.ascontiguousarray(ci.nb.T), np.ascontiguousarray(ci.nb_same.T)
    orc_t, orc_same_t = np.ascontiguousarray(ci.orc_nb.T), np.ascontiguousarray(ci.orc_same.T)
    # float32 for the resamples (weights are small integers, exact), float64 for the point estimate.
    dt = np.float64 if b == 1 else np.float32
    nb_vals = [np.ascontiguousarray(ci.nb_ce.T, dtype=dt)]
    if ci.nb_label is not None:
        nb_vals.append(np.ascontiguousarray(ci.nb_label.T, dtype=dt))
    orc_vals = [np.ascontiguousarray(ci.orc_ce.T, dtype=dt)]
    step = max(1, _BLOCK // max(1, n))
    for s0 in range(0, b, step):
        e0 = min(b, s0 + step)
        wb = w[s0:e0].astype(dt)
        kb = keff[s0:e0].astype(dt)
        sums, filled = _walk(wb, nb_t, nb_same_t, nb_vals, kb)
        ce[s0:e0] = sums[0]
        if ci.nb_label is not None:
            prec[s0:e0] = sums[1]
        (osum,), ofilled = _walk(wb, orc_t, orc_same_t, orc_vals, kb)
        orc[s0:e0] = osum
        if not ci.complete:
            short = valid[s0:e0] & ((filled < kb - 1e-3) | (ofilled < kb - 1e-3))
            for bb, i in zip(*np.nonzero(short)):
                (o, pce, same, lab), (oo, opce, osame) = _full_lists(ci, int(i))
                vv = [pce] + ([lab.astype(np.float64)] if lab is not None else [])
                r = _one(w[s0 + bb], o, same, vv, float(keff[s0 + bb, i]))
                ce[s0 + bb, i] = r[0]
                if lab is not None:
                    prec[s0 + bb, i] = r[1]
                orc[s0 + bb, i] = _one(w[s0 + bb], oo, osame, [opce], float(keff[s0 + bb, i]))[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.stack([ce / keff, rnd, orc / keff, prec / keff], axis=-1)
    out[~valid] = np.nan
    if labelled is None:
        out[..., 3] = np.nan
    else:
        out[:, ~labelled, 3] = np.nan
    return out
