"""Spherical k-means over-segmentation as batched tensor code (no gradient).

Two entry points:

* :func:`spherical_kmeans` clusters every image of a batch at once, with
  centroids initialised on a regular grid (SegSort's over-segmentation);
* :func:`grouped_kmeans` clusters a flat list of pixels split into groups
  (each group with its own ``k`` clusters), used to re-split segments during
  inference (dynamic partitioning).

Everything is one-hot / ``index_add`` arithmetic: no Python loop over pixels,
clusters or images (the assignment walks blocks of pixels only to keep its
scores in cache, :func:`nearest_centroid`). Ties in the assignment go to the lowest cluster index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_coordinates(h: int, w: int, device=None) -> torch.Tensor:
    """``(2, h, w)`` float32 pixel-centre coordinates ``(y, x)`` normalised to ``[0, 1]``."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


def kmeans_features(embedding: torch.Tensor, coord_weight: float) -> torch.Tensor:
    """Embeddings concatenated with weighted coordinates, re-normalised.

    Args:
        embedding: ``(B, D, h, w)`` L2-normalised embeddings.
        coord_weight: weight of the ``[0, 1]`` coordinates; 0: embeddings only.

    Returns:
        ``(B, D + 2, h, w)`` (or ``(B, D, h, w)`` when ``coord_weight == 0``), unit norm over dim 1.
    """
    if coord_weight == 0:
        return F.normalize(embedding.float(), dim=1)
    b, _, h, w = embedding.shape
    coords = pixel_coordinates(h, w, embedding.device).unsqueeze(0).expand(b, -1, -1, -1)
    return F.normalize(torch.cat([embedding.float(), coord_weight * coords], dim=1), dim=1)


def grid_init(h: int, w: int, grid: tuple[int, int], device=None) -> torch.Tensor:
    """``(h, w)`` int64 initial cluster of every pixel: its cell of a ``rows x cols`` grid."""
    rows, cols = grid
    r = torch.div(torch.arange(h, device=device) * rows, h, rounding_mode="floor")
    c = torch.div(torch.arange(w, device=device) * cols, w, rounding_mode="floor")
    return r[:, None] * cols + c[None, :]


# Score elements per block of the pixel x centroid product: a block of about
# 4 MB per thread stays in cache on a CPU, where the dense (N, K) product is
# memory-bound (bench/reference_inference.py: the whole post-processing at
# 1024x2048 went from 2.58 s to 1.06 s); a GPU takes the product in a few blocks.
_BLOCK_ELEMENTS = {"cpu": 1 << 20}
_BLOCK_ELEMENTS_DEFAULT = 1 << 26


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``argmax_k (x . centroids_k + bias_k)`` per pixel, computed in blocks of pixels.

    Exactly the argmax of the dense ``(B, N, K)`` scores (ties to the lowest
    index), without ever holding them.

    Args:
        x: ``(B, N, F)`` features.
        centroids: ``(B, K, F)``.
        bias: ``(B, 1, K)``: 0, or -inf for clusters to skip.

    Returns:
        ``(B, N)`` int64.
    """
    b, n, _ = x.shape
    k = centroids.shape[1]
    budget = _BLOCK_ELEMENTS.get(x.device.type, _BLOCK_ELEMENTS_DEFAULT)
    if x.device.type == "cpu":
        budget *= torch.get_num_threads()  # each thread takes its share of a block
    rows = max(256, budget // max(1, b * k))
    ct = centroids.transpose(1, 2)
    # max(...).indices, not argmax: the same first maximal index, and the faster of the two on a CPU
    if rows >= n:
        return torch.baddbmm(bias, x, ct).max(dim=2).indices
    out = torch.empty(b, n, dtype=torch.long, device=x.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        out[:, start:stop] = torch.baddbmm(bias, x[:, start:stop], ct).max(dim=2).indices
    return out


def _centroid_sums(x: torch.Tensor, assign: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums and counts per cluster. ``x (N, D)``, ``assign (N,)`` in ``[-1, k)``; -1 ignored."""
    keep = assign >= 0
    idx = assign.clamp(min=0)
    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
    sums.index_add_(0, idx, x * keep[:, None].to(x.dtype))
    counts = torch.zeros(k, dtype=torch.long, device=x.device).index_add_(0, idx, keep.long())
    return sums, counts


