"""The dataset's own category colours, instance shades, and legends for the figures.

Where the colours come from, first match wins:

1. the GT JSON's ``categories[*].color`` (COCO panoptic's JSON carries it; so
   does the Cityscapes panoptic JSON that cityscapesscripts'
   ``createPanopticImgs`` writes, and SynthStreets', which uses Cityscapes'
   label table);
2. for a category named like a Cityscapes label, that label's ``color`` in
   ``cityscapesscripts.helpers.labels``;
3. a distinct colour from matplotlib's ``tab20`` (then ``hsv``), in the order
   of the categories.

Instance shades follow panopticapi's visualisation: each thing segment gets
its category's colour moved by up to :data:`SHADE_DIST` per channel, so two
cars are two shades of Cityscapes' car blue; stuff keeps the category colour.
Unlike panopticapi's random draw, the shade is a function of the segment id,
so a figure is the same on every run.

Rendering only: reads the GT JSON's category list, nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from pss_bench.structures import Category

log = logging.getLogger(__name__)

#: Largest per-channel move of an instance shade from its category colour (panopticapi's ``max_dist``).
SHADE_DIST = 30
VOID_COLOUR = (0, 0, 0)
OUTSIDE_COLOUR = (128, 128, 128)


@dataclass(frozen=True)
class Palette:
    """Category id -> ``(r, g, b)`` uint8 colour, with where the colours came from.

    Attributes:
        colours: category id -> RGB.
        names: category id -> name.
        source: a few words for captions ("the GT JSON's category colours", ...).
    """

    colours: dict[int, tuple[int, int, int]]
    names: dict[int, str]
    source: str

    def lut(self, categories: Iterable[Category]) -> np.ndarray:
        """``(C, 3)`` uint8 colours in the order of ``categories`` (the class index order of a semantic map)."""
        return np.array([self.colours[c.id] for c in categories], dtype=np.uint8).reshape(-1, 3)

    def hex(self, cid: int) -> str:
        r, g, b = self.colours[cid]
        return f"#{r:02x}{g:02x}{b:02x}"


def _fallback(n: int) -> np.ndarray:
    from matplotlib import colormaps

    if n <= 20:
        cols = colormaps["tab20"](np.arange(n))[:, :3]
    else:
        cols = colormaps["hsv"](np.linspace(0, 1, n, endpoint=False))[:, :3]
    return (cols * 255).round().astype(np.uint8)


def _json_colours(gt_json: Path | None) -> dict[int, tuple[int, int, int]]:
    """``categories[*].color`` of a panoptic JSON, where every listed colour is three bytes."""
    from pss_bench.report.common import gt_json_facts

    facts = gt_json_facts(gt_json) if gt_json is not None else None
    return dict(facts.colours) if facts is not None else {}


def _cityscapes_colours(categories: Iterable[Category]) -> dict[int, tuple[int, int, int]]:
    from cityscapesscripts.helpers.labels import name2label

    return {c.id: tuple(int(v) for v in name2label[c.name].color) for c in categories if c.name in name2label}


def dataset_palette(categories: Mapping[int, Category] | Iterable[Category], gt_json: Path | str | None = None,
                    cache: dict | None = None) -> Palette:
    """The palette of a GT's categories (see the module docstring for the order of sources).

    Args:
        categories: the GT's categories.
        gt_json: the GT JSON, for its ``color`` fields.
        cache: a dict to keep palettes in, keyed by ``gt_json`` (a report draws many figures of one GT).
    """
    cats = list(categories.values()) if isinstance(categories, Mapping) else list(categories)
    key = (str(gt_json), tuple(c.id for c in cats))
    if cache is not None and key in cache:
        return cache[key]
    from_json = _json_colours(Path(gt_json)) if gt_json is not None else {}
    from_cs = _cityscapes_colours(cats)
    fallback = _fallback(len(cats))
    colours: dict[int, tuple[int, int, int]] = {}
    used = set()
    for i, c in enumerate(cats):
        if c.id in from_json:
            colours[c.id] = from_json[c.id]
            used.add("json")
        elif c.id in from_cs:
            colours[c.id] = from_cs[c.id]
            used.add("cityscapes")
        else:
            colours[c.id] = tuple(int(v) for v in fallback[i])
            used.add("default")
    source = " + ".join({"json": "the GT JSON's category colours",
                         "cityscapes": "Cityscapes' label colours (cityscapesscripts)",
                         "default": "matplotlib's tab20"}[u] for u in ("json", "cityscapes", "default") if u in used)
    pal = Palette(colours, {c.id: c.name for c in cats}, source)
    if cache is not None:
        cache[key] = pal
    return pal


def instance_shade(colour: tuple[int, int, int], segment_id: int) -> tuple[int, int, int]:
    """The category colour moved by up to :data:`SHADE_DIST` per channel, a function of the segment id."""
    rng = np.random.default_rng(int(segment_id) & 0xFFFFFFFF)
    jitter = rng.integers(-SHADE_DIST, SHADE_DIST + 1, size=3)
    return tuple(int(v) for v in np.clip(np.asarray(colour, np.int64) + jitter, 0, 255))


def colourise_semantic(sem: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``(H, W)`` class indices (-1: none/void, -2: outside the image) to ``(H, W, 3)`` uint8."""
    full = np.concatenate([np.array([OUTSIDE_COLOUR, VOID_COLOUR], np.uint8), lut])
    return full[sem + 2]


