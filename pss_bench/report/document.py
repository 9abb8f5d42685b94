"""The ``pss-bench compare --report`` folder: report.html, report.md, results.json, charts, figures.

The documents are rendered from jinja2 templates (``report/templates/``):
the HTML one with autoescaping on, so a model or category name is text,
never markup. The folder is self-contained (styles inline, images linked
relatively, no script, nothing fetched) and opens offline.

Staged in a hidden sibling folder (:func:`pss_bench.io.atomic.staged_dir`) and
renamed onto the target at the end, so a failure leaves nothing behind.
Nothing here computes a metric or prints.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pss_bench.errors import PssBenchError
from pss_bench.evaluation.compare import CompareResult, Query, pick_queries
from pss_bench.report.charts import Chart, LegendEntry, plot_ce_bars, plot_differences, plot_pq_bars, plot_pq_summary
from pss_bench.report.provenance import Provenance, paper_lines
from pss_bench.report.tables import (
    ce_class_cells,
    class_detail_cells,
    interval_cells,
    summary_cells,
    variant_interval_cells,
    verdict_lines,
)

log = logging.getLogger(__name__)

PQ_SUMMARY_CHART = "pq_summary.png"
PQ_CHART = "pq_per_class.png"
CE_CHART = "ce_per_category.png"
DIFF_CHART = "differences.png"
RESULTS = "results.json"
PROVENANCE = "provenance.json"
STRIPS_DIR = "retrievals"
MAPS_DIR = "context_maps"
#: Points of a context map at most (a seeded sample of the category's instances): t-SNE time grows with them.
MAP_MAX_POINTS = 400


@dataclass(frozen=True)
class Figure:
    """One picture of the report: where, its caption, and the legend it carries."""

    src: str
    alt: str
    caption: str
    legend: tuple[LegendEntry, ...] = ()
    kind: str = "chart"  # "chart" | "strip" | "panel" | "map"


@dataclass
class QueryBlock:
    title: str
    caption: str
    panel: Figure | None = None
    strips: list[Figure] = field(default_factory=list)


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pss_bench.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _md_cell(s: object) -> str:
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render(context: dict) -> tuple[str, str]:
    """``(report.html, report.md)`` from the report context."""
    env = _environment()
    env.filters["md"] = _md_cell
    return env.get_template("report.html.j2").render(**context), env.get_template("report.md.j2").render(**context)


# --------------------------------------------------------------------------- the report folder


def check_report_target(out_dir: str | os.PathLike) -> None:
    """Refuses to replace anything but an earlier report or an empty folder.

    Raises:
        PssBenchError: ``out_dir`` is a file, or a non-empty folder without
            ``report.md`` and ``results.json``.
    """
    from pss_bench.io.atomic import clean_stale

    out = Path(out_dir)
    clean_stale(out)  # first: it may put back a report a killed run was replacing
    if not out.exists():
        return
    if not out.is_dir():
        raise PssBenchError(f"{out}: exists and is not a folder; --report needs a folder to create")
    if any(out.iterdir()) and not ((out / "report.md").is_file() and (out / RESULTS).is_file()):
        raise PssBenchError(f"{out}: folder exists, is not empty and is not a pss-bench report; refusing to replace it")


def _class_legend(palette, classes) -> tuple[LegendEntry, ...]:
    """The HTML legend of a figure: its classes in the palette's order, then void / outside where shown."""
    from pss_bench.report.palette import SPECIAL

    shown = set(classes)
    out = [LegendEntry(palette.names[c], palette.hex(c)) for c in palette.colours if c in shown]
    out += [LegendEntry(label, "#{:02x}{:02x}{:02x}".format(*col)) for sid, (label, col) in SPECIAL.items()
            if sid in shown]
    return tuple(out)


