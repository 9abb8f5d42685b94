"""``pss-bench context-error``: the paper's Context Error of a model's embeddings."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import (
    bootstrap_options,
    cache_options,
    debug_option,
    emit_json,
    gallery_options,
    gt_options,
    json_option,
    resolve_gt,
    workers_option,
)
from pss_bench.cli.progress import progress_bar

UNINFORMATIVE = "°"


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def _interval(iv, pct: bool = False) -> str:
    if iv is None or iv.low is None or iv.high is None:
        return "-"
    return f"[{_fmt(iv.low, pct)}, {_fmt(iv.high, pct)}]"


def ce_table(result, title: str = "Context Error", bootstrap=None):
    """A rich table like the paper's Table 1: one column per category, then the mean.

    Args:
        result: a :class:`~pss_bench.metrics.context_error.ContextErrorResult`.
        title: the table's title.
        bootstrap: its :class:`~pss_bench.metrics.bootstrap.CEBootstrap`, for
            interval rows under CE, score and precision.
    """
    from rich.table import Table

    from pss_bench.text import markup_escape

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
        table.add_row(label, *(_fmt(getattr(result.per_class[cid], attr), pct) for _, cid in cols),
                      *(_fmt(getattr(row, attr), pct) for _, row, _ in means))
        if boot is not None and attr in ("ce", "score", "precision"):
            table.add_row(f"  {level}", *(_interval(boot.per_class.get(cid, {}).get(attr), pct) for _, cid in cols),
                          _interval(boot.mean.get(attr), pct), *([""] * (len(means) - 1)), style="dim")
    table.add_row("queries", *(str(result.per_class[cid].queries) for _, cid in cols),
                  *(str(row.queries) for _, row, _ in means))
    table.add_row("informative", *(("-" if not result.per_class[cid].queries else
                                    "yes" if result.per_class[cid].informative else "no") for _, cid in cols),
                  *(f"{row.classes} classes" for _, row, _ in means))
    caption = []
    if flagged:
        where = "kept in the mean (--all-classes)" if result.all_classes else \
            "left out of the mean (--all-classes keeps it)"
        caption.append(f"{UNINFORMATIVE} uninformative: K={result.k} retrieves every other instance, so "
                       f"CE = random = oracle; {where}")
    if bootstrap is not None:
        s = bootstrap.settings
        caption.append(f"CI: percentile interval of {s.resamples} bootstrap resamples of the queries within "
                       f"each class (seed {s.seed})")
    if caption:
        table.caption = "; ".join(caption)
    return table


@click.command("context-error")
@click.argument("pred", type=click.Path(exists=True, file_okay=False, path_type=Path))
@gt_options
@click.option("--k", "k", type=click.IntRange(min=1), default=20, show_default=True,
              help="Neighbours retrieved per query.")
@gallery_options
@click.option("--min-area", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave out instances with fewer pixels (queries and gallery).")
@bootstrap_options(0)
@workers_option
@json_option
@cache_options
@debug_option
def command(pred, gt_json, gt_dir, k, gallery, gallery_gt, gallery_gt_dir, min_area, bootstrap, all_classes,
            workers, json_out, cache_dir, no_cache):
    """Context Error (Hwang et al., MULL '21) of the embeddings in PRED.

    PRED is a prediction directory with manifest.json and
    embeddings/<image_id>.npz (one vector per GT segment; `pss-bench embed`
    makes one from dense feature maps). Each GT instance retrieves its K most
    similar instances of the same category; the CE is the mean divergence of
    their 8-region semantic contexts. Also reports the random and oracle
    bounds, the normalised score (random - CE) / (random - oracle), and, when
    the GT folder has SynthStreets' context.json, context precision@K.

    A class whose K covers every other instance (CE = random = oracle) is
    marked uninformative and left out of the mean unless --all-classes.
    --bootstrap N adds confidence intervals (queries resampled within each class).
    """
    from pss_bench.cli.compare import print_wide_table
    from pss_bench.evaluation.context_error import evaluate_context_error
    from pss_bench.metrics.bootstrap import bootstrap_context_error

    gt_json, gt_dir = resolve_gt(pred, gt_json, gt_dir)
    if gallery is None and (gallery_gt is not None or gallery_gt_dir is not None):
        raise click.UsageError("--gallery-gt and --gallery-gt-dir need --gallery")
    if gallery is not None:
        gallery_gt, gallery_gt_dir = resolve_gt(gallery, gallery_gt, gallery_gt_dir, "--gallery-gt")
    with progress_bar("context") as progress:
        result = evaluate_context_error(
            pred, gt_json, gt_dir=gt_dir, k=k, gallery=gallery, gallery_gt=gallery_gt,
            gallery_gt_dir=gallery_gt_dir, min_area=min_area, workers=workers, cache_dir=cache_dir,
            use_cache=not no_cache, progress=progress, all_classes=all_classes,
        )
    boot = bootstrap_context_error([result.queries], settings=bootstrap, all_classes=all_classes) \
        if bootstrap is not None else None
    payload = {**result.to_dict(), "bootstrap": boot.to_dict() if boot is not None else None}
    if not emit_json(payload, json_out):
        return
    # One column per category, as in the paper: printed at the table's natural width (wider than the console).
    print_wide_table(ce_table(result, bootstrap=boot))
