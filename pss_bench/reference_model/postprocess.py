"""Inference post-processing of PSS as pure tensor functions (outside ``forward``).

Pipeline for one image (paper sec. 3.4), see :func:`panoptic_inference`:

1. :func:`oversegment`: spherical k-means on the stride-4 embeddings (+ coordinates);
2. :func:`dynamic_partition`: a segment whose approximate concentration
   ``||sum_i v_i|| / |R|`` is below ``T_S`` is re-split with ``k = 4``;
3. classify every segment prototype with the segment classifier (with
   ``smooth_iterations``: its probabilities first averaged over touching
   segments of like embedding, :func:`smooth_probabilities`);
4. :func:`merge_stuff`: the segments of one stuff class become one segment;
5. :func:`merge_things`: merging of thing segments of the same class in
   order of prototype similarity; a pair merges only if one is the other's
   nearest neighbour and their cosine similarity is at least ``T_P``; the merged
   prototype is the normalised sum of both segments' embeddings (eq. 3). The
   *seeded* variant (:func:`find_seeds`) never merges two seed segments
   (segments covering a predicted centre).

No files; every function takes and returns tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from pss_bench.reference_model.config import InferenceConfig
from pss_bench.reference_model.kmeans import grouped_kmeans, pooled_kmeans


def _compact(labels: torch.Tensor) -> torch.Tensor:
    """Renumbers the non-negative labels to ``0..N-1`` (order kept); -1 stays -1."""
    if labels.numel() == 0:
        return labels.clone()
    top = int(labels.max())
    if top < 0:
        return torch.full_like(labels, -1)
    # a rank table over the label values (a bincount, not a sort of every pixel)
    present = torch.bincount(labels.reshape(-1) + 1, minlength=top + 2)[1:] > 0
    rank = torch.cumsum(present, 0) - 1
    return torch.where(labels >= 0, rank[labels.clamp(min=0)], torch.full_like(labels, -1))


def oversegment(
    embedding: torch.Tensor,
    valid: torch.Tensor | None,
    grid: Sequence[int],
    iterations: int = 10,
    coord_weight: float = 1.0,
    pool: int = 1,
) -> torch.Tensor:
    """k-means over-segmentation of one image.

    Args:
        embedding: ``(D, h, w)`` unit-norm embeddings.
        valid: ``(h, w)`` bool pixels to segment, or None for all.
        pool: cluster a ``pool x pool`` average-pooled map, then assign every
            pixel (:func:`~pss_bench.reference_model.kmeans.pooled_kmeans`;
            2 for stride-2 embeddings, as in training).

    Returns:
        ``(h, w)`` int64 segment labels ``0..N-1`` (compact), -1 where not valid.
    """
    assign = pooled_kmeans(embedding[None], None if valid is None else valid[None], tuple(grid), iterations,
                           coord_weight, pool=pool)
    return _compact(assign[0])


def segment_sums(embedding: torch.Tensor, labels: torch.Tensor, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-segment embedding sums and pixel counts.

    Args:
        embedding: ``(D, h, w)``.
        labels: ``(h, w)`` int64 in ``[-1, n)``.

    Returns:
        ``sums (n, D)`` float32 and ``counts (n,)`` int64.
    """
    d = embedding.shape[0]
    if n is None:
        n = int(labels.max()) + 1 if labels.numel() else 0
    flat = labels.reshape(-1)
    keep = flat >= 0
    x = embedding.reshape(d, -1).t().float()[keep]
    idx = flat[keep]
    sums = torch.zeros(n, d, device=embedding.device).index_add_(0, idx, x)
    counts = torch.zeros(n, dtype=torch.long, device=embedding.device).index_add_(0, idx, torch.ones_like(idx))
    return sums, counts


