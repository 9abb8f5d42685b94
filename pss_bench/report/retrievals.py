"""A query instance and its top-k retrievals with their contexts (the paper's Figures 1 and 4)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pss_bench.evaluation.context_error import CategoryRetrieval, retrieve
from pss_bench.evaluation.instances import InstanceSet
from pss_bench.report.common import (
    ImageFinder,
    colourise,
    context_window,
    crop_padded,
    gt_ids,
    palette,
    pyplot,
    save_figure,
)
from pss_bench.metrics.context_error import PairTerms, pair_ce_rows, semantic_map
from pss_bench.text import mpl_escape

PANEL_INCHES = 2.0
TITLE_INCHES = 0.4


@dataclass(frozen=True)
class Panel:
    """One instance drawn in its ``3w x 3h`` context window.

    Attributes:
        picture: ``(3h, 3w, 3)`` uint8 RGB crop (or the coloured semantic map without images).
        context: ``(3h, 3w, 3)`` uint8 coloured semantic crop.
        mask: ``(3h, 3w)`` bool the instance's pixels.
        title: the panel's caption.
    """

    picture: np.ndarray
    context: np.ndarray
    mask: np.ndarray
    title: str


class _PanelMaker:
    def __init__(self, images_root: str | os.PathLike | None) -> None:
        self.root = images_root
        self._finders: dict[int, ImageFinder] = {}
        self._ids: dict[tuple[int, int], np.ndarray] = {}

    def finder(self, inst: InstanceSet) -> ImageFinder:
        """One finder per GT: it knows that GT's ``images[*].file_name``."""
        f = self._finders.get(id(inst.gt))
        if f is None:
            f = self._finders[id(inst.gt)] = ImageFinder(self.root, inst.gt.image_files)
        return f

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
        colours = palette(len(cats))
        window = context_window(inst.boxes[row])
        sem = semantic_map(ids, ann.segments, cats)
        context = colourise(crop_padded(sem, window, -2), colours)
        mask = crop_padded(ids == inst.segment_ids[row], window, False)
        rgb = self.finder(inst).load(ann.image_id, ids.shape)
        picture = crop_padded(rgb, window, 128) if rgb is not None else context
        return Panel(picture, context, mask, title)


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
    panels = [make_q(queries, query_row, f"query {name}\n{queries.image_id(query_row)}:{int(queries.segment_ids[query_row])}")]
    for i, (row, ce) in enumerate(zip(nb_rows, ces), 1):
        panels.append(make_g(gal, int(row), f"#{i}  CE {ce:.3f}\n{gal.image_id(int(row))}:{int(gal.segment_ids[row])}"))
    return panels


def figure_size_px(n_panels: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of a retrieval figure with ``n_panels`` columns."""
    from pss_bench.report.common import DPI

    return round(n_panels * PANEL_INCHES * DPI), round((2 * PANEL_INCHES + TITLE_INCHES) * DPI)


def plot_retrievals(panels: list[Panel], out: str | os.PathLike, suptitle: str | None = None) -> Path:
    """Two rows: pictures with the instance outlined, then 3x3 semantic context masks."""
    plt = pyplot()
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(n * PANEL_INCHES, 2 * PANEL_INCHES + TITLE_INCHES), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - TITLE_INCHES / (2 * PANEL_INCHES + TITLE_INCHES),
                        wspace=0.05, hspace=0.25)
    for c, p in enumerate(panels):
        top, bottom = axes[0, c], axes[1, c]
        top.imshow(p.picture, interpolation="nearest")
        if p.mask.any():
            top.contour(p.mask.astype(np.float32), levels=[0.5], colors=["yellow"], linewidths=1.0)
        top.set_title(mpl_escape(p.title), fontsize=6)
        bottom.imshow(p.context, interpolation="nearest")
        h, w = p.context.shape[:2]
        for t in (1, 2):
            bottom.axhline(t * h / 3 - 0.5, color="white", lw=0.6, ls="--")
            bottom.axvline(t * w / 3 - 0.5, color="white", lw=0.6, ls="--")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    if suptitle:
        fig.suptitle(mpl_escape(suptitle), fontsize=8)
    return save_figure(fig, out)
