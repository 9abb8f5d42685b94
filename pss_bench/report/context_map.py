"""A t-SNE of one category's embeddings with each instance's context mask (the paper's Figure 5).

Left: the 2-D t-SNE (scikit-learn's ``TSNE``) of the L2-normalised
embeddings, with the 3x3 semantic context mask of a sample of instances drawn
at their positions, in the dataset's colours (:mod:`pss_bench.report.palette`)
with a legend of the classes. Right: the density map of all points (a
Gaussian-smoothed 2-D histogram). With ``color_by="context"`` the points and
the thumbnails' frames take the colour of the instance's hidden context label
(SynthStreets' ``context.json``), with a legend of the labels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pss_bench.errors import PssBenchError
from pss_bench.evaluation.instances import InstanceSet
from pss_bench.metrics.context_error import semantic_map
from pss_bench.report.common import context_window, crop_padded, gt_ids, pyplot, save_figure
from pss_bench.report.palette import Palette, add_class_legend, colourise_semantic, dataset_palette
from pss_bench.text import mpl_escape

FIG_INCHES = (13.0, 7.4)
THUMB_PX = 32
COLOR_BY = ("class", "context")
FONT = 11
#: Colours of the hidden context labels, in sorted label order (matplotlib's tab10, then the rest of tab20).
CONTEXT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94")


def tsne_2d(vectors: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """``(n, 2)`` t-SNE coordinates of ``(n, D)`` vectors (perplexity capped below n)."""
    from sklearn.manifold import TSNE

    n = vectors.shape[0]
    if n < 3:
        raise PssBenchError(f"a context map needs at least 3 instances with embeddings, found {n}")
    from threadpoolctl import threadpool_limits

    perp = float(min(perplexity, max(1.0, (n - 1) / 3)))
    init = "pca" if vectors.shape[1] >= 2 else "random"
    # One thread: t-SNE's OpenMP threads spin against each other on a busy machine (400 points: 70 s on
    # 2 threads at load average 10, 4.8 s on one; 3.3 s on one with the machine less busy).
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perp, init=init, random_state=seed).fit_transform(
            np.asarray(vectors, dtype=np.float32)
        )


def context_thumbnails(inst: InstanceSet, rows: np.ndarray, size: int = THUMB_PX,
                       palette: Palette | None = None) -> tuple[np.ndarray, set[int]]:
    """``(len(rows), size, size, 3)`` uint8 coloured 3x3 semantic context masks (nearest resampling),
    and the category ids they show."""
    cats = list(inst.gt.categories.values())
    palette = palette or dataset_palette(inst.gt.categories, inst.gt.path)
    colours = palette.lut(cats)
    present: set[int] = set()
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
        small = crop[np.ix_(ys, xs)]
        present |= {cats[int(c)].id for c in np.unique(small) if c >= 0}
        out[i] = colourise_semantic(small, colours)
    return out, present


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
    color_by: str = "class",
    title: str | None = None,
    max_points: int | None = None,
) -> Path:
    """Writes the context map of one category; returns ``out``.

    Args:
        color_by: ``"class"``: grey points, thumbnails in the dataset's class colours with a class
            legend; ``"context"``: points and thumbnail frames coloured by the hidden context label
            (needs the GT's ``context.json``), with a legend of the labels (and of the classes).
        title: a line above the figure (e.g. the model's name).
        max_points: embed a seeded sample of at most this many instances (``None``: all).

    Raises:
        PssBenchError: unknown / stuff category, fewer than 3 instances, or ``color_by="context"``
            without context labels.
    """
    from scipy.ndimage import gaussian_filter

    if color_by not in COLOR_BY:
        raise PssBenchError(f"color_by must be one of {', '.join(COLOR_BY)}, got {color_by!r}")
    cat_id, rows = category_rows(inst, category)
    n_all = rows.shape[0]
    if max_points is not None and n_all > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_points, replace=False))
    labels = None
    if color_by == "context":
        if inst.labels is None:
            raise PssBenchError(f"{inst.gt.path}: no hidden context labels (SynthStreets' context.json next to "
                                f"the GT JSON) to colour by; use --color-by class")
        labels = np.array(["(none)" if v is None else str(v) for v in inst.labels[rows]], dtype=object)
    xy = tsne_2d(inst.embeddings[rows], seed=seed, perplexity=perplexity)
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(rows.shape[0], size=min(max_thumbnails, rows.shape[0]), replace=False))
    pal = dataset_palette(inst.gt.categories, inst.gt.path)
    thumbs, present = context_thumbnails(inst, rows[shown], palette=pal)

    plt = pyplot()
    fig, (ax_map, ax_den) = plt.subplots(1, 2, figsize=FIG_INCHES, gridspec_kw={"width_ratios": (1.5, 1)})
    n_leg = len(present) + (len(set(labels.tolist())) if labels is not None else 0)
    bottom = 0.17 if n_leg > 8 else 0.13
    fig.subplots_adjust(left=0.01, right=0.99, bottom=bottom, top=0.9, wspace=0.04)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(hi - lo, 1e-6)
    half = 0.025 * span.max()
    context_handles = []
    if labels is None:
        ax_map.scatter(xy[:, 0], xy[:, 1], s=3, c="0.7", zorder=1)
        frame = [None] * len(shown)
    else:
        from matplotlib.lines import Line2D

        names = sorted(set(labels.tolist()))
        col = {n: CONTEXT_COLOURS[i % len(CONTEXT_COLOURS)] for i, n in enumerate(names)}
        ax_map.scatter(xy[:, 0], xy[:, 1], s=8, c=[col[v] for v in labels], zorder=1)
        frame = [col[v] for v in labels[shown]]
        context_handles = [Line2D([], [], marker="s", ls="", markersize=9, markerfacecolor="white",
                                  markeredgewidth=2.5, markeredgecolor=col[n], label=mpl_escape(n)) for n in names]
    for (x, y), t, f in zip(xy[shown], thumbs, frame):
        ax_map.imshow(t, extent=(x - half, x + half, y - half, y + half), interpolation="nearest", zorder=2)
        if f is not None:
            from matplotlib.patches import Rectangle

            ax_map.add_patch(Rectangle((x - half, y - half), 2 * half, 2 * half, fill=False, ec=f, lw=2.0, zorder=3))
    ax_map.set_xlim(lo[0] - 2 * half, hi[0] + 2 * half)
    ax_map.set_ylim(lo[1] - 2 * half, hi[1] + 2 * half)
    ax_map.set_aspect("auto")
    name = inst.gt.categories[cat_id].name
    of = f" (a sample of {n_all})" if n_all > rows.shape[0] else ""
    ax_map.set_title(f"{mpl_escape(name)}: t-SNE of {rows.shape[0]} embeddings{of}, {len(shown)} drawn as their "
                     f"3x3 context masks", fontsize=FONT)

    hist, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=128, range=[[lo[0], hi[0] + 1e-9], [lo[1], hi[1] + 1e-9]])
    density = gaussian_filter(hist.T, sigma=3)
    ax_den.imshow(density, origin="lower", extent=(xe[0], xe[-1], ye[0], ye[-1]), cmap="magma", aspect="auto")
    ax_den.set_title("density of the points (bright: many)", fontsize=FONT)
    for ax in (ax_map, ax_den):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(mpl_escape(title), fontsize=FONT + 2)
    if context_handles:
        fig.legend(handles=context_handles, title="hidden context label (frame and point colour)",
                   fontsize=FONT - 1, title_fontsize=FONT - 1, loc="lower left", bbox_to_anchor=(0.01, 0.0),
                   ncol=2 if len(context_handles) > 2 else 1, frameon=False)
        add_class_legend(fig, pal, present, fontsize=FONT - 1, ncol=max(1, (len(present) + 1) // 2),
                         title="context mask classes (the dataset's colours)", y=0.0, x=0.72)
    else:
        add_class_legend(fig, pal, present, fontsize=FONT - 1, ncol=min(len(present), 10) or 1,
                         title="context mask classes (the dataset's colours)")
    return save_figure(fig, out)
