"""Charts of a ``pss-bench compare`` result (matplotlib, imported lazily, Agg backend).

Every chart draws the bootstrap intervals already in the result (``CompareResult.bootstrap``) as error
bars, marks classes without data as such (never as a bar at 0), and has a legend; each function returns
a :class:`Chart` whose ``legend`` the HTML report repeats under the picture. Rendering only: no
computation of a metric or an interval.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pss_bench.evaluation.compare import CompareResult
from pss_bench.text import mpl_escape

FONT = 11
#: One colour per model, in the order of ``result.models`` (matplotlib's tab10).
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")
ABSENT_TEXT = "absent"


@dataclass(frozen=True)
class LegendEntry:
    """One legend item: a label and its colour (``#rrggbb``).

    ``kind``: "box" (a bar), "dash" / "dot" (a bound line), "errorbar" (the whiskers), "frame" (a hollow
    square: a context label's frame), "note" (text only).
    """

    label: str
    colour: str
    kind: str = "box"


@dataclass(frozen=True)
class Chart:
    """A written chart: its file and the legend drawn in it."""

    path: Path
    legend: tuple[LegendEntry, ...]


def model_colour(i: int) -> str:
    return MODEL_COLOURS[i % len(MODEL_COLOURS)]


def _yerr(vals, intervals) -> np.ndarray:
    """``(2, n)`` distances below / above each value; 0 where the interval is undefined."""
    err = np.zeros((2, len(vals)))
    for j, (v, iv) in enumerate(zip(vals, intervals)):
        if iv is None or iv.low is None or iv.high is None or not np.isfinite(v):
            continue
        err[0, j] = max(0.0, v - iv.low)
        err[1, j] = max(0.0, iv.high - v)
    return err


def _scaled(iv, scale: float):
    if iv is None or iv.low is None or iv.high is None:
        return None
    from pss_bench.metrics.results import Interval

    return Interval(None if iv.estimate is None else scale * iv.estimate, scale * iv.low, scale * iv.high)


def _level(result: CompareResult) -> str:
    bs = result.bootstrap
    return f"{100 * bs.settings.level:g}%" if bs is not None else ""


def _bar_groups(ax, labels, series, *, scale, absent, ylabel, title, ylim=None, level=""):
    """Grouped bars: ``series`` = [(name, colour, values, intervals)]; ``absent[g]`` -> text instead of bars."""
    n = max(1, len(series))
    w = 0.8 / n
    x = np.arange(len(labels), dtype=float)
    for i, (name, colour, vals, ivs) in enumerate(series):
        vals = np.array([np.nan if v is None else scale * v for v in vals], dtype=float)
        ivs = [_scaled(iv, scale) for iv in ivs]
        err = _yerr(vals, ivs)
        pos = x - 0.4 + w * (i + 0.5)
        ax.bar(pos, np.nan_to_num(vals), w, color=colour, label=name)
        # whiskers only where the value and its interval exist: an absent class gets none
        sel = np.array([np.isfinite(v) and iv is not None for v, iv in zip(vals, ivs)], dtype=bool)
        if sel.any():
            ax.errorbar(pos[sel], vals[sel], yerr=err[:, sel], fmt="none", ecolor="black", elinewidth=1.0,
                        capsize=3 if len(labels) <= 20 else 1.5)
    top = ax.get_ylim()[1] if ylim is None else ylim[1]
    for g, text in enumerate(absent):
        if text:
            ax.axvspan(g - 0.45, g + 0.45, color="0.92", zorder=0)
            ax.text(g, 0.02 * top, text, rotation=90, ha="center", va="bottom", fontsize=FONT - 2, color="0.35")
    ax.set_xticks(x)
    ax.set_xticklabels([mpl_escape(s) for s in labels], rotation=40 if len(labels) > 6 else 0,
                       ha="right" if len(labels) > 6 else "center", fontsize=FONT - 1)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.set_title(title, fontsize=FONT + 1)
    ax.tick_params(axis="y", labelsize=FONT - 1)
    ax.grid(axis="y", color="0.9", zorder=0)
    ax.set_axisbelow(True)


def _legend(ax, entries: list[LegendEntry], title: str | None = None) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for e in entries:
        if e.kind == "box":
            handles.append(Patch(facecolor=e.colour, label=mpl_escape(e.label)))
        elif e.kind == "errorbar":
            handles.append(Line2D([], [], color=e.colour, marker="|", markersize=14, markeredgewidth=1.5, ls="",
                                  label=mpl_escape(e.label)))
        elif e.kind == "note":
            handles.append(Patch(facecolor="none", edgecolor="none", label=mpl_escape(e.label)))
        else:
            handles.append(Line2D([], [], color=e.colour, ls="--" if e.kind == "dash" else ":", lw=1.8,
                                  label=mpl_escape(e.label)))
    ax.legend(handles=handles, fontsize=FONT - 1, title=title, title_fontsize=FONT - 1,
              loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0, frameon=False)


def _interval_entry(result: CompareResult) -> LegendEntry:
    """The legend's line for the error bars (or for their absence)."""
    bs = result.bootstrap
    if bs is None:
        return LegendEntry("no intervals (--bootstrap 0)", "#000000", "note")
    return LegendEntry(f"{_level(result)} bootstrap interval", "#000000", "errorbar")


def _figure(n_groups: int, n_series: int, height: float = 4.6):
    from pss_bench.report.common import pyplot

    plt = pyplot()
    width = min(13.5, max(9.0, 3.2 + 0.32 * n_groups * max(2, n_series)))
    return plt.subplots(figsize=(width, height), layout="constrained")


def plot_pq_summary(result: CompareResult, out: str | os.PathLike) -> Chart | None:
    """PQ, PQ-Th, PQ-St (%) of each model with their intervals; ``None`` when no model has a PQ."""
    from pss_bench.report.common import save_figure

    idx = [i for i, m in enumerate(result.models) if m.pq is not None]
    if not idx:
        return None
    bs = result.bootstrap.pq if result.bootstrap is not None else None
    pos = {i: j for j, i in enumerate(result.bootstrap.pq_models)} if bs is not None else {}
    rows = [("PQ", "All"), ("PQ-Th", "Things"), ("PQ-St", "Stuff")]
    series = []
    for i in idx:
        m = result.models[i]
        vals = [None if m.pq.row(r) is None else m.pq.row(r).pq for _, r in rows]
        ivs = [bs.models[pos[i]].rows[r]["pq"] if i in pos else None for _, r in rows]
        series.append((mpl_escape(m.name), model_colour(i), vals, ivs))
    absent = ["no class" if all(result.models[i].pq.row(r) is None for i in idx) else "" for _, r in rows]
    fig, ax = _figure(3, len(series), height=4.2)
    fig.set_figwidth(8.0)
    _bar_groups(ax, [label for label, _ in rows], series, scale=100, absent=absent, ylabel="PQ (%)",
                title="Panoptic quality: all classes, things, stuff", ylim=(0, 100))
    entries = [LegendEntry(result.models[i].name, model_colour(i)) for i in idx] + [_interval_entry(result)]
    _legend(ax, entries, "model")
    return Chart(save_figure(fig, out), tuple(entries))


def plot_pq_bars(result: CompareResult, out: str | os.PathLike) -> Chart | None:
    """PQ (%) of every class, one bar per model, with its interval; absent classes marked; ``None`` without PQ."""
    from pss_bench.report.common import save_figure

    idx = [i for i, m in enumerate(result.models) if m.pq is not None]
    if not idx:
        return None
    bs = result.bootstrap.pq if result.bootstrap is not None else None
    pos = {i: j for j, i in enumerate(result.bootstrap.pq_models)} if bs is not None else {}
    cats = list(result.categories)
    series = []
    for i in idx:
        m = result.models[i]
        vals, ivs = [], []
        for c in cats:
            r = m.pq.per_class.get(c.id)
            vals.append(r.pq if r is not None and r.present else None)
            ivs.append(bs.models[pos[i]].per_class.get(c.id) if i in pos else None)
        series.append((mpl_escape(m.name), model_colour(i), vals, ivs))
    absent = [ABSENT_TEXT if not any((r := result.models[i].pq.per_class.get(c.id)) is not None and r.present
                                     for i in idx) else "" for c in cats]
    fig, ax = _figure(len(cats), len(series))
    _bar_groups(ax, [f"{c.name}{' *' if c.isthing else ''}" for c in cats], series, scale=100, absent=absent,
                ylabel="PQ (%)", title=f"PQ per class (* = thing; {ABSENT_TEXT} = no GT and no prediction)",
                ylim=(0, 100))
    entries = [LegendEntry(result.models[i].name, model_colour(i)) for i in idx] + [_interval_entry(result)]
    _legend(ax, entries, "model")
    return Chart(save_figure(fig, out), tuple(entries))


def plot_ce_bars(result: CompareResult, out: str | os.PathLike) -> Chart | None:
    """Context Error per thing category and the mean, one bar per model with its interval, with the bounds.

    Returns ``None`` (nothing written) when no model has a Context Error.
    """
    from pss_bench.report.common import save_figure
    from pss_bench.report.tables import UNINFORMATIVE, uninformative_classes

    idx = [i for i, m in enumerate(result.models) if m.context_error is not None]
    if not idx:
        return None
    bs = result.bootstrap.context_error if result.bootstrap is not None else None
    pos = {i: j for j, i in enumerate(result.bootstrap.ce_models)} if bs is not None else {}
    flagged = uninformative_classes(result)
    groups = [(c.name + (UNINFORMATIVE if c.id in flagged else ""), c.id) for c in result.thing_categories]
    groups.append(("mean", None))
    series = []
    for i in idx:
        ce = result.models[i].context_error
        vals, ivs = [], []
        for _, cid in groups:
            row = ce.mean if cid is None else ce.per_class[cid]
            vals.append(row.ce)
            if i in pos:
                mb = bs.models[pos[i]]
                ivs.append((mb.mean if cid is None else mb.per_class.get(cid, {})).get("ce"))
            else:
                ivs.append(None)
        series.append((mpl_escape(result.models[i].name), model_colour(i), vals, ivs))
    absent = ["no queries" if all((result.models[i].context_error.mean if cid is None
                                   else result.models[i].context_error.per_class[cid]).ce is None for i in idx)
              else "" for _, cid in groups]
    fig, ax = _figure(len(groups), len(series))
    _bar_groups(ax, [g for g, _ in groups], series, scale=1.0, absent=absent, ylabel="Context Error (lower is better)",
                title=f"Context Error per category (K={result.k})")
    entries = [LegendEntry(result.models[i].name, model_colour(i)) for i in idx] + [_interval_entry(result)]
    b = result.bounds
    if b is not None:
        for label, j, kind, colour in (("random bound", 0, "dash", "#000000"), ("oracle bound", 1, "dot", "#2ca02c")):
            for g, (_, cid) in enumerate(groups):
                v = (b.mean if cid is None else b.per_class[cid])[j]
                if v is not None:
                    ax.hlines(v, g - 0.45, g + 0.45, colors=colour, linestyles="--" if kind == "dash" else ":",
                              linewidth=1.8, zorder=3)
            entries.append(LegendEntry(label, colour, kind))
    if flagged:
        entries.append(LegendEntry(f"{UNINFORMATIVE} uninformative: K covers the class", "#ffffff", "note"))
    _legend(ax, entries, "model / bound")
    return Chart(save_figure(fig, out), tuple(entries))


SIGNIFICANT = "#d62728"
NOT_SIGNIFICANT = "#9e9e9e"


def _diff_panel(ax, labels, diffs, scale, xlabel, title, better_text):
    """Horizontal bars of differences with their intervals; significant ones in colour with a star."""
    y = np.arange(len(labels))[::-1].astype(float)
    for yy, d in zip(y, diffs):
        if d is None or d.estimate is None:
            ax.text(0, yy, "  n/a", va="center", fontsize=FONT - 2, color="0.4")
            continue
        colour = SIGNIFICANT if d.significant else NOT_SIGNIFICANT
        ax.barh(yy, scale * d.estimate, 0.6, color=colour, alpha=0.85)
        if d.low is not None and d.high is not None:
            ax.errorbar(scale * d.estimate, yy, xerr=[[max(0, scale * (d.estimate - d.low))],
                                                      [max(0, scale * (d.high - d.estimate))]],
                        fmt="none", ecolor="black", capsize=3, elinewidth=1.0)
        if d.significant:
            edge = scale * (d.high if d.estimate >= 0 else d.low) if d.low is not None else scale * d.estimate
            ax.text(edge, yy, " *" if d.estimate >= 0 else "* ", va="center",
                    ha="left" if d.estimate >= 0 else "right", fontsize=FONT + 1, color=SIGNIFICANT,
                    fontweight="bold")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([mpl_escape(s) for s in labels], fontsize=FONT - 1)
    ax.set_xlabel(f"{xlabel}  ({better_text})", fontsize=FONT - 1)
    ax.set_title(title, fontsize=FONT)
    ax.tick_params(axis="x", labelsize=FONT - 1)
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    lo, hi = ax.get_xlim()
    pad = 0.08 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)


def plot_differences(result: CompareResult, out: str | os.PathLike) -> Chart | None:
    """Paired differences model − reference per class: ΔPQ and ΔCE with intervals, significant ones marked.

    One row of panels per model after the reference. ``None`` without a bootstrap or a second model.
    """
    from pss_bench.report.common import pyplot, save_figure
    from pss_bench.report.tables import UNINFORMATIVE, uninformative_classes

    bs = result.bootstrap
    if bs is None:
        return None
    pairs = []  # (model index, reference index, pq comparison or None, ce comparison or None)
    pq_models = list(bs.pq_models) if bs.pq is not None else []
    ce_models = list(bs.ce_models) if bs.context_error is not None else []
    others = sorted({*pq_models[1:], *ce_models[1:]})
    for i in others:
        pq = bs.pq.differences[pq_models.index(i)] if i in pq_models[1:] else None
        ce = bs.context_error.differences[ce_models.index(i)] if i in ce_models[1:] else None
        pairs.append((i, pq, ce))
    if not pairs:
        return None
    names = [mpl_escape(m.name) for m in result.models]  # titles and axis labels: no mathtext from a name
    flagged = uninformative_classes(result)
    level = f"{100 * (1 - bs.settings.level):g}%"
    n_pq = len(result.categories) + 3
    n_ce = len(result.thing_categories) + 1
    plt = pyplot()
    height = 1.2 + 0.28 * max(n_pq, n_ce)
    fig, axes = plt.subplots(len(pairs), 2, figsize=(13.5, height * len(pairs) + 0.6), squeeze=False,
                             layout="constrained")
    for r, (i, pq, ce) in enumerate(pairs):
        ref_pq = names[pq_models[0]] if pq_models else ""
        ref_ce = names[ce_models[0]] if ce_models else ""
        ax_pq, ax_ce = axes[r]
        if pq is not None:
            labels = ["PQ (all)", "PQ-Th", "PQ-St"]
            labels += [f"{c.name}{' *' if c.isthing else ''}" for c in result.categories]
            diffs = [pq.rows["All"]["pq"], pq.rows["Things"]["pq"], pq.rows["Stuff"]["pq"]]
            diffs += [pq.per_class.get(c.id) for c in result.categories]
            _diff_panel(ax_pq, labels, diffs, 100, f"Δ PQ (points), {names[i]} − {ref_pq}",
                        f"PQ: {names[i]} − {ref_pq}", f"right: {names[i]} better")
        else:
            ax_pq.set_axis_off()
        if ce is not None:
            labels = ["mean CE"]
            labels += [c.name + (UNINFORMATIVE if c.id in flagged else "") for c in result.thing_categories]
            diffs = [ce.ce] + [ce.per_class.get(c.id) for c in result.thing_categories]
            _diff_panel(ax_ce, labels, diffs, 1.0, f"Δ Context Error, {names[i]} − {ref_ce}",
                        f"Context Error: {names[i]} − {ref_ce}", f"left: {names[i]} better")
        else:
            ax_ce.set_axis_off()
    entries = (LegendEntry(f"significant at {level} (paired bootstrap, *)", SIGNIFICANT),
               LegendEntry("not significant", NOT_SIGNIFICANT),
               LegendEntry(f"{100 * bs.settings.level:g}% interval of the difference", "#000000", "errorbar"))
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=e.colour, label=e.label) for e in entries[:2]]
    handles.append(Line2D([], [], color="black", marker="|", markersize=14, markeredgewidth=1.5, ls="",
                          label=entries[2].label))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=FONT - 1, frameon=False)
    return Chart(save_figure(fig, out), entries)
