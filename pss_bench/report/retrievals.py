"""A query instance and its top-k retrievals with their contexts (the paper's Figures 1 and 4), and the
GT / prediction panels of a query.

Colours are the dataset's (:mod:`pss_bench.report.palette`); every figure has a legend of the classes it shows.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pss_bench.evaluation.context_error import CategoryRetrieval, retrieve
from pss_bench.evaluation.instances import InstanceSet
from pss_bench.metrics.context_error import PairTerms, pair_ce_rows, semantic_map
from pss_bench.report.common import ImageFinder, context_window, crop_padded, gt_ids, pyplot, save_figure
from pss_bench.report.palette import (
    Palette,
    add_class_legend,
    colourise_panoptic,
    colourise_semantic,
    dataset_palette,
    segment_boundaries,
)
from pss_bench.text import mpl_escape

PANEL_INCHES = 2.4
#: Left and right margin of a strip: the outer panels' titles may be wider than their panel.
SIDE_INCHES = 0.35
TITLE_INCHES = 0.75
ROW_TITLE_INCHES = 0.5
LEGEND_ROW_INCHES = 0.32
LEGEND_COLUMNS = 8
FONT = 10
#: The picture of an instance shows at least this many pixels a side around it: a query of a few pixels
#: is drawn in a readable neighbourhood (its 3x3 context window is outlined inside).
MIN_VIEW_PX = 96


def title_lines(*lines: object) -> str:
    """Lines joined for a matplotlib title, each escaped on its own (escaping the whole would print ``\\n``)."""
    return "\n".join(mpl_escape(line) for line in lines)


def view_window(box: Sequence[int], min_px: int = MIN_VIEW_PX) -> tuple[int, int, int, int]:
    """The context window of ``box`` grown (about its centre) to at least ``min_px`` a side."""
    x0, y0, x1, y1 = context_window(box)
    w, h = x1 - x0, y1 - y0
    gw, gh = max(0, min_px - w), max(0, min_px - h)
    return x0 - gw // 2, y0 - gh // 2, x1 + gw - gw // 2, y1 + gh - gh // 2


@dataclass(frozen=True)
class Panel:
    """One instance drawn in a neighbourhood, and its ``3w x 3h`` context.

    Attributes:
        picture: ``(h, w, 3)`` uint8 RGB crop of :func:`view_window` (the coloured semantic map without images).
        context: ``(3h, 3w, 3)`` uint8 coloured semantic crop of the context window.
        mask: ``(h, w)`` bool the instance's pixels in ``picture``.
        context_box: ``(x0, y0, x1, y1)`` the context window in ``picture``'s pixel coordinates.
        title: the panel's caption (lines).
        classes: category ids present in ``context``, with ``-1`` for void and ``-2`` for outside the image.
        zoom: for an instance whose context window is smaller than :data:`MIN_VIEW_PX`, the RGB crop of
            that window (drawn enlarged, pixel for pixel, in a corner of the picture); else ``None``.
        zoom_mask: the instance's pixels in ``zoom``.
    """

    picture: np.ndarray
    context: np.ndarray
    mask: np.ndarray
    context_box: tuple[int, int, int, int]
    title: str
    classes: frozenset = frozenset()
    zoom: np.ndarray | None = None
    zoom_mask: np.ndarray | None = None


class _PanelMaker:
    def __init__(self, images_root: str | os.PathLike | None, palette_cache: dict | None = None) -> None:
        self.root = images_root
        self._finders: dict[int, ImageFinder] = {}
        self._ids: dict[tuple[int, int], np.ndarray] = {}
        self._palettes = palette_cache if palette_cache is not None else {}

    def finder(self, inst: InstanceSet) -> ImageFinder:
        """One finder per GT: it knows that GT's ``images[*].file_name``."""
        f = self._finders.get(id(inst.gt))
        if f is None:
            f = self._finders[id(inst.gt)] = ImageFinder(self.root, inst.gt.image_files)
        return f

    def palette(self, inst: InstanceSet) -> Palette:
        return dataset_palette(inst.gt.categories, inst.gt.path, cache=self._palettes)

    def __call__(self, inst: InstanceSet, row: int, title: str) -> Panel:
        j = int(inst.image_index[row])
        key = (id(inst), j)
        if key not in self._ids:
            if len(self._ids) >= 16:  # a few decoded maps are enough: neighbours rarely share images
                self._ids.clear()
            self._ids[key] = gt_ids(inst.gt, j)
        ids = self._ids[key]
        ann = inst.gt.annotations[j]
        cats = list(inst.gt.categories.values())
        lut = self.palette(inst).lut(cats)
        window = context_window(inst.boxes[row])
        view = view_window(inst.boxes[row])
        sem = semantic_map(ids, ann.segments, cats)
        sem_ctx = crop_padded(sem, window, -2)
        context = colourise_semantic(sem_ctx, lut)
        present = frozenset(cats[int(i)].id if i >= 0 else int(i) for i in np.unique(sem_ctx))
        mask = crop_padded(ids == inst.segment_ids[row], view, False)
        rgb = self.finder(inst).load(ann.image_id, ids.shape)
        picture = (crop_padded(rgb, view, 128) if rgb is not None
                   else colourise_semantic(crop_padded(sem, view, -2), lut))
        box = (window[0] - view[0], window[1] - view[1], window[2] - view[0], window[3] - view[1])
        zoom = zoom_mask = None
        if view != window:  # a small instance: its context window enlarged in a corner
            x0, y0, x1, y1 = box
            zoom, zoom_mask = picture[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        return Panel(picture, context, mask, box, title, present, zoom, zoom_mask)


def retrieval_panels(
    queries: InstanceSet,
    query_row: int,
    gallery: InstanceSet | None,
    k: int,
    images_root: str | os.PathLike | None = None,
    gallery_images_root: str | os.PathLike | None = None,
    retrieval: CategoryRetrieval | None = None,
) -> list[Panel]:
    """The query's panel, then one per retrieved instance (best first), captioned with the pair CE.

    Args:
        retrieval: the query category's retrieval the Context Error was
            scored on, with at least ``k`` neighbours (its first ``k`` are
            drawn); ``None``: search now.
    """
    cat = int(queries.category_ids[query_row])
    r = retrieval
    if r is not None:  # enough neighbours: k, or every other instance there is
        possible = r.gallery_rows.shape[0] - (1 if r.self_index is not None else 0)
        if r.category_id != cat or r.neighbours.shape[1] < min(k, possible):
            r = None
    if r is None:
        r = retrieve(queries, gallery, k, cat)
    pos = int(np.flatnonzero(r.query_rows == query_row)[0])
    gal = gallery if gallery is not None else queries
    nb_rows = r.gallery_rows[r.neighbours[pos][:k]]
    q_terms = PairTerms.from_distributions(queries.distributions[[query_row]])
    g_terms = PairTerms.from_distributions(gal.distributions[nb_rows])
    ces = pair_ce_rows(q_terms, g_terms, np.arange(nb_rows.shape[0])[None, :])[0] if nb_rows.size else []
    make_q = _PanelMaker(images_root)
    make_g = make_q if gallery is None else _PanelMaker(gallery_images_root or images_root)
    name = queries.gt.categories[cat].name
    panels = [make_q(queries, query_row, title_lines(
        f"query: {name}", f"{queries.image_id(query_row)}:{int(queries.segment_ids[query_row])}"))]
    for i, (row, ce) in enumerate(zip(nb_rows, ces), 1):
        panels.append(make_g(gal, int(row), title_lines(
            f"#{i}   pair CE {ce:.3f}", f"{gal.image_id(int(row))}:{int(gal.segment_ids[row])}")))
    return panels


def _legend_rows(n_classes: int) -> int:
    return max(1, math.ceil(n_classes / LEGEND_COLUMNS))


def legend_columns(n_classes: int) -> int:
    """Columns of a legend of ``n_classes`` entries: rows as full as possible, at most :data:`LEGEND_COLUMNS`."""
    return max(1, math.ceil(n_classes / _legend_rows(n_classes)))


def figure_size_px(n_panels: int, n_classes: int = 0) -> tuple[int, int]:
    """``(width, height)`` in pixels of a retrieval figure with ``n_panels`` columns and a legend of ``n_classes``."""
    from pss_bench.report.common import DPI

    w, h = _strip_inches(n_panels, n_classes)
    return round(w * DPI), round(h * DPI)


def _strip_inches(n_panels: int, n_classes: int) -> tuple[float, float]:
    legend = (_legend_rows(n_classes) + 1) * LEGEND_ROW_INCHES if n_classes else 0.0
    return (max(n_panels, 4) * PANEL_INCHES + 2 * SIDE_INCHES,
            TITLE_INCHES + 2 * (PANEL_INCHES + ROW_TITLE_INCHES) + legend)


def _draw_picture(ax, p: Panel) -> None:
    ax.imshow(p.picture, interpolation="bilinear" if max(p.picture.shape[:2]) < 200 else "antialiased")
    if p.mask.any():
        ax.contour(p.mask.astype(np.float32), levels=[0.5], colors=["yellow"], linewidths=1.5)
    x0, y0, x1, y1 = p.context_box
    if (x1 - x0, y1 - y0) != p.picture.shape[1::-1]:
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.0, ls="--"))
    if p.zoom is not None and p.zoom.size:
        h, w = p.zoom.shape[:2]
        side = 0.42
        ins = ax.inset_axes([1 - side * min(1.0, w / h), 1 - side * min(1.0, h / w), side * min(1.0, w / h),
                             side * min(1.0, h / w)])
        ins.imshow(p.zoom, interpolation="nearest")
        if p.zoom_mask is not None and p.zoom_mask.any():
            ins.contour(p.zoom_mask.astype(np.float32), levels=[0.5], colors=["yellow"], linewidths=1.0)
        ins.set_xticks([])
        ins.set_yticks([])
        for spine in ins.spines.values():
            spine.set_edgecolor("white")
            spine.set_linewidth(1.5)


