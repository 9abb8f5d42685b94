"""The ``pss-bench compare --report`` folder: report.md, report.html, results.json, charts, retrieval strips.

Staged in a hidden sibling folder (:func:`pss_bench.io.atomic.staged_dir`) and
renamed onto the target at the end, so a failure leaves nothing behind.
Nothing here computes a metric or prints.
"""

from __future__ import annotations

import html
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pss_bench.errors import PssBenchError
from pss_bench.evaluation.compare import CompareResult, Query, pick_queries
from pss_bench.report.charts import plot_ce_bars, plot_pq_bars
from pss_bench.report.tables import (
    ce_class_cells,
    interval_cells,
    pq_class_cells,
    summary_cells,
    verdict_lines,
)

log = logging.getLogger(__name__)

CE_CHART = "ce_per_category.png"
PQ_CHART = "pq_per_class.png"
RESULTS = "results.json"
STRIPS_DIR = "retrievals"


# --------------------------------------------------------------------------- report document


@dataclass(frozen=True)
class _Block:
    kind: str  # "h1" | "h2" | "h3" | "p" | "link" | "ul" | "table" | "img" | "strips"
    data: object


def _md_escape_cell(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(b.kind[1])} {b.data}\n")
        elif b.kind == "p":
            out.append(f"{b.data}\n")
        elif b.kind == "link":
            text, href = b.data
            out.append(f"[{text}]({href})\n")
        elif b.kind == "ul":
            out.append("\n".join(f"- {item}" for item in b.data) + "\n")
        elif b.kind == "table":
            headers, rows = b.data
            out.append("| " + " | ".join(_md_escape_cell(h) for h in headers) + " |")
            out.append("|" + "|".join(":---" if j == 0 else "---:" for j in range(len(headers))) + "|")
            for r in rows:
                out.append("| " + " | ".join(_md_escape_cell(c) for c in r) + " |")
            out.append("")
        elif b.kind == "img":
            src, alt = b.data
            out.append(f"![{alt}]({src})\n")
        elif b.kind == "strips":
            items = b.data  # [(caption, src)]
            out.append("| " + " | ".join(_md_escape_cell(c) for c, _ in items) + " |")
            out.append("|" + "|".join("---" for _ in items) + "|")
            out.append("| " + " | ".join(f"![{_md_escape_cell(c)}]({s})" for c, s in items) + " |")
            out.append("")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.bound td { color: #777; font-style: italic; }
img { max-width: 100%; }
.strips { display: flex; gap: 1em; align-items: flex-start; }
.strips figure { flex: 1; margin: 0; }
figcaption { font-size: 0.85em; color: #555; }
"""


def render_html(blocks: Sequence[_Block], title: str) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{e(str(b.data))}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{e(str(b.data))}</p>")
        elif b.kind == "link":
            text, href = b.data
            out.append(f'<p><a href="{e(href)}">{e(text)}</a></p>')
        elif b.kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in b.data) + "</ul>")
        elif b.kind == "table":
            headers, rows = b.data
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead><tbody>")
            for r in rows:
                cls = ' class="bound"' if r and r[0].startswith("(") else ""
                out.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
            out.append("</tbody></table>")
        elif b.kind == "img":
            src, alt = b.data
            out.append(f'<p><img src="{e(src)}" alt="{e(alt)}"></p>')
        elif b.kind == "strips":
            out.append('<div class="strips">' + "".join(
                f'<figure><img src="{e(s)}" alt="{e(c)}"><figcaption>{e(c)}</figcaption></figure>'
                for c, s in b.data) + "</div>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


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


def _strip_blocks(result: CompareResult, stage: Path, queries: list[Query], images_root, strip_k: int) -> list[_Block]:
    from pss_bench.report.retrievals import plot_retrievals, retrieval_panels

    blocks: list[_Block] = []
    order = [(i, m.name) for i, m in enumerate(result.models) if m.name in result.instances]
    (stage / STRIPS_DIR).mkdir()
    cats = {c.id: c.name for c in result.categories}
    for qi, q in enumerate(queries, 1):
        ce_text = ", ".join(f"{name} {q.ce[name]:.3f}" for _, name in order if name in q.ce)
        blocks.append(_Block("h3", f"Query {qi}: {cats.get(q.category_id, q.category_id)} "
                                   f"{q.image_id}:{q.segment_id}"))
        blocks.append(_Block("p", f"Query CE (mean pair CE over its top-{result.k} retrievals): {ce_text}."))
        items = []
        for mi, name in order:
            inst = result.instances[name]
            rows = np.flatnonzero((inst.image_index == q.image_index) & (inst.segment_ids == q.segment_id))
            if rows.size == 0:
                continue
            panels = retrieval_panels(inst, int(rows[0]), None, strip_k, images_root,
                                      retrieval=result.retrievals.get(name, {}).get(q.category_id))
            rel = f"{STRIPS_DIR}/q{qi}_m{mi + 1}.png"
            ce = q.ce.get(name)
            title = name if ce is None else f"{name}: query CE {ce:.3f}"
            plot_retrievals(panels, stage / rel, suptitle=title)
            items.append((name, rel))
        if items:
            blocks.append(_Block("strips", items))
    return blocks


def write_report(
    result: CompareResult,
    out_dir: str | os.PathLike,
    *,
    images_root: str | os.PathLike | None = None,
    n_queries: int = 3,
    strip_k: int = 5,
) -> Path:
    """Writes the report folder atomically; returns it.

    Contents: ``report.md``, ``report.html`` (self-contained, images linked
    relatively), ``results.json`` (``result.to_dict()``), ``ce_per_category.png``,
    ``pq_per_class.png`` and, with ``images_root`` and instance sets in the
    result, ``retrievals/q<i>_m<j>.png``: the retrieval strips of each model
    for the ``n_queries`` instances picked by
    :func:`~pss_bench.evaluation.compare.pick_queries`.

    Raises:
        PssBenchError: ``out_dir`` is something else than an earlier report.
        DiskFullError: the disk filled up (nothing is left behind).
    """
    from pss_bench.io.atomic import staged_dir

    out = Path(out_dir)
    check_report_target(out)
    with staged_dir(out) as stage:
        blocks = _document(result, stage, images_root, n_queries, strip_k)
        (stage / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
        (stage / "report.html").write_text(render_html(blocks, "pss-bench compare"), encoding="utf-8")
        with open(stage / RESULTS, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=2)
            f.write("\n")
    return out


def _document(result: CompareResult, stage: Path, images_root, n_queries: int, strip_k: int) -> list[_Block]:
    cells = summary_cells(result)
    blocks = [
        _Block("h1", "pss-bench compare"),
        _Block("p", f"Ground truth: {result.gt_json} · {len(result.models)} models · Context Error K = {result.k}."),
        _Block("h2", "Summary"),
        _Block("table", (cells.headers, cells.rows + cells.bound_rows)),
        _Block("p", cells.caption + "."),
    ]
    notes = [f"{m.name}: {n}" for m in result.models for n in m.notes]
    if notes:
        blocks.append(_Block("ul", notes))
    intervals = interval_cells(result)
    if intervals is not None:
        blocks.append(_Block("h2", "Confidence intervals and significance"))
        blocks.append(_Block("table", (intervals.headers, intervals.rows)))
        blocks.append(_Block("p", intervals.caption + "."))
        verdicts = verdict_lines(result)
        if verdicts:
            blocks.append(_Block("ul", verdicts))
    blocks.append(_Block("link", ("All numbers (the same as compare --json)", RESULTS)))

    blocks.append(_Block("h2", "Context Error per category"))
    if plot_ce_bars(result, stage / CE_CHART) is not None:
        blocks.append(_Block("img", (CE_CHART, "Context Error per category")))
        blocks.append(_Block("table", ce_class_cells(result)))
    else:
        blocks.append(_Block("p", "No model has embeddings over GT segments: no Context Error."))

    blocks.append(_Block("h2", "PQ per class"))
    if plot_pq_bars(result, stage / PQ_CHART) is not None:
        blocks.append(_Block("img", (PQ_CHART, "PQ per class")))
        blocks.append(_Block("table", pq_class_cells(result)))
    else:
        blocks.append(_Block("p", "No model has a panoptic prediction: no PQ."))

    blocks.append(_Block("h2", "Retrievals"))
    if n_queries == 0:
        blocks.append(_Block("p", "Retrieval strips not requested (--queries 0)."))
    elif images_root is None:
        blocks.append(_Block("p", "Retrieval strips skipped: run compare with --images IMAGE_ROOT to draw them."))
    elif not result.instances:
        blocks.append(_Block("p", "Retrieval strips skipped: no model has embeddings over GT segments."))
    else:
        queries = pick_queries(result, n_queries)
        with_ce = [m.name for m in result.models if m.name in result.instances]
        how = (f"the {len(queries)} instances whose CE differs most between {with_ce[0]} and {with_ce[1]}"
               if len(with_ce) >= 2 else f"the {len(queries)} instances with the largest CE of {with_ce[0]}")
        blocks.append(_Block("p", f"Each query with its top {strip_k} retrievals per model ({how}); "
                                  "top row: images, bottom row: the 3x3 semantic contexts the Context Error "
                                  "compares."))
        if queries:
            blocks += _strip_blocks(result, stage, queries, images_root, strip_k)
        else:
            blocks.append(_Block("p", "No instance has a Context Error (every category has a single instance)."))
    return blocks
