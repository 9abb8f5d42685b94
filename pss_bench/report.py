"""Rich tables for results (rendering only; no computation, no I/O)."""

from __future__ import annotations

from rich.table import Table

from pss_bench.metrics.pq import PQResult
from pss_bench.text import markup_escape


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pq_table(result: PQResult, title: str | None = None) -> Table:
    """Per-category rows (PQ, SQ, RQ in percent; TP, FP, FN), then All / Things / Stuff with n.

    Category names are escaped: a name such as ``[/bold]`` prints as itself.
    """
    t = Table(title=markup_escape(title) if title is not None else None, show_lines=False)
    for col, just in (("Category", "left"), ("PQ", "right"), ("SQ", "right"), ("RQ", "right"),
                      ("TP", "right"), ("FP", "right"), ("FN", "right"), ("n", "right")):
        t.add_column(col, justify=just)
    for cid, r in result.per_class.items():
        cat = result.categories[cid]
        name = f"{markup_escape(cat.name)} ({cid}){' *' if cat.isthing else ''}"
        if not r.present:
            t.add_row(name, "—", "—", "—", "0", "0", "0", "", style="dim")
        else:
            t.add_row(name, _pct(r.pq), _pct(r.sq), _pct(r.rq), str(r.tp), str(r.fp), str(r.fn), "")
    t.add_section()
    for name in ("All", "Things", "Stuff"):
        row = result.row(name)
        if row is None:
            t.add_row(name, "—", "—", "—", "", "", "", "0", style="bold")
        else:
            t.add_row(name, _pct(row.pq), _pct(row.sq), _pct(row.rq), "", "", "", str(row.n), style="bold")
    t.caption = "PQ, SQ, RQ in %; * = thing class; — = no GT or predicted segment"
    return t