def plot_retrievals(panels: list[Panel], out: str | os.PathLike, suptitle: str | None = None,
                    palette: Palette | None = None) -> Path:
    """Two rows: pictures with the instance outlined, then the 3x3 semantic contexts; a legend of their classes.

    Args:
        panels: from :func:`retrieval_panels`.
        suptitle: the figure's title (may hold several lines, each escaped).
        palette: names the legend's classes; ``None``: the legend is left out (a caller without the GT).
    """
    plt = pyplot()
    n = len(panels)
    classes = sorted(set().union(*(p.classes for p in panels))) if palette is not None else []
    width, height = _strip_inches(n, len(classes))
    fig, axes = plt.subplots(2, n, figsize=(width, height), squeeze=False)
    legend_h = height - TITLE_INCHES - 2 * (PANEL_INCHES + ROW_TITLE_INCHES)
    used = n * PANEL_INCHES / width
    fig.subplots_adjust(left=(1 - used) / 2, right=1 - (1 - used) / 2,
                        bottom=legend_h / height, top=1 - TITLE_INCHES / height,
                        wspace=0.08, hspace=ROW_TITLE_INCHES / PANEL_INCHES)
    for c, p in enumerate(panels):
        top, bottom = axes[0, c], axes[1, c]
        _draw_picture(top, p)
        top.set_title(p.title, fontsize=FONT)
        bottom.imshow(p.context, interpolation="nearest")
        h, w = p.context.shape[:2]
        for t in (1, 2):
            bottom.axhline(t * h / 3 - 0.5, color="white", lw=0.8, ls="--")
            bottom.axvline(t * w / 3 - 0.5, color="white", lw=0.8, ls="--")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("picture", fontsize=FONT)
    axes[1, 0].set_ylabel("3x3 context", fontsize=FONT)
    return _finish(fig, out, suptitle, height, palette, classes, "classes (the dataset's colours)")