def _inside(window: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``window`` moved inside the image where it fits, cut to the image where it is larger."""
    x0, y0, x1, y1 = window
    height, width = shape[:2]

    def fit(a: int, b: int, n: int) -> tuple[int, int]:
        if b - a >= n:
            return 0, n
        shift = max(0, -a) - max(0, b - n)
        return a + shift, b + shift

    x0, x1 = fit(x0, x1, width)
    y0, y1 = fit(y0, y1, height)
    return x0, y0, x1, y1


def _prediction_panel(result: CompareResult, stage: Path, q: Query, qi: int, images_root, palette,
                      pred_cache: dict) -> Figure | None:
    """GT / model A / model B (/ ...) around the query, for the models with a panoptic prediction."""
    from pss_bench.io.panoptic import load_panoptic_json, read_ids
    from pss_bench.errors import PredictionFormatError
    from pss_bench.report.common import ImageFinder, crop_padded, gt_ids
    from pss_bench.report.retrievals import (
        PanopticView,
        panoptic_classes,
        plot_prediction_panels,
        title_lines,
        view_window,
    )

    inst = next(iter(result.instances.values()))
    gt = inst.gt
    rows = np.flatnonzero((inst.image_index == q.image_index) & (inst.segment_ids == q.segment_id))
    if rows.size == 0:
        return None
    box = inst.boxes[int(rows[0])]
    ids = gt_ids(gt, q.image_index).astype(np.int64)
    x0, y0, x1, y1 = view_window(box)
    grow = max(x1 - x0, y1 - y0)  # a wider view than the strips': the predictions around the query matter
    window = _inside((x0 - grow // 2, y0 - grow // 4, x1 + grow // 2, y1 + grow // 4), ids.shape)
    ann = gt.annotations[q.image_index]
    views = [PanopticView("ground truth", crop_padded(ids, window, -2), ann.segments)]
    for m in result.models:
        if m.pq is None:
            continue
        pred = pred_cache.get(m.name)
        if pred is None:
            pj = Path(m.pred_dir) / "panoptic.json"
            pred = pred_cache[m.name] = {a.image_id: (a, p) for p in [load_panoptic_json(
                pj, role="prediction", categories=gt.categories)] for a in p.annotations}
        hit = pred.get(ann.image_id)
        if hit is None:
            continue
        pann, pjson = hit
        path = pjson.png_path(pann)
        pids = read_ids(path, f"{path}: image {ann.image_id!r}", PredictionFormatError)
        if pids.shape != ids.shape:
            continue
        views.append(PanopticView(f"prediction: {m.name}", crop_padded(pids.astype(np.int64), window, -2),
                                  pann.segments))
    if len(views) == 1:
        return None
    rgb = ImageFinder(images_root, gt.image_files).load(ann.image_id, ids.shape) if images_root else None
    picture = crop_padded(rgb, window, 128) if rgb is not None else None
    mask = crop_padded(ids == q.segment_id, window, False)
    rel = f"{STRIPS_DIR}/q{qi}_panoptic.png"
    things = {c.id for c in gt.categories.values() if c.isthing}
    plot_prediction_panels(picture, mask, views, palette, things, stage / rel,
                           suptitle=title_lines(f"query {qi}: ground truth and predictions around "
                                                f"{ann.image_id}:{q.segment_id}"))
    present = panoptic_classes(views)
    names = ", ".join(v.title.split(": ", 1)[-1] for v in views[1:])
    return Figure(rel, f"query {qi}: ground truth and predictions", (
        f"The query's neighbourhood: the image with the query outlined in yellow, the ground truth, then the "
        f"panoptic prediction of {names}. Stuff in its class colour, each thing instance in a shade of its "
        f"class colour with white outlines between segments; black: void (unlabelled or not predicted), "
        f"grey: outside the image."), _class_legend(palette, present), "panel")


def _query_blocks(result: CompareResult, stage: Path, queries: list[Query], images_root, strip_k: int
                  ) -> list[QueryBlock]:
    from pss_bench.report.palette import dataset_palette
    from pss_bench.report.retrievals import plot_retrievals, retrieval_panels, title_lines

    order = [(i, m.name) for i, m in enumerate(result.models) if m.name in result.instances]
    (stage / STRIPS_DIR).mkdir()
    cats = {c.id: c.name for c in result.categories}
    inst0 = next(iter(result.instances.values()))
    palette = dataset_palette(inst0.gt.categories, inst0.gt.path)
    blocks = []
    pred_cache: dict = {}
    for qi, q in enumerate(queries, 1):
        ce_text = ", ".join(f"{name} {q.ce[name]:.3f}" for _, name in order if name in q.ce)
        shown = []
        for mi, name in order:
            n_nb = result.retrievals.get(name, {}).get(q.category_id)
            shown.append(min(strip_k, n_nb.neighbours.shape[1]) if n_nb is not None else strip_k)
        n_shown = max(shown) if shown else strip_k
        if n_shown >= result.k:
            how = f"all {result.k} retrievals are shown"
        else:
            how = f"the strips show the {n_shown} nearest of those {result.k}"
        block = QueryBlock(
            f"Query {qi}: {cats.get(q.category_id, q.category_id)} {q.image_id}:{q.segment_id}",
            f"Query CE = the mean pair CE between the query and each of its K = {result.k} nearest "
            f"{cats.get(q.category_id, q.category_id)} instances by embedding ({ce_text}); {how}.")
        block.panel = _prediction_panel(result, stage, q, qi, images_root, palette, pred_cache)
        for mi, name in order:
            inst = result.instances[name]
            rows = np.flatnonzero((inst.image_index == q.image_index) & (inst.segment_ids == q.segment_id))
            if rows.size == 0:
                continue
            panels = retrieval_panels(inst, int(rows[0]), None, strip_k, images_root,
                                      retrieval=result.retrievals.get(name, {}).get(q.category_id))
            rel = f"{STRIPS_DIR}/q{qi}_m{mi + 1}.png"
            ce = q.ce.get(name)
            title = title_lines(f"{name}: query {qi} and its {len(panels) - 1} nearest retrievals"
                                + ("" if ce is None else f" (query CE {ce:.3f} over K = {result.k})"))
            plot_retrievals(panels, stage / rel, suptitle=title, palette=palette)
            classes = sorted(set().union(*(p.classes for p in panels)))
            block.strips.append(Figure(
                rel, f"{name}: retrievals of query {qi}",
                f"{name}. Top: each instance outlined in yellow, its 3w x 3h context window dashed (a small "
                f"instance is shown in a wider neighbourhood); titles: rank and pair CE to the query. Bottom: "
                f"the 3x3 semantic context the Context Error compares, in the dataset's colours.",
                _class_legend(palette, classes), "strip"))
        blocks.append(block)
    return blocks


def _context_maps(result: CompareResult, stage: Path, queries: list[Query]) -> tuple[list[Figure], str | None]:
    """One context map per model with instances, of the first query's category (else the largest class)."""
    from pss_bench.report.context_map import CONTEXT_COLOURS, plot_context_map
    from pss_bench.report.palette import dataset_palette

    if not result.instances:
        return [], "No model has embeddings over GT segments: no context map."
    inst0 = next(iter(result.instances.values()))
    things = [c for c in result.thing_categories]
    counts = {c.id: int((inst0.category_ids == c.id).sum()) for c in things}
    cat = queries[0].category_id if queries else max(counts, key=counts.get)
    if counts.get(cat, 0) < 3:
        return [], "No thing category has 3 instances with embeddings: no context map."
    (stage / MAPS_DIR).mkdir(exist_ok=True)
    figures = []
    name = {c.id: c.name for c in things}[cat]
    for mi, (mname, inst) in enumerate(result.instances.items(), 1):
        colour_by = "context" if inst.labels is not None else "class"
        rel = f"{MAPS_DIR}/m{mi}_{colour_by}.png"
        n = int((inst.category_ids == cat).sum())
        plot_context_map(inst, str(cat), stage / rel, max_thumbnails=120, color_by=colour_by,
                         max_points=MAP_MAX_POINTS, title=f"{mname}: context map of {name}")
        pal = dataset_palette(inst.gt.categories, inst.gt.path)
        legend = list(_class_legend(pal, {c.id for c in inst.gt.categories.values()}))
        if colour_by == "context":
            labels = sorted({"(none)" if v is None else str(v)
                             for v in inst.labels[inst.category_ids == cat]})
            legend = [LegendEntry(lab, CONTEXT_COLOURS[i % len(CONTEXT_COLOURS)], "frame")
                      for i, lab in enumerate(labels)] + legend
        sample = f"a sample of {MAP_MAX_POINTS} of its {n} {name} instances" if n > MAP_MAX_POINTS else \
            f"its {n} {name} instances"
        figures.append(Figure(rel, f"{mname}: context map of {name}", (
            f"{mname}: t-SNE of the embeddings of {sample} (the paper's Figure 5); a sample drawn as their 3x3 "
            f"context masks in the dataset's colours" + (", framed and with points in the colour of their hidden "
                                                          "context label" if colour_by == "context" else "")
            + "; right: the density of the points. Embeddings that encode context put alike masks together."),
            tuple(legend), "map"))
    return figures, None


def write_report(
    result: CompareResult,
    out_dir: str | os.PathLike,
    *,
    images_root: str | os.PathLike | None = None,
    n_queries: int = 3,
    strip_k: int = 5,
    provenance: Provenance | None = None,
    context_maps: bool = True,
) -> Path:
    """Writes the report folder atomically; returns it.

    Contents: ``report.html`` (self-contained: styles inline, images linked
    relatively, no script), ``report.md``, ``results.json``
    (``result.to_dict()``), the charts (``pq_summary.png``, ``pq_per_class.png``,
    ``ce_per_category.png``, ``differences.png``), ``provenance.json`` and, with instance sets in
    the result, ``context_maps/`` and, with ``images_root`` too,
    ``retrievals/``: for each of the ``n_queries`` instances picked by
    :func:`~pss_bench.evaluation.compare.pick_queries`, the GT / prediction
    panel and each model's retrieval strip.

    Args:
        provenance: what produced the result (:func:`pss_bench.report.provenance.collect`);
            ``None``: collected here without the command line.
        context_maps: draw the context maps (t-SNE: a few seconds per model).

    Raises:
        PssBenchError: ``out_dir`` is something else than an earlier report.
        DiskFullError: the disk filled up (nothing is left behind).
    """
    from pss_bench.io.atomic import staged_dir
    from pss_bench.report.provenance import collect

    out = Path(out_dir)
    check_report_target(out)
    prov = provenance if provenance is not None else collect(result, command=None)
    with staged_dir(out) as stage:
        context = _context(result, stage, images_root, n_queries, strip_k, prov, context_maps)
        page, markdown = render(context)
        (stage / "report.md").write_text(markdown, encoding="utf-8")
        (stage / "report.html").write_text(page, encoding="utf-8")
        for name, obj in ((RESULTS, result.to_dict()), (PROVENANCE, prov.to_dict())):
            with open(stage / name, "w", encoding="utf-8") as f:
                json.dump(obj, f, indent=2)
                f.write("\n")
    return out


def _chart(chart: Chart | None, alt: str, caption: str) -> Figure | None:
    if chart is None:
        return None
    return Figure(chart.path.name, alt, caption, chart.legend, "chart")


def _context(result: CompareResult, stage: Path, images_root, n_queries: int, strip_k: int, prov: Provenance,
             context_maps: bool) -> dict:
    summary = summary_cells(result)
    intervals = interval_cells(result)
    bs = result.bootstrap
    ci = (f"{100 * bs.settings.level:g}% bootstrap intervals ({bs.settings.resamples} resamples)"
          if bs is not None else "no intervals (run with --bootstrap N)")
    charts = [
        _chart(plot_pq_summary(result, stage / PQ_SUMMARY_CHART), "PQ, PQ-Th, PQ-St per model",
               f"PQ over all classes, things and stuff, per model; error bars: {ci}."),
        _chart(plot_ce_bars(result, stage / CE_CHART), "Context Error per category",
               f"Context Error per thing category and its mean (lower is better), with the random and oracle "
               f"bounds; error bars: {ci}."),
        _chart(plot_pq_bars(result, stage / PQ_CHART), "PQ per class",
               f"PQ per class; a class with neither GT nor prediction is marked absent, not drawn as 0; "
               f"error bars: {ci}."),
        _chart(plot_differences(result, stage / DIFF_CHART), "Paired differences to the reference model",
               "Each model minus the reference, per class, on the same bootstrap resamples: bars are the "
               "differences, whiskers their intervals; red with a star: the interval excludes 0."),
    ]
    queries: list[Query] = []
    retrieval_note = None
    query_blocks: list[QueryBlock] = []
    if n_queries == 0:
        retrieval_note = "Retrieval strips not requested (--queries 0)."
    elif not result.instances:
        retrieval_note = ("Retrieval strips skipped: no model has embeddings over GT segments."
                          if images_root is not None else
                          "Retrieval strips skipped: run compare with --images IMAGE_ROOT to draw them.")
    elif images_root is None:
        retrieval_note = "Retrieval strips skipped: run compare with --images IMAGE_ROOT to draw them."
    else:
        queries = pick_queries(result, n_queries)
        with_ce = [m.name for m in result.models if m.name in result.instances]
        how = (f"the {len(queries)} instances whose CE differs most between {with_ce[0]} and {with_ce[1]}"
               if len(with_ce) >= 2 else f"the {len(queries)} instances with the largest CE of {with_ce[0]}")
        retrieval_note = (f"Queries: {how}. For each: the ground truth and every model's prediction around it, "
                          f"then one strip per model with the query and its {strip_k} nearest retrievals.")
        if queries:
            query_blocks = _query_blocks(result, stage, queries, images_root, strip_k)
        else:
            retrieval_note = "No instance has a Context Error (every category has a single instance)."
    if context_maps:
        maps, maps_note = _context_maps(result, stage, queries or pick_queries(result, 1))
    else:
        maps, maps_note = [], "Context maps not drawn."
    ce_cells = ce_class_cells(result) if any(m.context_error is not None for m in result.models) else None
    details = class_detail_cells(result)
    return {
        "title": "pss-bench compare",
        "intro": (f"Ground truth: {result.gt_json} ({prov.gt_images} images) · {len(result.models)} models "
                  f"· Context Error K = {result.k}."),
        "verdicts": verdict_lines(result),
        "paper": paper_lines(result, prov),
        "summary": summary,
        "notes": [f"{m.name}: {n}" for m in result.models for n in m.notes],
        "intervals": intervals,
        "further": variant_interval_cells(result),
        "charts": [c for c in charts if c is not None],
        "no_ce": ce_cells is None,
        "no_pq": all(m.pq is None for m in result.models),
        "ce_cells": ce_cells,
        "details": details,
        "retrieval_note": retrieval_note,
        "queries": query_blocks,
        "maps": maps,
        "maps_note": maps_note,
        "provenance": prov,
        "provenance_rows": [[m.name, m.pred_dir, m.model or "—", m.checkpoint or "—", m.checkpoint_sha256 or "—",
                             m.config or "—", m.config_sha256 or "—", m.manifest_sha256 or "—"]
                            for m in prov.models],
        "results": RESULTS,
        "provenance_file": PROVENANCE,
    }