@torch.no_grad()
def spherical_kmeans(
    features: torch.Tensor,
    valid: torch.Tensor | None,
    grid: tuple[int, int],
    iterations: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched spherical k-means with a regular-grid initialisation.

    Initial centroids are the normalised mean features of the grid cells (a
    cell without valid pixels starts, and stays, empty). Each EM iteration
    assigns every valid pixel to the active centroid of highest cosine
    similarity, then sets each non-empty cluster's centroid to the normalised
    sum of its members (an emptied cluster keeps its centroid).

    Args:
        features: ``(B, F, h, w)`` unit-norm features (see :func:`kmeans_features`).
        valid: ``(B, h, w)`` bool, pixels to cluster (False: VOID / padding); None: all.
        grid: ``(rows, cols)``; ``K = rows * cols`` clusters.
        iterations: EM iterations.

    Returns:
        ``assign``: ``(B, h, w)`` int64 cluster index in ``[0, K)``, -1 on invalid pixels;
        ``centroids``: ``(B, K, F)`` float32 (zero rows for clusters never populated).
    """
    b, f, h, w = features.shape
    k = grid[0] * grid[1]
    x = features.float().permute(0, 2, 3, 1).reshape(b, h * w, f)
    if valid is None:
        valid = torch.ones(b, h, w, dtype=torch.bool, device=features.device)
    valid = valid.reshape(b, h * w)
    init = grid_init(h, w, grid, features.device).reshape(1, h * w).expand(b, -1)
    offsets = (torch.arange(b, device=features.device) * k)[:, None]
    assign = torch.where(valid, init, torch.full_like(init, -1))

    def m_step(assign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = torch.where(assign >= 0, assign + offsets, torch.full_like(assign, -1))
        sums, counts = _centroid_sums(x.reshape(b * h * w, f), flat.reshape(-1), b * k)
        return F.normalize(sums, dim=1).reshape(b, k, f), counts.reshape(b, k)

    centroids, counts = m_step(assign)
    active = counts > 0
    # -inf for clusters that never had a pixel, added inside the product (one pass over (B, N, K))
    bias = torch.zeros(b, 1, k, device=x.device).masked_fill(~active[:, None, :], float("-inf"))
    for _ in range(iterations):
        new = nearest_centroid(x, centroids, bias)
        assign = torch.where(valid, new, torch.full_like(new, -1))
        new_centroids, counts = m_step(assign)
        centroids = torch.where((counts > 0)[..., None], new_centroids, centroids)
    return assign.reshape(b, h, w), centroids


@torch.no_grad()
def assign_to_centroids(features: torch.Tensor, centroids: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """One assignment step: every valid pixel joins its most similar non-empty centroid.

    Used to carry a clustering found on a coarser (pooled) map to a finer one.

    Args:
        features: ``(B, F, h, w)`` unit-norm features.
        centroids: ``(B, K, F)`` (zero rows: clusters never populated, skipped).
        valid: ``(B, h, w)`` bool or None.

    Returns:
        ``(B, h, w)`` int64 cluster index in ``[0, K)``, -1 on invalid pixels.
    """
    b, f, h, w = features.shape
    x = features.float().permute(0, 2, 3, 1).reshape(b, h * w, f)
    active = centroids.abs().sum(-1) > 0
    bias = torch.zeros(b, 1, centroids.shape[1], device=x.device).masked_fill(~active[:, None, :], float("-inf"))
    assign = nearest_centroid(x, centroids.float(), bias).reshape(b, h, w)
    if valid is not None:
        assign = torch.where(valid, assign, torch.full_like(assign, -1))
    return assign


@torch.no_grad()
def pooled_kmeans(
    embedding: torch.Tensor,
    valid: torch.Tensor | None,
    grid: tuple[int, int],
    iterations: int,
    coord_weight: float,
    pool: int = 1,
) -> torch.Tensor:
    """Spherical k-means of ``(embedding + coordinates)`` run on a ``pool x pool`` average-pooled map.

    With ``pool == 1`` this is :func:`spherical_kmeans` on
    :func:`kmeans_features`. With ``pool == 2`` (stride-2 embeddings) the
    clustering runs at stride 4, as the paper's, and every stride-2 pixel then
    joins its most similar centroid (:func:`assign_to_centroids`): the EM
    iterations see a quarter of the stride-2 pixels.

    Args:
        embedding: ``(B, D, h, w)`` unit-norm embeddings.
        valid: ``(B, h, w)`` bool or None.

    Returns:
        ``(B, h, w)`` int64 cluster in ``[0, K)``, -1 on invalid pixels.
    """
    if pool == 1:
        assign, _ = spherical_kmeans(kmeans_features(embedding, coord_weight), valid, grid, iterations)
        return assign
    b, d, h, w = embedding.shape
    hp, wp = -(-h // pool), -(-w // pool)
    pad = (0, wp * pool - w, 0, hp * pool - h)
    emb = F.pad(embedding.float(), pad)
    vf = torch.ones(b, 1, h, w, device=embedding.device) if valid is None else valid[:, None].float()
    vf = F.pad(vf, pad)
    sums = F.avg_pool2d(emb * vf, pool)
    frac = F.avg_pool2d(vf, pool)
    pooled = F.normalize(sums, dim=1)
    assign_p, centroids = spherical_kmeans(kmeans_features(pooled, coord_weight), frac[:, 0] > 0, grid, iterations)
    del assign_p
    return assign_to_centroids(kmeans_features(embedding, coord_weight), centroids, valid)


@torch.no_grad()
def grouped_kmeans(
    x: torch.Tensor, group: torch.Tensor, init: torch.Tensor, k: int, iterations: int = 10
) -> torch.Tensor:
    """Spherical k-means inside groups: pixel ``i`` may only join clusters of ``group[i]``.

    Args:
        x: ``(N, F)`` unit-norm features.
        group: ``(N,)`` int64 group index in ``[0, G)``.
        init: ``(N,)`` int64 initial cluster within the group, in ``[0, k)``.
        k: clusters per group.
        iterations: EM iterations.

    Returns:
        ``(N,)`` int64 cluster within the group, in ``[0, k)``.
    """
    if x.shape[0] == 0:
        return init.clone()
    g = int(group.max()) + 1
    x = x.float()
    assign = init.clone()
    centroids, counts = _centroid_sums(x, group * k + assign, g * k)
    centroids = F.normalize(centroids, dim=1)
    active = (counts > 0).reshape(g, k)
    base = group * k
    inactive = ~active[group]
    for _ in range(iterations):
        # one (N, F) gather per candidate: never the (N, k, F) block
        scores = torch.stack([(x * centroids[base + j]).sum(1) for j in range(k)], 1)
        assign = scores.masked_fill_(inactive, float("-inf")).max(dim=1).indices
        sums, counts = _centroid_sums(x, group * k + assign, g * k)
        centroids = torch.where((counts > 0)[:, None], F.normalize(sums, dim=1), centroids)
    return assign