# --------------------------------------------------------------------------- GT / prediction panels


@dataclass(frozen=True)
class PanopticView:
    """One column of a GT / prediction figure: a title and a ``(H, W)`` id map of the same crop."""

    title: str
    ids: np.ndarray
    segments: object  # Segments
    rgb: np.ndarray | None = None


def panoptic_classes(views: Sequence[PanopticView]) -> set[int]:
    """Category ids drawn in the views, with ``-1`` where some pixel is void and ``-2`` outside the image."""
    classes: set[int] = set()
    for v in views:
        present = set(np.unique(v.ids).tolist())
        seg = dict(zip(v.segments.ids.tolist(), v.segments.category_ids.tolist()))
        classes |= {int(seg[i]) for i in present if i in seg}
        if -2 in present:
            classes.add(-2)
        if any(i not in seg and i != -2 for i in present):
            classes.add(-1)
    return classes


def plot_prediction_panels(
    picture: np.ndarray | None,
    mask: np.ndarray,
    views: Sequence[PanopticView],
    palette: Palette,
    things: set[int],
    out: str | os.PathLike,
    suptitle: str | None = None,
) -> Path:
    """One row: the picture with the query outlined, then each panoptic map (GT, model A, model B, ...).

    Stuff is drawn in its category colour, things in instance shades with white outlines between
    segments; black is void (unlabelled, or no prediction), grey outside the image.
    """
    plt = pyplot()
    cols = (1 if picture is not None else 0) + len(views)
    classes = panoptic_classes(views) & (set(palette.colours) | {-1, -2})
    n_leg = _legend_rows(len(classes)) + 1 if classes else 0
    width = max(cols, 4) * (PANEL_INCHES + 0.6)
    h, w = views[0].ids.shape[:2]
    panel_h = 0.94 * (PANEL_INCHES + 0.6) * min(1.5, max(0.3, h / max(w, 1)))
    height = 0.45 + panel_h + ROW_TITLE_INCHES + n_leg * LEGEND_ROW_INCHES
    fig, axes = plt.subplots(1, cols, figsize=(width, height), squeeze=False)
    used = cols * (PANEL_INCHES + 0.6) / width
    fig.subplots_adjust(left=(1 - used) / 2 + 0.005, right=1 - (1 - used) / 2 - 0.005,
                        bottom=n_leg * LEGEND_ROW_INCHES / height, top=1 - (0.45 + ROW_TITLE_INCHES) / height,
                        wspace=0.06)
    axs = list(axes[0])
    if picture is not None:
        ax = axs.pop(0)
        ax.imshow(picture, interpolation="bilinear")
        if mask.any():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=["yellow"], linewidths=1.5)
        ax.set_title("image (query outlined)", fontsize=FONT)
    for ax, v in zip(axs, views):
        img = colourise_panoptic(v.ids, v.segments, palette, things)
        img[segment_boundaries(v.ids)] = 255
        ax.imshow(img, interpolation="nearest")
        if mask.any():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=["yellow"], linewidths=1.0, linestyles="--")
        ax.set_title(mpl_escape(v.title), fontsize=FONT)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, out, suptitle, height, palette, classes,
                   "classes (instances in shades of their class colour; black: void)")


def _finish(fig, out, suptitle, height: float, palette, classes, legend_title: str):
    """The strips' and panels' common ending: title, class legend, saved figure."""
    if suptitle:
        fig.suptitle(suptitle, fontsize=FONT + 2, y=1 - 0.08 / height, va="top")
    if classes:
        add_class_legend(fig, palette, classes, fontsize=FONT, ncol=legend_columns(len(classes)), title=legend_title)
    return save_figure(fig, out)