def colourise_panoptic(ids: np.ndarray, segments, palette: Palette, things: set[int]) -> np.ndarray:
    """``(H, W)`` panoptic ids to ``(H, W, 3)`` uint8: stuff in its category colour, things in instance shades.

    Args:
        ids: ``(H, W)`` int64 segment ids (``-2``: outside the image; ids not in ``segments``: void).
        segments: the image's :class:`~pss_bench.structures.Segments`.
        palette: category colours.
        things: thing category ids.
    """
    out = np.empty(ids.shape + (3,), np.uint8)
    out[...] = VOID_COLOUR
    out[ids == -2] = OUTSIDE_COLOUR
    for sid, cid in zip(segments.ids.tolist(), segments.category_ids.tolist()):
        if cid not in palette.colours:
            continue
        m = ids == sid
        if not m.any():
            continue
        col = palette.colours[cid]
        out[m] = instance_shade(col, sid) if cid in things else col
    return out


def segment_boundaries(ids: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels whose right or lower neighbour has another id."""
    b = np.zeros(ids.shape, bool)
    b[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    b[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return b


#: Legend entries of the colours that are no class, by the ids :func:`colourise_semantic` gives them.
SPECIAL = {-1: ("void (no class)", VOID_COLOUR), -2: ("outside the image", OUTSIDE_COLOUR)}


def legend_handles(palette: Palette, category_ids: Iterable[int]):
    """matplotlib patches, one per category id present (in the palette's order), labelled with the name;
    then void (``-1``) and outside the image (``-2``) where present."""
    from matplotlib.patches import Patch

    from pss_bench.text import mpl_escape

    present = set(int(c) for c in category_ids)
    out = [Patch(facecolor=np.asarray(col) / 255, edgecolor="black", linewidth=0.5,
                 label=mpl_escape(palette.names[cid]))
           for cid, col in palette.colours.items() if cid in present]
    out += [Patch(facecolor=np.asarray(col) / 255, edgecolor="black", linewidth=0.5, label=label)
            for sid, (label, col) in SPECIAL.items() if sid in present and sid not in palette.colours]
    return out


def add_class_legend(fig, palette: Palette, category_ids: Iterable[int], *, fontsize: float = 11,
                     y: float = 0.0, ncol: int | None = None, title: str | None = "classes", x: float = 0.5):
    """A legend of the categories present along the bottom of ``fig`` (centred at ``x``, ``y``); returns it."""
    handles = legend_handles(palette, category_ids)
    if not handles:
        return None
    ncol = ncol or min(len(handles), 10)
    return fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(x, y), ncol=ncol, fontsize=fontsize,
                      title=title, title_fontsize=fontsize, frameon=False, handlelength=1.2, columnspacing=1.0)
