"""Rendering of ``pss-bench compare``: the summary table, charts and the report folder.

Takes a :class:`~pss_bench.evaluation.compare.CompareResult` and renders it:
a rich table for the terminal, and ``--report DIR`` (report.md, report.html,
results.json, charts, retrieval strips), staged in a hidden sibling folder
and renamed onto ``DIR`` at the end, so a failure leaves nothing behind.
matplotlib is imported lazily (Agg backend). Nothing here computes a metric
or prints.
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
from pss_bench.text import mpl_escape

log = logging.getLogger(__name__)

DASH = "—"
CE_CHART = "ce_per_category.png"
PQ_CHART = "pq_per_class.png"
RESULTS = "results.json"
STRIPS_DIR = "retrievals"


# --------------------------------------------------------------------------- cells


def _pct(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:.1f}"


def _ce(x: float | None) -> str:
    return DASH if x is None else f"{x:.3f}"


def _rel(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:+.1f}%"


UNINFORMATIVE = "°"


def _ci(iv, scale: float = 1.0, digits: int = 1, sign: bool = False, unit: str = "") -> str:
    """``"28.2 [25.0, 31.3]"`` from an Interval/Difference (``—`` when undefined)."""
    if iv is None or iv.estimate is None:
        return DASH

    def f(x: float) -> str:
        x = round(scale * x, digits) + 0.0  # no "-0.000"
        return f"{x:{'+' if sign else ''}.{digits}f}{unit}"

    if iv.low is None or iv.high is None:
        return f(iv.estimate)
    return f"{f(iv.estimate)} [{f(iv.low)}, {f(iv.high)}]"


def _p(d) -> str:
    """``"0.002 *"``: the p-value, starred when significant at the table's level."""
    if d is None or d.p_value is None:
        return DASH
    p = "<0.001" if d.p_value < 0.001 else f"{d.p_value:.3f}"
    return f"{p} *" if d.significant else p


def uninformative_classes(result: CompareResult) -> set[int]:
    """Thing classes that some model's K retrieves entirely (CE = random = oracle)."""
    out = set()
    for m in result.models:
        if m.context_error is None:
            continue
        out |= {cid for cid, r in m.context_error.per_class.items() if r.queries and not r.informative}
    return out


def _class_label(result: CompareResult, cat, flagged: set[int]) -> str:
    return f"{cat.name}{UNINFORMATIVE if cat.id in flagged else ''}"


def _uninformative_caption(result: CompareResult, flagged: set[int]) -> str:
    if not flagged:
        return ""
    where = ("kept in the mean CE (--all-classes)" if result.all_classes
             else "left out of the mean CE (--all-classes keeps it)")
    return (f"{UNINFORMATIVE} = uninformative class: K={result.k} retrieves every other instance of it, so "
            f"CE = random = oracle whatever the embedding; {where}")


@dataclass(frozen=True)
class SummaryCells:
    """The summary table as strings: one row per model, then the bound rows."""

    headers: list[str]
    rows: list[list[str]]
    bound_rows: list[list[str]]
    caption: str


def summary_cells(result: CompareResult) -> SummaryCells:
    """PQ, PQ-Th, PQ-St, SQ, RQ (%), CE per thing category, mean CE and its relative difference."""
    things = result.thing_categories
    flagged = uninformative_classes(result)
    headers = ["Model", "PQ", "PQ-Th", "PQ-St", "SQ", "RQ", *(_class_label(result, c, flagged) for c in things),
               "mean CE", "Δ mean CE"]
    rows = []
    for i, m in enumerate(result.models):
        if m.pq is not None:
            pq_cells = [_pct(getattr(row, attr)) if row is not None else DASH  # None: a row with no class
                        for row, attr in ((m.pq.all, "pq"), (m.pq.things, "pq"), (m.pq.stuff, "pq"),
                                          (m.pq.all, "sq"), (m.pq.all, "rq"))]
        else:
            pq_cells = [DASH] * 5
        ce = m.context_error
        if ce is not None:
            ce_cells = [_ce(ce.per_class[c.id].ce) for c in things] + [_ce(ce.mean.ce)]
            rel = "ref" if i == result.reference else _rel(result.relative_mean_ce(i))
        else:
            ce_cells = [DASH] * (len(things) + 1)
            rel = DASH
        rows.append([m.name, *pq_cells, *ce_cells, rel])
    bound_rows = []
    b = result.bounds
    if b is not None:
        for label, j in (("random", 0), ("oracle", 1)):
            bound_rows.append([f"({label})", *[""] * 5, *(_ce(b.per_class[c.id][j]) for c in things),
                               _ce(b.mean[j]), ""])
        source = next(m.context_error for m in result.models if m.name == b.source)
        bound_rows.append(["(queries)", *[""] * 5, *(str(source.per_class[c.id].queries) for c in things),
                           str(source.mean.queries), ""])
    caption = (f"PQ, SQ, RQ in %; CE = Context Error per thing category (K={result.k}, lower is better); "
               f"{DASH} = not available")
    if b is not None:
        caption += f"; (queries) = query instances per class ({b.source}'s), and in the mean"
    if result.reference is not None:
        caption += f"; Δ = relative difference of the mean CE to {result.models[result.reference].name}"
    if b is not None and not b.consistent:
        caption += f"; the models embed different GT instances: bounds are {b.source}'s"
    if flagged:
        caption += "; " + _uninformative_caption(result, flagged)
    for i in range(len(result.models)):
        note = result.delta_note(i)
        if note:
            caption += "; " + note
    return SummaryCells(headers, rows, bound_rows, caption)


