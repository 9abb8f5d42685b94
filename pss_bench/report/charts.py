"""Charts of a ``pss-bench compare`` result (matplotlib, imported lazily, Agg backend).

Rendering only: no computation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pss_bench.evaluation.compare import CompareResult
from pss_bench.text import mpl_escape



def _group_layout(n_groups: int, n_bars: int) -> tuple[np.ndarray, float]:
    width = 0.8 / max(1, n_bars)
    return np.arange(n_groups, dtype=float), width


def plot_ce_bars(result: CompareResult, out: str | os.PathLike) -> Path | None:
    """Grouped bars of the CE per thing category (and the mean), one per model, with the bounds.

    Returns ``None`` (nothing written) when no model has a Context Error.
    """
    from pss_bench.report.common import pyplot, save_figure

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
    from pss_bench.report.common import pyplot, save_figure

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