def concentration(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Approximate concentration ``||sum v|| / |R|`` in ``[0, 1]`` per segment, ``(N,)``."""
    return sums.norm(dim=1) / counts.clamp(min=1).float()


def dynamic_partition(
    embedding: torch.Tensor,
    labels: torch.Tensor,
    threshold: float,
    k: int = 4,
    iterations: int = 10,
    coord_weight: float = 1.0,
) -> torch.Tensor:
    """Re-splits every segment whose concentration is below ``threshold`` into ``k``.

    The sub-clusters start from a ``rows x cols`` grid over each segment's
    bounding box and run spherical k-means on the segment's own pixels (all
    low-concentration segments at once, :func:`grouped_kmeans`).

    Args:
        embedding: ``(D, h, w)`` unit-norm embeddings.
        labels: ``(h, w)`` int64 segments ``0..N-1``, -1 invalid.
        threshold: T_S.
        k: clusters per re-split segment.

    Returns:
        ``(h, w)`` int64 compact labels, -1 invalid.
    """
    if labels.numel() == 0 or int(labels.max()) < 0:
        return labels.clone()
    n = int(labels.max()) + 1
    sums, counts = segment_sums(embedding, labels, n)
    low = (concentration(sums, counts) < threshold) & (counts >= k)
    if not bool(low.any()):
        return _compact(labels)
    h, w = labels.shape
    flat = labels.reshape(-1)
    sel = (flat >= 0) & low[flat.clamp(min=0)]
    pix = torch.nonzero(sel)[:, 0]
    seg = flat[pix]
    group, g_inv = torch.unique(seg, return_inverse=True)
    ys = torch.div(pix, w, rounding_mode="floor").float()
    xs = (pix % w).float()
    ng = group.numel()
    big = torch.full((ng,), float("inf"), device=labels.device)
    y0 = big.scatter_reduce(0, g_inv, ys, "amin")
    x0 = big.scatter_reduce(0, g_inv, xs, "amin")
    y1 = (-big).scatter_reduce(0, g_inv, ys, "amax")
    x1 = (-big).scatter_reduce(0, g_inv, xs, "amax")
    rows = max(1, int(k**0.5))
    cols = -(-k // rows)
    ry = ((ys - y0[g_inv]) / (y1 - y0 + 1)[g_inv] * rows).floor().long()
    rx = ((xs - x0[g_inv]) / (x1 - x0 + 1)[g_inv] * cols).floor().long()
    init = (ry * cols + rx).clamp(max=k - 1)
    # the k-means features (kmeans_features) of the selected pixels only
    feats = embedding.reshape(embedding.shape[0], -1)[:, pix].t().float()
    if coord_weight:
        coords = torch.stack([(ys + 0.5) / h, (xs + 0.5) / w], 1)
        feats = torch.cat([feats, coord_weight * coords], 1)
    sub = grouped_kmeans(F.normalize(feats, dim=1), g_inv, init, k, iterations)
    new = flat * (k + 1)
    new[pix] = seg * (k + 1) + 1 + sub
    new = torch.where(flat >= 0, new, torch.full_like(new, -1))
    return _compact(new.reshape(h, w))


def merge_stuff(classes: torch.Tensor, isthing: torch.Tensor) -> torch.Tensor:
    """Parent of each segment after merging all stuff segments of one class.

    Args:
        classes: ``(N,)`` int64 predicted class index.
        isthing: ``(N,)`` bool.

    Returns:
        ``(N,)`` int64 index of the merged segment in ``0..M-1`` (order of first appearance kept by class).
    """
    n = classes.numel()
    key = torch.where(isthing, classes.new_tensor(10**9) + torch.arange(n, device=classes.device), classes)
    _, inv = torch.unique(key, return_inverse=True)
    return inv


def merge_things(
    sums: torch.Tensor,
    classes: torch.Tensor,
    isthing: torch.Tensor,
    threshold: float,
    seeds: torch.Tensor | None = None,
    adjacent: torch.Tensor | None = None,
) -> torch.Tensor:
    """Nearest-neighbour merging of thing segments, in rounds of disjoint pairs.

    A pair ``(i, j)`` of active thing segments of the same class is *allowed*
    when ``j`` is ``i``'s nearest neighbour or ``i`` is ``j``'s (over all
    active thing segments of that class), their cosine similarity is at least
    ``threshold`` and, when ``seeds`` is given, not both are seed segments
    (a merged segment is a seed if either part was): seeds keep instances
    apart. (The paper's seeded variant merges only a seed with a non-seed; with
    ideal embeddings and GT centres that rule loses 2.3 points of PQ-Th on
    SynthStreets val, since an instance whose mass centre falls on another
    segment keeps its non-seed parts apart.) Each round merges, at once,
    every pair whose members are each other's most similar allowed partner
    (mutually best pairs are disjoint; the most similar allowed pair of all is
    always one of them, so a round never merges nothing while a pair is
    allowed); the merged prototype is the normalised sum of both sums (eq. 3).
    Rounds repeat until no pair is allowed. Without seeds this equals greedy
    merging of the most similar allowed pair first whenever the pairs merged
    in one round do not compete; it needs a handful of rounds instead of one
    host synchronisation per merge. Stuff segments are left alone.

    Args:
        sums: ``(N, D)`` per-segment embedding sums.
        classes: ``(N,)`` int64.
        isthing: ``(N,)`` bool.
        threshold: T_P.
        seeds: ``(N,)`` bool seed segments, or None for the unseeded rule.
        adjacent: ``(N, N)`` bool, which segments touch (:func:`adjacency`);
            when given, only touching segments are candidates (a merged
            segment touches what either part touched).

    Returns:
        ``(N,)`` int64 parent: the index of the segment each one was merged into
        (its own index when not merged).
    """
    n = sums.shape[0]
    dev = sums.device
    parent = torch.arange(n, device=dev)
    if n < 2:
        return parent
    sums = sums.clone().float()
    active = isthing.clone()
    seeds = None if seeds is None else seeds.clone()
    adjacent = None if adjacent is None else adjacent.clone()
    same = classes[:, None] == classes[None, :]
    idx = torch.arange(n, device=dev)
    eye = idx[:, None] == idx[None, :]
    for _ in range(n):  # every round merges at least one pair
        proto = F.normalize(sums, dim=1)
        sim = proto @ proto.t()
        pair_ok = same & active[:, None] & active[None, :] & ~eye
        if adjacent is not None:
            pair_ok &= adjacent
        nn = sim.masked_fill(~pair_ok, float("-inf")).argmax(dim=1)
        is_nn = (nn[:, None] == idx[None, :]) & pair_ok.any(dim=1, keepdim=True)
        allowed = pair_ok & (sim >= threshold) & (is_nn | is_nn.t())
        if seeds is not None:
            allowed &= ~(seeds[:, None] & seeds[None, :])
        has = allowed.any(dim=1)
        if not bool(has.any()):
            break
        masked = sim.masked_fill(~allowed, float("-inf"))
        best = masked.argmax(dim=1)
        mutual = has & has[best] & (best[best] == idx) & (idx < best)
        if not bool(mutual.any()):  # ties broken differently on both sides: merge the single best pair
            flat = int(masked.argmax())
            i, j = flat // n, flat % n
            mutual = torch.zeros_like(has)
            mutual[min(i, j)] = True
            best = best.clone()
            best[min(i, j)] = max(i, j)
        keep = idx[mutual]
        drop = best[mutual]
        sums.index_add_(0, keep, sums[drop])
        active[drop] = False
        remap = idx.clone()
        remap[drop] = keep
        parent = remap[parent]
        if seeds is not None:
            seeds[keep] |= seeds[drop]
        if adjacent is not None:
            adjacent[keep] |= adjacent[drop]
            adjacent[:, keep] |= adjacent[:, drop]
    return parent


def adjacency(labels: torch.Tensor, n: int) -> torch.Tensor:
    """``(n, n)`` bool: segments ``i != j`` of ``labels`` (``-1`` VOID) that share a pixel edge."""
    adj = torch.zeros(n * n, dtype=torch.bool, device=labels.device)
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        edge = (a != b) & (a >= 0) & (b >= 0)
        adj[a[edge] * n + b[edge]] = True
    adj = adj.reshape(n, n)
    return adj | adj.t()


def smooth_probabilities(
    probs: torch.Tensor,
    prototypes: torch.Tensor,
    counts: torch.Tensor,
    adjacent: torch.Tensor,
    kappa: float,
    iterations: int,
) -> torch.Tensor:
    """Class probabilities averaged over touching segments of like embedding.

    Each round replaces a segment's probabilities by the mean over itself and
    its neighbours, each weighted by its pixel count and by
    ``exp(kappa * (cos(prototypes) - 1))``: a small segment whose neighbours
    of similar embedding agree on a class takes it, while a neighbour of
    another embedding (another object) has little say.

    Args:
        probs: ``(N, C)`` class probabilities.
        prototypes: ``(N, D)`` unit-norm segment prototypes.
        counts: ``(N,)`` pixel counts.
        adjacent: ``(N, N)`` bool, which segments touch (:func:`adjacency`).
        kappa: the concentration of the similarity weights.
        iterations: rounds of averaging (0 returns ``probs``).

    Returns:
        ``(N, C)`` float32 probabilities (rows sum to 1).
    """
    n = probs.shape[0]
    if iterations <= 0 or n == 0:
        return probs
    eye = torch.eye(n, dtype=torch.bool, device=probs.device)
    sim = (prototypes.float() @ prototypes.float().t()).clamp(max=1.0)
    weights = torch.where(adjacent | eye, torch.exp(kappa * (sim - 1.0)), torch.zeros((), device=probs.device))
    weights = weights * counts.float()[None, :]
    weights = weights / weights.sum(dim=1, keepdim=True)  # a segment always weighs itself: no row is 0
    out = probs.float()
    for _ in range(iterations):
        out = weights @ out
    return out


def find_seeds(seed_map: torch.Tensor, threshold: float, kernel: int, tolerance: float = 0.0) -> torch.Tensor:
    """Peaks of the centre heatmap.

    Args:
        seed_map: ``(h, w)`` float heatmap.
        threshold: minimum peak value.
        kernel: odd max-pool window.
        tolerance: cells within this much of their window's maximum count
            as maxima (near-ties of neighbouring centres).

    Returns:
        ``(h, w)`` bool, True at (near-)local maxima above ``threshold``.
    """
    pooled = F.max_pool2d(seed_map[None, None], kernel, stride=1, padding=kernel // 2)[0, 0]
    return (seed_map >= pooled - tolerance) & (seed_map > threshold)


@dataclass
class PanopticOutput:
    """The panoptic result of one image at embedding resolution.

    Attributes:
        labels: ``(h, w)`` int64 segment index ``0..N-1``, -1 VOID.
        classes: ``(N,)`` int64 class index.
        scores: ``(N,)`` float32 class probability of the merged prototype.
        isthing: ``(N,)`` bool.
        embeddings: ``(N, D)`` float32 normalised mean embedding of each segment.
        areas: ``(N,)`` int64 pixel counts at embedding resolution.
    """

    labels: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    isthing: torch.Tensor
    embeddings: torch.Tensor
    areas: torch.Tensor


def _apply_parent(labels: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    out = torch.where(labels >= 0, parent[labels.clamp(min=0)], torch.full_like(labels, -1))
    return _compact(out)


@torch.no_grad()
def panoptic_inference(
    embedding: torch.Tensor,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    thing_classes: torch.Tensor,
    cfg: InferenceConfig,
    *,
    seed_map: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    iterations: int = 10,
    coord_weight: float = 1.0,
    kmeans_pool: int = 1,
) -> PanopticOutput:
    """The whole post-processing of one image.

    Args:
        embedding: ``(D, h, w)`` unit-norm embeddings.
        classifier: prototypes ``(N, D)`` -> logits ``(N, C)``.
        thing_classes: ``(C,)`` bool.
        cfg: thresholds and cluster counts.
        seed_map: ``(h', w')`` centre probabilities (needed when ``cfg.seeded``),
            at the embedding's resolution or a coarser one (stride-4 seeds
            with stride-2 embeddings).
        valid: ``(h, w)`` bool, pixels to label (False: padding).
        iterations, coord_weight: k-means settings.
        kmeans_pool: see :func:`oversegment`.
    """
    emb = embedding.float()
    labels = oversegment(emb, valid, cfg.grid, iterations, coord_weight, pool=kmeans_pool)
    labels = dynamic_partition(emb, labels, cfg.concentration_threshold, cfg.split_k, iterations, coord_weight)
    n = int(labels.max()) + 1 if labels.numel() else 0
    thing_classes = thing_classes.to(emb.device)

    sums, counts = segment_sums(emb, labels, n)
    proto = F.normalize(sums, dim=1)
    probs = torch.softmax(classifier(proto).float(), dim=1)
    if cfg.smooth_iterations > 0 and n > 1:
        probs = smooth_probabilities(probs, proto, counts, adjacency(labels, n), cfg.smooth_kappa,
                                     cfg.smooth_iterations)
    classes = probs.max(dim=1).indices
    isthing = thing_classes[classes]
    # Stuff: one segment per class.
    parent = merge_stuff(classes, isthing)
    m = int(parent.max()) + 1 if n else 0
    cls_m = torch.zeros(m, dtype=torch.long, device=emb.device).scatter_(0, parent, classes)
    labels = _apply_parent(labels, parent)
    sums, counts = segment_sums(emb, labels, m)
    isthing = thing_classes[cls_m]
    seeds = None
    if cfg.seeded and seed_map is not None:
        peaks = find_seeds(seed_map.float(), cfg.seed_threshold, cfg.seed_nms_kernel, cfg.seed_nms_tolerance)
        py, px = torch.nonzero(peaks, as_tuple=True)
        h, w = labels.shape
        sh, sw = seed_map.shape
        # the label pixel under each peak cell's centre
        ly = ((py.float() + 0.5) * h / sh).long().clamp_(max=h - 1)
        lx = ((px.float() + 0.5) * w / sw).long().clamp_(max=w - 1)
        hit = labels[ly, lx]
        seeds = torch.zeros(m, dtype=torch.bool, device=emb.device)
        seeds[hit[hit >= 0]] = True
        seeds &= isthing
    adjacent = adjacency(labels, m) if cfg.merge_adjacent else None
    parent = merge_things(sums, cls_m, isthing, cfg.merge_threshold, seeds, adjacent)
    labels = _apply_parent(labels, parent)
    _, first = torch.unique(parent, return_inverse=True)
    k = int(first.max()) + 1 if m else 0
    cls_k = torch.zeros(k, dtype=torch.long, device=emb.device).scatter_(0, first, cls_m)
    sums, counts = segment_sums(emb, labels, k)
    proto = F.normalize(sums, dim=1)
    probs = torch.softmax(classifier(proto).float(), dim=1) if k else proto.new_zeros(0, 1)
    scores = probs.gather(1, cls_k[:, None])[:, 0] if k else proto.new_zeros(0)
    # Tiny segments and unsure things become VOID.
    isthing_k = thing_classes[cls_k]
    drop = (counts < cfg.min_area) | (isthing_k & (scores < cfg.thing_score_threshold))
    if bool(drop.any()):
        keep_idx = torch.where(drop, torch.full_like(counts, -1), torch.arange(k, device=emb.device))
        labels = _compact(torch.where(labels >= 0, keep_idx[labels.clamp(min=0)], labels))
        keep = ~drop
        cls_k, proto, scores, counts, isthing_k = cls_k[keep], proto[keep], scores[keep], counts[keep], isthing_k[keep]
    return PanopticOutput(labels, cls_k, scores, isthing_k, proto, counts)


def upsample_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour ``(h, w) -> (H, W)`` of an integer map (pixel-centre sampling)."""
    h, w = labels.shape
    hh, ww = size
    rows = ((torch.arange(hh, device=labels.device) + 0.5) * h / hh).long().clamp_(max=h - 1)
    cols = ((torch.arange(ww, device=labels.device) + 0.5) * w / ww).long().clamp_(max=w - 1)
    return labels[rows[:, None], cols[None, :]]


def to_panoptic(
    out: PanopticOutput, category_ids: Sequence[int], size: tuple[int, int]
) -> tuple[torch.Tensor, list[dict]]:
    """Panoptic id map and ``segments_info`` at input resolution.

    Args:
        out: the post-processed image.
        category_ids: dataset category id of every class index.
        size: ``(H, W)`` of the input image.

    Returns:
        ``(ids, segments_info)``: ``(H, W)`` int64 with segment ``i`` written as
        id ``i + 1`` (0 VOID), and one ``{"id", "category_id", "iscrowd",
        "area", "score"}`` dict per segment with a non-empty footprint.
    """
    full = upsample_labels(out.labels, size)
    ids = full + 1
    n = out.classes.numel()
    areas = torch.bincount(full[full >= 0].reshape(-1), minlength=n) if n else torch.zeros(0, dtype=torch.long)
    info = []
    for i, (c, s, a) in enumerate(zip(out.classes.tolist(), out.scores.tolist(), areas.tolist())):
        if a > 0:
            info.append({"id": i + 1, "category_id": int(category_ids[c]), "iscrowd": 0, "area": int(a), "score": float(s)})
    return ids, info