# --------------------------------------------------------------------------- confidence intervals


@dataclass(frozen=True)
class IntervalCells:
    """The confidence-interval table as strings: one row per metric, one column per model and per Δ."""

    headers: list[str]
    rows: list[list[str]]
    caption: str


def interval_cells(result: CompareResult) -> IntervalCells | None:
    """Every metric with its CI per model, and each model's Δ to the reference with CI and p-value.

    ``None`` when the result has no bootstrap.
    """
    bs = result.bootstrap
    if bs is None:
        return None
    names = [m.name for m in result.models]
    n = len(names)
    pq_pos = {i: j for j, i in enumerate(bs.pq_models)}
    ce_pos = {i: j for j, i in enumerate(bs.ce_models)}
    pq_ref = bs.pq_models[0] if bs.pq_models else None
    ce_ref = bs.ce_models[0] if bs.ce_models else None
    others = [i for i in range(n) if (i in pq_pos and i != pq_ref) or (i in ce_pos and i != ce_ref)]
    headers = ["Metric", *names]
    for i in others:
        headers += [f"Δ {names[i]}", "p"]
    rows: list[list[str]] = []

    def add(label: str, value_cell, diff_cell) -> None:
        row = [label, *(value_cell(i) for i in range(n))]
        for i in others:
            d = diff_cell(i)
            row += [d[0], d[1]] if d is not None else [DASH, DASH]
        rows.append(row)

    if bs.pq is not None:
        pq = bs.pq
        for label, row_name, score in (("PQ", "All", "pq"), ("PQ-Th", "Things", "pq"), ("PQ-St", "Stuff", "pq"),
                                       ("SQ", "All", "sq"), ("RQ", "All", "rq")):
            def value(i, r=row_name, s=score):
                return _ci(pq.models[pq_pos[i]].rows[r][s], 100) if i in pq_pos else DASH

            def diff(i, r=row_name, s=score):
                if i not in pq_pos or i == pq_ref:
                    return None
                d = pq.differences[pq_pos[i]].rows[r][s]
                return _ci(d, 100, sign=True), _p(d)

            add(label, value, diff)
    if bs.context_error is not None:
        ce = bs.context_error
        k = result.k

        def ce_value(field: str, scale=1.0, digits=3, cid=None):
            def value(i):
                if i not in ce_pos:
                    return DASH
                mb = ce.models[ce_pos[i]]
                iv = mb.mean.get(field) if cid is None else mb.per_class.get(cid, {}).get(field)
                return _ci(iv, scale, digits)
            return value

        def ce_diff(attr: str, scale=1.0, digits=3, cid=None, unit=""):
            def diff(i):
                if i not in ce_pos or i == ce_ref:
                    return None
                comp = ce.differences[ce_pos[i]]
                d = getattr(comp, attr) if cid is None else comp.per_class.get(cid)
                return _ci(d, scale, digits, sign=True, unit=unit), _p(d)
            return diff

        add("mean CE", ce_value("ce"), ce_diff("ce"))
        add("mean CE, relative Δ", lambda i: "ref" if i == ce_ref else DASH, ce_diff("relative", 100, 1, unit="%"))
        add("CE score", ce_value("score", digits=2), ce_diff("score", digits=2))
        if any(mb.mean["precision"].estimate is not None for mb in ce.models):
            add(f"context P@{k} %", ce_value("precision", 100, 1), ce_diff("precision", 100, 1))
        flagged = uninformative_classes(result)
        for c in result.thing_categories:
            if not any(c.id in mb.per_class for mb in ce.models):
                continue
            add(f"CE {_class_label(result, c, flagged)}", ce_value("ce", cid=c.id), ce_diff("per_class", cid=c.id))
    s = bs.settings
    caption = (f"{100 * s.level:g}% percentile intervals from {s.resamples} paired bootstrap resamples (seed "
               f"{s.seed}): images for PQ, queries within each class for CE; PQ, SQ, RQ, P@K in %")
    if others:
        refs = {r for r in (pq_ref, ce_ref) if r is not None}
        if len(refs) == 1:
            ref_text = f"model − {names[refs.pop()]}"
        else:
            ref_text = f"model − {names[pq_ref]} for PQ, model − {names[ce_ref]} for CE"
        caption += (f"; Δ = {ref_text}, p = paired-bootstrap p-value of Δ ≠ 0, "
                    f"* = significant at {100 * (1 - s.level):g}% (not corrected for multiple comparisons)")
    flagged = uninformative_classes(result)
    if flagged and bs.context_error is not None:
        caption += "; " + _uninformative_caption(result, flagged)
    return IntervalCells(headers, rows, caption)


