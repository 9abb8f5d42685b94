"""``pss-bench context-error``: the paper's Context Error of a model's embeddings."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import cache_options, console_out, debug_option, emit_json, gallery_options, gt_options, json_option, resolve_gt, workers_option
from pss_bench.cli.progress import progress_bar


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def ce_table(result, title: str = "Context Error"):
    """A rich table like the paper's Table 1: one column per category, then the mean."""
    from rich.table import Table

    from pss_bench.text import markup_escape

    table = Table(title=f"{markup_escape(title)} (K={result.k}, lower is better)")
    table.add_column("", style="bold", no_wrap=True, min_width=10)
    cols = [(c.name, result.per_class[c.id]) for c in result.categories]
    for name, _ in cols:
        table.add_column(markup_escape(name), justify="right", no_wrap=True, min_width=max(len(name), 6))
    table.add_column("mean", justify="right", style="bold", no_wrap=True, min_width=6)
    rows = [("CE", "ce", False), ("random", "random", False), ("oracle", "oracle", False),
            ("score", "score", False)]
    has_precision = result.mean.precision is not None
    if has_precision:
        rows.append((f"context P@{result.k} %", "precision", True))
    for label, attr, pct in rows:
        table.add_row(label, *(_fmt(getattr(r, attr), pct) for _, r in cols), _fmt(getattr(result.mean, attr), pct))
    table.add_row("queries", *(str(r.queries) for _, r in cols), str(result.mean.queries))
    return table


@click.command("context-error")
@click.argument("pred", type=click.Path(exists=True, file_okay=False, path_type=Path))
@gt_options
@click.option("--k", "k", type=click.IntRange(min=1), default=20, show_default=True,
              help="Neighbours retrieved per query.")
@gallery_options
@click.option("--min-area", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave out instances with fewer pixels (queries and gallery).")
@workers_option
@json_option
@cache_options
@debug_option
def command(pred, gt_json, gt_dir, k, gallery, gallery_gt, gallery_gt_dir, min_area, workers, json_out,
            cache_dir, no_cache):
    """Context Error (Hwang et al., MULL '21) of the embeddings in PRED.

    PRED is a prediction directory with manifest.json and
    embeddings/<image_id>.npz (one vector per GT segment; `pss-bench embed`
    makes one from dense feature maps). Each GT instance retrieves its K most
    similar instances of the same category; the CE is the mean divergence of
    their 8-region semantic contexts. Also reports the random and oracle
    bounds, the normalised score (random - CE) / (random - oracle), and, when
    the GT folder has SynthStreets' context.json, context precision@K.
    """
    from pss_bench.evaluation.context_error import evaluate_context_error

    gt_json, gt_dir = resolve_gt(pred, gt_json, gt_dir)
    if gallery is None and (gallery_gt is not None or gallery_gt_dir is not None):
        raise click.UsageError("--gallery-gt and --gallery-gt-dir need --gallery")
    if gallery is not None:
        gallery_gt, gallery_gt_dir = resolve_gt(gallery, gallery_gt, gallery_gt_dir, "--gallery-gt")
    with progress_bar("context") as progress:
        result = evaluate_context_error(
            pred, gt_json, gt_dir=gt_dir, k=k, gallery=gallery, gallery_gt=gallery_gt,
            gallery_gt_dir=gallery_gt_dir, min_area=min_area, workers=workers, cache_dir=cache_dir,
            use_cache=not no_cache, progress=progress,
        )
    if not emit_json(result.to_dict(), json_out):
        return
    out = console_out()
    # One column per category, as in the paper: widen past 80 columns rather than truncate names.
    needed = 20 + sum(max(len(c.name), 6) + 3 for c in result.categories) + 9
    out.print(ce_table(result), width=max(out.width, needed))
