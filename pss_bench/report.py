"""Rich tables for results (rendering only; no computation, no I/O)."""

from __future__ import annotations

from rich.table import Table

from pss_bench.metrics.pq import PQResult
from pss_bench.text import markup_escape


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _pct_interval(iv) -> str:
    if iv is None or iv.low is None or iv.high is None:
        return "—"
    return f"[{_pct(iv.low)}, {_pct(iv.high)}]"


def pq_table(result: PQResult, title: str | None = None, bootstrap=None) -> Table:
    """Per-category rows (PQ, SQ, RQ in percent; TP, FP, FN), then All / Things / Stuff with n.

    With ``bootstrap`` (a :class:`~pss_bench.metrics.bootstrap.PQBootstrap`
    of this result), a column with the PQ's confidence interval follows PQ.
    Category names are escaped: a name such as ``[/bold]`` prints as itself.
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

    for cid, r in result.per_class.items():
        cat = result.categories[cid]
        name = f"{markup_escape(cat.name)} ({cid}){' *' if cat.isthing else ''}"
        if not r.present:
            t.add_row(name, "—", *ci(None), "—", "—", "0", "0", "0", "", style="dim")
        else:
            t.add_row(name, _pct(r.pq), *ci(boot.per_class.get(cid) if boot else None), _pct(r.sq), _pct(r.rq),
                      str(r.tp), str(r.fp), str(r.fn), "")
    t.add_section()
    for name in ("All", "Things", "Stuff"):
        row = result.row(name)
        if row is None:
            t.add_row(name, "—", *ci(None), "—", "—", "", "", "", "0", style="bold")
        else:
            t.add_row(name, _pct(row.pq), *ci(boot.rows[name]["pq"] if boot else None), _pct(row.sq), _pct(row.rq),
                      "", "", "", str(row.n), style="bold")
    t.caption = "PQ, SQ, RQ in %; * = thing class; — = no GT or predicted segment"
    if boot is not None:
        s = bootstrap.settings
        t.caption += (f"; CI: percentile interval of {s.resamples} bootstrap resamples of the images "
                      f"(seed {s.seed})")
    return t