def interval_table(result: CompareResult, title: str | None = "confidence intervals"):
    """The rich table of :func:`interval_cells` (``None`` without a bootstrap)."""
    from rich.table import Table

    from pss_bench.text import markup_escape as esc

    cells = interval_cells(result)
    if cells is None:
        return None
    # Model and category names are the user's: escaped like compare_table's.
    t = Table(title=esc(title) if title is not None else None, caption=esc(cells.caption))
    for j, h in enumerate(cells.headers):
        t.add_column(esc(h), justify="left" if j == 0 else "right", no_wrap=True)
    for row in cells.rows:
        t.add_row(*map(esc, row))
    return t


def verdict_lines(result: CompareResult) -> list[str]:
    """One sentence per model and headline metric: the Δ to the reference and whether it is significant."""
    bs = result.bootstrap
    if bs is None:
        return []
    names = [m.name for m in result.models]
    level = f"{100 * (1 - bs.settings.level):g}%"
    out = []

    def line(i: int, ref: int, metric: str, d, scale: float, digits: int, unit: str, better: str) -> None:
        if d is None or d.estimate is None:
            return
        text = _ci(d, scale, digits, sign=True)
        verdict = f"significant at {level}" if d.significant else f"not significant at {level}"
        if d.significant:
            good = (d.estimate > 0) == (better == "higher")
            verdict += f": {names[i]} is {'better' if good else 'worse'}"
        out.append(f"{names[i]} vs {names[ref]}: {metric} {text}{unit}, p = {_p(d).rstrip(' *')} ({verdict})")

    if bs.pq is not None and len(bs.pq_models) > 1:
        for j, i in enumerate(bs.pq_models[1:], 1):
            comp = bs.pq.differences[j]
            for metric, r in (("PQ", "All"), ("PQ-Th", "Things"), ("PQ-St", "Stuff")):
                line(i, bs.pq_models[0], f"Δ{metric}", comp.rows[r]["pq"], 100, 1, " points", "higher")
    if bs.context_error is not None and len(bs.ce_models) > 1:
        for j, i in enumerate(bs.ce_models[1:], 1):
            comp = bs.context_error.differences[j]
            n = len(comp.classes)
            line(i, bs.ce_models[0], f"Δ mean CE over {n} class{'es' if n != 1 else ''}", comp.ce, 1, 3, "",
                 "lower")
            line(i, bs.ce_models[0], f"Δ context P@{result.k}", comp.precision, 100, 1, " points", "higher")
    return out


def compare_table(result: CompareResult, title: str | None = "pss-bench compare"):
    """A rich table: one row per model, then the random / oracle bounds."""
    from rich.table import Table

    from pss_bench.text import markup_escape as esc

    cells = summary_cells(result)
    # Model and category names are the user's: escaped, so "[/bold]" prints as itself.
    t = Table(title=esc(title) if title is not None else None, caption=esc(cells.caption))
    for j, h in enumerate(cells.headers):
        t.add_column(esc(h), justify="left" if j == 0 else "right", no_wrap=j > 0)
    for row in cells.rows:
        t.add_row(*map(esc, row))
    if cells.bound_rows:
        t.add_section()
        for row in cells.bound_rows:
            t.add_row(*map(esc, row), style="dim")
    return t


