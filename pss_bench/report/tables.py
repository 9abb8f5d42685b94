"""Tables of results: rich tables for the terminal and the cells the report's tables show.

``pq_table`` (``pss-bench pq``), ``ce_table`` (``pss-bench context-error``),
and ``pss-bench compare``'s summary and interval tables with the cells that
:mod:`pss_bench.report.document` renders as markdown / HTML. Rendering only:
no computation, no files, no printing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from rich.table import Table

from pss_bench.metrics.pq import PQResult
from pss_bench.text import markup_escape

if TYPE_CHECKING:  # annotations only: `pss-bench pq` renders its table without the compare engine
    from pss_bench.evaluation.compare import CompareResult

log = logging.getLogger(__name__)

DASH = "—"


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

    # An estimate that rounds to 0 but is not 0 gets more digits (up to 3 more), so a Δ of -0.0044
    # prints as -0.004, not +0.00; its interval gets the same digits.
    v = scale * iv.estimate
    while digits < 6 and v != 0 and round(v, digits) == 0:
        digits += 1

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


PQ_ROW_LABELS = {"All": "PQ", "Things": "PQ-Th", "Stuff": "PQ-St"}
SQ_NOTE = "SQ counts 0 for a class without a TP (panopticapi's rule), so its interval can be lopsided"


def pq_bootstrap_notes(pq, names: dict[int, str], model_names: Sequence[str] | None = None) -> list[str]:
    """Sentences on what a PQ bootstrap's intervals cannot show.

    Args:
        pq: a :class:`~pss_bench.metrics.bootstrap.PQBootstrap`.
        names: category id -> name.
        model_names: the names of its models (for the Δ notes), or ``None`` for one model.
    """
    from pss_bench.metrics.bootstrap import FEW_SEGMENTS

    out = []
    few: dict[int, int] = {}
    rows: set[str] = set()
    no_gt: set[int] = set()
    no_gt_rows: set[str] = set()
    for m in pq.models:
        for r, ids in m.few_segments.items():
            if ids:
                rows.add(r)
            for c in ids:
                few[c] = m.gt_segments.get(c, 0)
        for r, ids in m.no_gt.items():
            if ids:
                no_gt_rows.add(r)
            no_gt.update(ids)
    if few:
        labels = ", ".join(PQ_ROW_LABELS[r] for r in ("All", "Things", "Stuff") if r in rows)
        head = (f"{labels}: the mean includes classes with fewer than {FEW_SEGMENTS} GT segments "
                f"({', '.join(f'{names.get(c, c)} {g}' for c, g in sorted(few.items()))}); ")
        if pq.few_segment_term:
            out.append(head + "their PQ and RQ in each resample are drawn from the posterior of their TP, FP and FN "
                       "rates (their SQ is not), so the interval carries the error of their few segments, which no "
                       "resampling of these images shows")
        else:
            out.append(head + "their PQ is a small-sample estimate (biased low, PQ being a ratio) whose error no "
                       "bootstrap of these images can show: the interval is too narrow")
    if no_gt:
        labels = ", ".join(PQ_ROW_LABELS[r] for r in ("All", "Things", "Stuff") if r in no_gt_rows)
        one = len(no_gt) == 1
        body = (f"{labels}: {', '.join(str(names.get(c, c)) for c in sorted(no_gt))} "
                f"{'has' if one else 'have'} false positives but no GT in these images: PQ 0 in the estimate "
                f"(the official rule)")
        if pq.few_segment_term:
            out.append(body + f"; these images cannot tell whether {'it never occurs' if one else 'they never occur'}"
                       f" (PQ 0) or {'is' if one else 'are'} rare and missed here (a PQ not measured): the interval "
                       f"joins both, its upper end drawing {'its' if one else 'their'} unseen GT rate from a prior")
        else:
            out.append(body + f" and in every resample; a PQ on images with GT of {'it' if one else 'them'} is not "
                       f"measured, and the interval does not include one")
    for j, d in enumerate(pq.differences):
        if d is not None and d.left_out:
            who = f"Δ of {model_names[j]}" if model_names else "Δ"
            out.append(f"{who} averages the classes both models have (without "
                       f"{', '.join(str(names.get(c, c)) for c in d.left_out)}: false positives of a class "
                       f"without GT in one model only)")
    return out


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
    """PQ, PQ-Th, PQ-St, SQ, RQ (%), CE per thing category, mean CE and its relative difference.

    Without any model's Context Error the CE columns are left out (they would all be empty).
    """
    any_ce = any(m.context_error is not None for m in result.models)
    things = result.thing_categories if any_ce else ()
    flagged = uninformative_classes(result)
    headers = ["Model", "PQ", "PQ-Th", "PQ-St", "SQ", "RQ", *(_class_label(result, c, flagged) for c in things)]
    headers += ["mean CE", "Δ mean CE"] if any_ce else []
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
        rows.append([m.name, *pq_cells, *ce_cells, rel] if any_ce else [m.name, *pq_cells])
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
               f"{DASH} = not available") if any_ce else f"PQ, SQ, RQ in %; {DASH} = not available; no model has a Context Error"
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
    n_img = len(result.models[bs.pq_models[0]].pq.images) if bs.pq_models and \
        result.models[bs.pq_models[0]].pq.images is not None else None
    caption = (f"{100 * s.level:g}% expanded percentile intervals from {s.resamples} paired bootstrap resamples "
               f"of the {f'{n_img} ' if n_img else ''}images (seed {s.seed}; for the CE each resample re-forms its "
               f"own gallery); PQ, SQ, RQ, P@K in %")
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
    if bs.pq is not None:
        cat_names = {c.id: c.name for c in result.categories}
        caption += "; " + "; ".join([SQ_NOTE, *pq_bootstrap_notes(bs.pq, cat_names,
                                                                   [names[i] for i in bs.pq_models])])
    return IntervalCells(headers, rows, caption)


def interval_table(result: CompareResult, title: str | None = "confidence intervals"):
    """The rich table of :func:`interval_cells` (``None`` without a bootstrap)."""
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

    def line(i: int, ref: int, metric: str, d, scale: float, digits: int, unit: str, better: str,
             caution: str = "") -> None:
        if d is None or d.estimate is None:
            return
        text = _ci(d, scale, digits, sign=True)
        verdict = f"significant at {level}" if d.significant else f"not significant at {level}"
        if d.significant:
            good = (d.estimate > 0) == (better == "higher")
            verdict += f": {names[i]} is {'better' if good else 'worse'}"
        out.append(f"{names[i]} vs {names[ref]}: {metric} {text}{unit}, p = {_p(d).rstrip(' *')} ({verdict}){caution}")

    if bs.pq is not None and len(bs.pq_models) > 1:
        for j, i in enumerate(bs.pq_models[1:], 1):
            comp = bs.pq.differences[j]
            for metric, r in (("PQ", "All"), ("PQ-Th", "Things"), ("PQ-St", "Stuff")):
                few = bs.pq.models[0].few_segments.get(r) or bs.pq.models[j].few_segments.get(r)
                caution = ""
                if few:
                    caution = ("; its mean includes classes with few GT segments, drawn from their posterior"
                               if bs.pq.few_segment_term else
                               "; its mean includes classes with few GT segments: the interval is too narrow")
                line(i, bs.pq_models[0], f"Δ{metric}", comp.rows[r]["pq"], 100, 1, " points", "higher", caution)
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


def class_detail_cells(result: CompareResult) -> IntervalCells | None:
    """Per class and model: PQ with its interval, SQ, RQ (%), TP, FP, FN; ``None`` when no model has a PQ.

    A class with no GT and no prediction (``TP + FP + FN = 0``) reads "absent" rather than 0.
    """
    idx = [i for i, m in enumerate(result.models) if m.pq is not None]
    if not idx:
        return None
    bs = result.bootstrap.pq if result.bootstrap is not None else None
    pos = {i: j for j, i in enumerate(result.bootstrap.pq_models)} if bs is not None else {}
    level = f"{100 * result.bootstrap.settings.level:g}%" if bs is not None else ""
    headers = ["Category", "Model", "PQ" + (f" [{level} CI]" if bs is not None else ""), "SQ", "RQ", "TP", "FP",
               "FN"]
    rows = []
    for c in result.categories:
        for i in idx:
            m = result.models[i]
            r = m.pq.per_class.get(c.id)
            label = f"{c.name}{' *' if c.isthing else ''}"
            if r is None or not r.present:
                rows.append([label, m.name, "absent", DASH, DASH, "0", "0", "0"])
                continue
            iv = bs.models[pos[i]].per_class.get(c.id) if i in pos else None
            pq = _ci(iv, 100) if iv is not None and iv.estimate is not None else _pct(r.pq)
            rows.append([label, m.name, pq, _pct(r.sq), _pct(r.rq), str(r.tp), str(r.fp), str(r.fn)])
    caption = ("PQ, SQ, RQ in %; * = thing class; absent = no GT and no predicted segment of the class "
               "(left out of the means); TP, FP, FN: matched, unmatched predicted, unmatched GT segments")
    if bs is not None:
        s = result.bootstrap.settings
        caption += f"; CI: {level} percentile interval of {s.resamples} bootstrap resamples of the images"
    return IntervalCells(headers, rows, caption)


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


# --------------------------------------------------------------------------- pq and context-error tables


def _count(n: int, one: str, many: str) -> str:
    """``"1 class"``, ``"2 classes"``."""
    return f"{n} {one if n == 1 else many}"


def _pct_interval(iv) -> str:
    if iv is None or iv.low is None or iv.high is None:
        return DASH
    return f"[{_pct(iv.low)}, {_pct(iv.high)}]"


def pq_table(result: PQResult, title: str | None = None, bootstrap=None, all_classes: bool = False,
             n_images: int | None = None) -> Table:
    """Per-category rows (PQ, SQ, RQ in percent; TP, FP, FN), then All / Things / Stuff with n.

    Only the classes present in the GT or the prediction get a row, unless
    ``all_classes`` (133 COCO rows for two images help nobody); the caption
    says how many were left out.

    With ``bootstrap`` (a :class:`~pss_bench.metrics.bootstrap.PQBootstrap`
    of this result), a column with the PQ's confidence interval follows PQ.
    Category names are escaped: a name such as ``[/bold]`` prints as itself.
    ``n_images``: the number of images the caption names (default: those of
    ``result.images``).
    """
    boot = bootstrap.models[0] if bootstrap is not None else None
    t = Table(title=markup_escape(title) if title is not None else None, show_lines=False)
    cols = [("Category", "left"), ("PQ", "right")]
    if boot is not None:
        cols.append((f"PQ {100 * bootstrap.settings.level:g}% CI", "right"))
    cols += [("SQ", "right"), ("RQ", "right"), ("TP", "right"), ("FP", "right"), ("FN", "right"), ("n", "right")]
    for col, just in cols:
        t.add_column(col, justify=just)

    def ci(iv) -> list[str]:
        return [_pct_interval(iv)] if boot is not None else []

    hidden = 0
    for cid, r in result.per_class.items():
        cat = result.categories[cid]
        name = f"{markup_escape(cat.name)} ({cid}){' *' if cat.isthing else ''}"
        if not r.present and not all_classes:
            hidden += 1
            continue
        if not r.present:
            t.add_row(name, DASH, *ci(None), DASH, DASH, "0", "0", "0", "", style="dim")
        else:
            t.add_row(name, _pct(r.pq), *ci(boot.per_class.get(cid) if boot else None), _pct(r.sq), _pct(r.rq),
                      str(r.tp), str(r.fp), str(r.fn), "")
    t.add_section()
    for name in ("All", "Things", "Stuff"):
        row = result.row(name)
        if row is None:
            t.add_row(name, DASH, *ci(None), DASH, DASH, "", "", "", "0", style="bold")
        else:
            t.add_row(name, _pct(row.pq), *ci(boot.rows[name]["pq"] if boot else None), _pct(row.sq), _pct(row.rq),
                      "", "", "", str(row.n), style="bold")
    t.caption = f"PQ, SQ, RQ in %; * = thing class; {DASH} = no GT or predicted segment"
    if hidden:
        t.caption += (f"; {_count(hidden, 'class', 'classes')} with no GT or predicted segment not shown "
                      f"(--all-classes shows them)")
    if boot is not None:
        s = bootstrap.settings
        if n_images is None and result.images is not None:
            n_images = len(result.images)
        t.caption += (f"; CI: expanded percentile interval of {s.resamples} bootstrap resamples of the "
                      f"{f'{n_images} ' if n_images is not None else ''}images (seed {s.seed})")
        notes = pq_bootstrap_notes(bootstrap, {cid: c.name for cid, c in result.categories.items()})
        if notes:
            t.caption += "; " + "; ".join(markup_escape(x) for x in notes)
    return t


def _ce_cell(v: float | None, pct: bool = False) -> str:
    if v is None:
        return DASH
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def _ce_interval(iv, pct: bool = False) -> str:
    if iv is None or iv.low is None or iv.high is None:
        return DASH
    return f"[{_ce_cell(iv.low, pct)}, {_ce_cell(iv.high, pct)}]"


def ce_table(result, title: str = "Context Error", bootstrap=None):
    """A rich table like the paper's Table 1: one column per category, then the mean.

    Args:
        result: a :class:`~pss_bench.metrics.context_error.ContextErrorResult`.
        title: the table's title.
        bootstrap: its :class:`~pss_bench.metrics.bootstrap.CEBootstrap`, for
            interval rows under CE, score and precision.
    """
    flagged = [c.id for c in result.categories if result.per_class[c.id].queries and
               not result.per_class[c.id].informative]
    table = Table(title=f"{markup_escape(title)} (K={result.k}, lower is better)")
    table.add_column("", style="bold", no_wrap=True, min_width=10)
    cols = [(c.name + (UNINFORMATIVE if c.id in flagged else ""), c.id) for c in result.categories]
    for name, _ in cols:
        table.add_column(markup_escape(name), justify="right", no_wrap=True, min_width=max(len(name), 6))
    means = [("mean", result.mean, None)]
    if flagged and not result.all_classes and result.mean_all_classes is not None:
        means.append(("all classes", result.mean_all_classes, None))
    for label, _, _ in means:
        table.add_column(label, justify="right", style="bold", no_wrap=True, min_width=6)
    boot = bootstrap.models[0] if bootstrap is not None else None
    rows = [("CE", "ce", False), ("random", "random", False), ("oracle", "oracle", False),
            ("score", "score", False)]
    if result.mean.precision is not None or (result.mean_all_classes and result.mean_all_classes.precision is not None):
        rows.append((f"context P@{result.k} %", "precision", True))
    level = f"{100 * bootstrap.settings.level:g}% CI" if bootstrap is not None else ""
    for label, attr, pct in rows:
        table.add_row(label, *(_ce_cell(getattr(result.per_class[cid], attr), pct) for _, cid in cols),
                      *(_ce_cell(getattr(row, attr), pct) for _, row, _ in means))
        if boot is not None and attr in ("ce", "score", "precision"):
            table.add_row(f"  {level}", *(_ce_interval(boot.per_class.get(cid, {}).get(attr), pct) for _, cid in cols),
                          _ce_interval(boot.mean.get(attr), pct), *([""] * (len(means) - 1)), style="dim")
    table.add_row("queries", *(str(result.per_class[cid].queries) for _, cid in cols),
                  *(str(row.queries) for _, row, _ in means))
    table.add_row("informative", *((DASH if not result.per_class[cid].queries else
                                    "yes" if result.per_class[cid].informative else "no") for _, cid in cols),
                  *(_count(row.classes, "class", "classes") for _, row, _ in means))
    caption = []
    if flagged:
        where = "kept in the mean (--all-classes)" if result.all_classes else \
            "left out of the mean (--all-classes keeps it)"
        caption.append(f"{UNINFORMATIVE} uninformative: K={result.k} retrieves every other instance, so "
                       f"CE = random = oracle; {where}")
    if bootstrap is not None:
        s = bootstrap.settings
        caption.append(f"CI: expanded percentile interval of {s.resamples} bootstrap resamples of the images, "
                       f"each resample its own gallery unless --gallery fixes it (seed {s.seed})")
    if caption:
        table.caption = "; ".join(caption)
    return table


# --------------------------------------------------------------------------- PQ variants


def variant_tables(result: PQResult, all_classes: bool = False, bootstrap: dict | None = None) -> list[Table]:
    """One table per metric asked besides PQ (Boundary PQ, PQ†, Parsing Covering, PQ by size), in that order.

    Args:
        result: the evaluation, with ``variants``.
        all_classes: a row for every category, also those with no segment.
        bootstrap: ``{key: PQBootstrap}`` of this result's further metrics
            (:func:`~pss_bench.metrics.bootstrap.bootstrap_variants`); adds a
            column with each value's confidence interval.
    """
    v = result.variants
    if v is None:
        return []
    boots = bootstrap or {}
    out: list[Table] = []
    cats = result.categories
    n_images = len(result.images) if result.images is not None else None
    any_boot = next(iter(boots.values()), None)
    level = f"{100 * any_boot.settings.level:g}% CI" if any_boot is not None else ""

    def name(cid: int) -> str:
        cat = cats[cid]
        return f"{markup_escape(cat.name)} ({cid}){' *' if cat.isthing else ''}"

    def ci_note(b) -> str:
        s = b.settings
        return (f"; CI: expanded percentile interval of {s.resamples} bootstrap resamples of the "
                f"{f'{n_images} ' if n_images is not None else ''}images (seed {s.seed}), the same as PQ's")

    if v.boundary_pq is not None:
        b = boots.get("boundary_pq")
        t = pq_table(v.boundary_pq.pq, title=f"Boundary PQ (dilation ratio {v.boundary_pq.dilation_ratio:g})",
                     all_classes=all_classes, bootstrap=b, n_images=n_images)
        t.caption += "; IoU = min(mask IoU, boundary IoU)"
        out.append(t)
    if v.pq_dagger is not None:
        b = boots.get("pq_dagger")
        mb = b.models[0] if b is not None else None
        t = Table(title="PQ† (Porzi et al.)")
        cols = [("Category", "left"), ("PQ†", "right")] + ([(f"PQ† {level}", "right")] if mb else []) + [("n", "right")]
        for col, just in cols:
            t.add_column(col, justify=just)
        for cid, pq in v.pq_dagger.per_class.items():
            counted = cid in v.pq_dagger.counted
            ci = [_pct_interval(mb.per_class.get(cid) if counted else None)] if mb else []
            t.add_row(name(cid), _pct(pq) if counted else DASH, *ci, "", style=None if counted else "dim")
        t.add_section()
        for row_name in ("All", "Things", "Stuff"):
            row = v.pq_dagger.row(row_name)
            ci = [_pct_interval(mb.rows[row_name]["pq"] if row else None)] if mb else []
            t.add_row(row_name, _pct(row.pq) if row else DASH, *ci, str(row.n) if row else "0", style="bold")
        t.caption = ("PQ† in %: things as PQ, stuff = mean IoU (> 0) of each GT segment with the class's "
                     "prediction; — = not counted") + (ci_note(b) if b is not None else "")
        out.append(t)
    if v.pc is not None:
        b = boots.get("pc")
        mb = b.models[0] if b is not None else None
        t = Table(title="Parsing Covering (DeeperLab)")
        for col, just in [("Category", "left"), ("PC", "right")] + ([(f"PC {level}", "right")] if mb else []):
            t.add_column(col, justify=just)
        for cid, pc in v.pc.per_class.items():
            counted = cid in v.pc.counted
            ci = [_pct_interval(mb.per_class.get(cid) if counted else None)] if mb else []
            t.add_row(name(cid), _pct(pc) if counted else DASH, *ci, style=None if counted else "dim")
        t.add_section()
        t.add_row("All", _pct(v.pc.pc) if v.pc.pc is not None else DASH,
                  *([_pct_interval(mb.rows["All"]["pq"])] if mb else []), style="bold")
        t.caption = (f"PC in %, mean over the {v.pc.n} classes with GT area (— = none); areas "
                     f"{'normalised by image size' if v.pc.normalize_by_image_size else 'in pixels'}"
                     + (ci_note(b) if b is not None else ""))
        out.append(t)
    if v.pq_area is not None:
        t = Table(title="PQ by object size (COCO ranges)")
        with_ci = any(f"pq_area/{r}" in boots for r in v.pq_area.by_name())
        for col in ("Range", "area (px)", "PQ", *([f"PQ {level}"] if with_ci else []), "SQ", "RQ", "n", "PQ Th",
                    "PQ St"):
            t.add_column(col, justify="left" if col in ("Range", "area (px)") else "right", no_wrap=True)
        for (rname, r), (lo, hi) in zip(v.pq_area.by_name().items(), v.pq_area.ranges):
            a, th, st = r.all, r.things, r.stuff
            b = boots.get(f"pq_area/{rname}")
            ci = [_pct_interval(b.models[0].rows["All"]["pq"] if b is not None and a else None)] if with_ci else []
            t.add_row(rname, f"[{lo}, {hi if hi is not None else '∞'})",
                      _pct(a.pq) if a else DASH, *ci, _pct(a.sq) if a else DASH, _pct(a.rq) if a else DASH,
                      str(a.n) if a else "0", _pct(th.pq) if th else DASH, _pct(st.pq) if st else DASH)
        t.caption = ("PQ in %; matches and missed GT segments count in the GT segment's range, "
                     "unmatched predictions in their own")
        if with_ci:
            t.caption += ci_note(next(boots[k] for k in boots if k.startswith("pq_area/")))
        out.append(t)
    return out


#: The rows of each further metric in ``compare``'s table and report: ``(label, row, score)``; the
#: score is the bootstrap's name (Parsing Covering's value is its ``pq``).
VARIANT_ROWS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "boundary_pq": (("Boundary PQ", "All", "pq"), ("Boundary PQ-Th", "Things", "pq"),
                    ("Boundary PQ-St", "Stuff", "pq"), ("Boundary SQ", "All", "sq"), ("Boundary RQ", "All", "rq")),
    "pq_dagger": (("PQ†", "All", "pq"), ("PQ†-Th", "Things", "pq"), ("PQ†-St", "Stuff", "pq")),
    "pc": (("Parsing Covering", "All", "pq"),),
    "pq_area/small": (("PQ small", "All", "pq"),),
    "pq_area/medium": (("PQ medium", "All", "pq"),),
    "pq_area/large": (("PQ large", "All", "pq"),),
}


def _variant_keys(v) -> list[str]:
    """The keys of :data:`VARIANT_ROWS` of the metrics a :class:`VariantResult` holds."""
    keys = [k for k in ("boundary_pq", "pq_dagger", "pc") if getattr(v, k) is not None]
    if v.pq_area is not None:
        keys += [f"pq_area/{r}" for r in v.pq_area.by_name()]
    return keys


def _variant_point(pq: PQResult, key: str, row: str, score: str) -> float | None:
    """The value of ``key``'s ``row`` / ``score`` in a model's evaluation (``None`` where undefined)."""
    v = pq.variants
    if key == "pc":
        return v.pc.pc if v.pc is not None else None
    if key == "pq_dagger":
        r = v.pq_dagger.row(row) if v.pq_dagger is not None else None
        return r.pq if r is not None else None
    if key == "boundary_pq":
        res = v.boundary_pq.pq if v.boundary_pq is not None else None
    else:
        res = v.pq_area.by_name()[key.split("/", 1)[1]] if v.pq_area is not None else None
    r = res.row(row) if res is not None else None
    return getattr(r, score) if r is not None else None


def variant_interval_cells(result: CompareResult) -> IntervalCells | None:
    """``compare``'s further metrics (``--metrics``) as cells: one row per metric and row, one column per model.

    Each model's value with its interval (where bootstrapped) and, for each
    model with a PQ after the first, the difference to the first with its
    interval and paired p-value: the layout of :func:`interval_cells`.
    ``None`` when no model has further metrics.
    """
    with_v = [m for m in result.models if m.pq is not None and m.pq.variants is not None]
    if not with_v:
        return None
    bs = result.bootstrap
    variants = bs.variants if bs is not None else {}
    names = [m.name for m in result.models]
    n = len(names)
    pos = {i: j for j, i in enumerate(bs.pq_models)} if variants else {}
    ref = bs.pq_models[0] if variants else None
    others = [i for i in pos if i != ref]
    headers = ["Metric", *names]
    for i in others:
        headers += [f"Δ {names[i]}", "p"]
    rows: list[list[str]] = []
    keys = list(variants) if variants else _variant_keys(with_v[0].pq.variants)
    for key in keys:
        b = variants.get(key)
        for label, row, score in VARIANT_ROWS[key]:
            cells = [label]
            for i, m in enumerate(result.models):
                if b is not None and i in pos:
                    cells.append(_ci(b.models[pos[i]].rows[row][score], 100))
                elif m.pq is not None and m.pq.variants is not None:
                    cells.append(_pct(_variant_point(m.pq, key, row, score)))
                else:
                    cells.append(DASH)
            for i in others:
                d = b.differences[pos[i]].rows[row][score] if b is not None else None
                cells += [_ci(d, 100, sign=True), _p(d)]
            rows.append(cells)
    v = with_v[0].pq.variants
    parts = []
    if v.boundary_pq is not None:
        parts.append(f"Boundary PQ: IoU = min(mask IoU, boundary IoU), dilation ratio {v.boundary_pq.dilation_ratio:g}")
    if v.pq_dagger is not None:
        parts.append("PQ† (Porzi et al.): things as PQ, stuff = mean IoU (> 0) of each GT segment with the "
                     "class's prediction")
    if v.pc is not None:
        parts.append("Parsing Covering (DeeperLab): one value, the mean over classes with GT area, areas "
                     f"{'normalised by image size' if v.pc.normalize_by_image_size else 'in pixels'}")
    if v.pq_area is not None:
        parts.append("PQ small / medium / large: COCO's area ranges (32² and 96² px), a match counted in its GT "
                     "segment's range")
    caption = "In %; " + "; ".join(parts)
    if variants:
        s = bs.settings
        n_img = len(result.models[ref].pq.images) if result.models[ref].pq.images is not None else None
        caption += (f"; {100 * s.level:g}% expanded percentile intervals from {s.resamples} paired bootstrap "
                    f"resamples of the {f'{n_img} ' if n_img else ''}images (seed {s.seed}), the same "
                    f"resamples as PQ's")
        if others:
            caption += (f"; Δ = model − {names[ref]}, p = paired-bootstrap p-value of Δ ≠ 0, * = significant at "
                        f"{100 * (1 - s.level):g}% (not corrected for multiple comparisons)")
    else:
        caption += "; no intervals (run with --bootstrap N)"
    return IntervalCells(headers, rows, caption)


def variant_interval_table(result: CompareResult, title: str | None = "further metrics") -> Table | None:
    """The rich table of :func:`variant_interval_cells`; ``None`` without a bootstrap of the further metrics."""
    from pss_bench.text import markup_escape as esc

    bs = result.bootstrap
    if bs is None or not bs.variants:
        return None
    cells = variant_interval_cells(result)
    t = Table(title=esc(title) if title is not None else None, caption=esc(cells.caption))
    for j, h in enumerate(cells.headers):
        t.add_column(esc(h), justify="left" if j == 0 else "right", no_wrap=True)
    for row in cells.rows:
        t.add_row(*map(esc, row))
    return t
