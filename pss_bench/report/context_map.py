"""A t-SNE of one category's embeddings with each instance's context mask (the paper's Figure 5).

Left: the 2-D t-SNE (scikit-learn's ``TSNE``) of the L2-normalised
embeddings, with the 3x3 semantic context mask of a sample of instances drawn
at their positions. Right: the density map of all points (a Gaussian-smoothed
2-D histogram).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pss_bench.errors import PssBenchError
from pss_bench.evaluation.instances import InstanceSet
from pss_bench.report.common import colourise, context_window, crop_padded, gt_ids, palette, pyplot, save_figure
from pss_bench.metrics.context_error import semantic_map
from pss_bench.text import mpl_escape

FIG_INCHES = (12.0, 6.0)
THUMB_PX = 32


def tsne_2d(vectors: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """``(n, 2)`` t-SNE coordinates of ``(n, D)`` vectors (perplexity capped below n)."""
    from sklearn.manifold import TSNE

    n = vectors.shape[0]
    if n < 3:
        raise PssBenchError(f"a context map needs at least 3 instances with embeddings, found {n}")
    perp = float(min(perplexity, max(1.0, (n - 1) / 3)))
    init = "pca" if vectors.shape[1] >= 2 else "random"
    return TSNE(n_components=2, perplexity=perp, init=init, random_state=seed).fit_transform(
        np.asarray(vectors, dtype=np.float32)
    )


def context_thumbnails(inst: InstanceSet, rows: np.ndarray, size: int = THUMB_PX) -> np.ndarray:
    """``(len(rows), size, size, 3)`` uint8 coloured 3x3 semantic context masks (nearest resampling)."""
    cats = list(inst.gt.categories.values())
    colours = palette(len(cats))
    out = np.zeros((len(rows), size, size, 3), np.uint8)
    order = np.argsort(inst.image_index[rows], kind="stable")
    cur, ids, sem = None, None, None
    for i in order:
        row = int(rows[i])
        j = int(inst.image_index[row])
        if j != cur:
            cur = j
            ids = gt_ids(inst.gt, j)
            sem = semantic_map(ids, inst.gt.annotations[j].segments, cats)
        crop = crop_padded(sem, context_window(inst.boxes[row]), -2)
        ys = (np.arange(size) * crop.shape[0] // size).clip(0, crop.shape[0] - 1)
        xs = (np.arange(size) * crop.shape[1] // size).clip(0, crop.shape[1] - 1)
        out[i] = colourise(crop[np.ix_(ys, xs)], colours)
    return out


def category_rows(inst: InstanceSet, category: str) -> tuple[int, np.ndarray]:
    """``(category id, rows)`` of a category given by name or id.

    Raises:
        PssBenchError: unknown category, or not a thing category.
    """
    cats = inst.gt.categories
    match = [c for c in cats.values() if c.name == category or str(c.id) == str(category)]
    if not match:
        names = ", ".join(c.name for c in cats.values() if c.isthing)
        raise PssBenchError(f"{inst.gt.path}: no category {category!r} (thing categories: {names})")
    cat = match[0]
    if not cat.isthing:
        raise PssBenchError(f"{inst.gt.path}: category {cat.name!r} is stuff: Context Error covers thing instances only")
    return cat.id, np.flatnonzero(inst.category_ids == cat.id)


def figure_size_px() -> tuple[int, int]:
    from pss_bench.report.common import DPI

    return round(FIG_INCHES[0] * DPI), round(FIG_INCHES[1] * DPI)


def plot_context_map(
    inst: InstanceSet,
    category: str,
    out: str | os.PathLike,
    *,
    max_thumbnails: int = 150,
    seed: int = 0,
    perplexity: float = 30.0,
) -> Path:
    """Writes the context map of one category; returns ``out``."""
    from scipy.ndimage import gaussian_filter

    cat_id, rows = category_rows(inst, category)
    xy = tsne_2d(inst.embeddings[rows], seed=seed, perplexity=perplexity)
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(rows.shape[0], size=min(max_thumbnails, rows.shape[0]), replace=False))
    thumbs = context_thumbnails(inst, rows[shown])

    plt = pyplot()
    fig, (ax_map, ax_den) = plt.subplots(1, 2, figsize=FIG_INCHES)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.92, wspace=0.05)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(hi - lo, 1e-6)
    half = 0.025 * span.max()
    ax_map.scatter(xy[:, 0], xy[:, 1], s=2, c="lightgray", zorder=1)
    for (x, y), t in zip(xy[shown], thumbs):
        ax_map.imshow(t, extent=(x - half, x + half, y - half, y + half), interpolation="nearest", zorder=2)
    ax_map.set_xlim(lo[0] - 2 * half, hi[0] + 2 * half)
    ax_map.set_ylim(lo[1] - 2 * half, hi[1] + 2 * half)
    ax_map.set_aspect("auto")
    name = inst.gt.categories[cat_id].name
    ax_map.set_title(f"{mpl_escape(name)}: t-SNE of {rows.shape[0]} embeddings, {len(shown)} context masks", fontsize=9)

    hist, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=128, range=[[lo[0], hi[0] + 1e-9], [lo[1], hi[1] + 1e-9]])
    density = gaussian_filter(hist.T, sigma=3)
    ax_den.imshow(density, origin="lower", extent=(xe[0], xe[-1], ye[0], ye[-1]), cmap="magma", aspect="auto")
    ax_den.set_title("density", fontsize=9)
    for ax in (ax_map, ax_den):
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, out)