def pq_class_cells(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """Per-class PQ (%) of each model with a PQ: headers and rows."""
    models = [m for m in result.models if m.pq is not None]
    headers = ["Category", *(m.name for m in models)]
    rows = []
    for c in result.categories:
        cells = []
        for m in models:
            r = m.pq.per_class.get(c.id)
            cells.append(_pct(r.pq) if r is not None and r.present else DASH)
        rows.append([f"{c.name}{' *' if c.isthing else ''}", *cells])
    return headers, rows


def ce_class_cells(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    """Per-class CE and normalised score of each model with a CE, the bounds, the query counts, informative or not."""
    models = [m for m in result.models if m.context_error is not None]
    headers = ["Category", *(m.name for m in models), *(f"score {m.name}" for m in models), "random", "oracle",
               "queries", "informative"]
    rows = []
    b = result.bounds
    flagged = uninformative_classes(result)

    def score(x: float | None) -> str:
        return DASH if x is None else f"{x:.2f}"

    for c in result.thing_categories:
        cells = [_ce(m.context_error.per_class[c.id].ce) for m in models]
        scores = [score(m.context_error.per_class[c.id].score) for m in models]
        rnd, orc = b.per_class[c.id] if b is not None else (None, None)
        q = models[0].context_error.per_class[c.id].queries if models else 0
        info = DASH if not q else ("no" if c.id in flagged else "yes")
        rows.append([_class_label(result, c, flagged), *cells, *scores, _ce(rnd), _ce(orc), str(q), info])
    if models:
        rows.append(["mean", *(_ce(m.context_error.mean.ce) for m in models),
                     *(score(m.context_error.mean.score) for m in models), _ce(b.mean[0]), _ce(b.mean[1]),
                     str(models[0].context_error.mean.queries), ""])
    return headers, rows


# --------------------------------------------------------------------------- charts


def _group_layout(n_groups: int, n_bars: int) -> tuple[np.ndarray, float]:
    width = 0.8 / max(1, n_bars)
    return np.arange(n_groups, dtype=float), width


def plot_ce_bars(result: CompareResult, out: str | os.PathLike) -> Path | None:
    """Grouped bars of the CE per thing category (and the mean), one per model, with the bounds.

    Returns ``None`` (nothing written) when no model has a Context Error.
    """
    from pss_bench.figures.common import pyplot, save_figure

    models = [m for m in result.models if m.context_error is not None]
    if not models:
        return None
    groups = [(c.name, c.id) for c in result.thing_categories] + [("mean", None)]

    def value(ce, cid):
        row = ce.mean if cid is None else ce.per_class[cid]
        return np.nan if row.ce is None else row.ce

    plt = pyplot()
    x, w = _group_layout(len(groups), len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.35 * len(groups) * max(2, len(models))), 4.0))
    fig.subplots_adjust(bottom=0.22, top=0.9, left=0.08, right=0.98)
    for i, m in enumerate(models):
        ax.bar(x - 0.4 + w * (i + 0.5), [value(m.context_error, cid) for _, cid in groups], w, label=mpl_escape(m.name))
    b = result.bounds
    if b is not None:
        for label, j, style, colour in (("random", 0, "--", "black"), ("oracle", 1, ":", "tab:green")):
            vals = [(b.mean if cid is None else b.per_class[cid])[j] for _, cid in groups]
            first = True
            for g, v in zip(x, vals):
                if v is None:
                    continue
                ax.hlines(v, g - 0.45, g + 0.45, colors=colour, linestyles=style, linewidth=1.5,
                          label=f"{label} bound" if first else None)
                first = False
    ax.set_xticks(x)
    ax.set_xticklabels([mpl_escape(name) for name, _ in groups], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Context Error")
    ax.set_title(f"Context Error per category (K={result.k}, lower is better)", fontsize=10)
    ax.legend(fontsize=7)
    return save_figure(fig, out)


def plot_pq_bars(result: CompareResult, out: str | os.PathLike) -> Path | None:
    """Grouped bars of the PQ (%) of every class, one per model; ``None`` when no model has a PQ."""
    from pss_bench.figures.common import pyplot, save_figure

    models = [m for m in result.models if m.pq is not None]
    if not models:
        return None
    cats = list(result.categories)
    plt = pyplot()
    x, w = _group_layout(len(cats), len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.3 * len(cats) * max(2, len(models))), 4.0))
    fig.subplots_adjust(bottom=0.25, top=0.9, left=0.08, right=0.98)
    for i, m in enumerate(models):
        vals = []
        for c in cats:
            r = m.pq.per_class.get(c.id)
            vals.append(100 * r.pq if r is not None and r.present else np.nan)
        ax.bar(x - 0.4 + w * (i + 0.5), vals, w, label=mpl_escape(m.name))
    ax.set_xticks(x)
    ax.set_xticklabels([f"{mpl_escape(c.name)}{' *' if c.isthing else ''}" for c in cats], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("PQ (%)")
    ax.set_ylim(0, 100)
    ax.set_title("PQ per class (* = thing)", fontsize=10)
    ax.legend(fontsize=7)
    return save_figure(fig, out)


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
    from pss_bench.figures.retrievals import plot_retrievals, retrieval_panels

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
