"""``pss-bench context-error``: the paper's Context Error of a model's embeddings."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import (
    bootstrap_options,
    cache_options,
    debug_option,
    emit_json,
    example,
    gallery_options,
    gt_options,
    json_option,
    resolve_gt,
    workers_option,
)
from pss_bench.cli.progress import progress_bar


@click.command("context-error",
               epilog=example('pss-bench context-error preds/pss --gt gtFine/cityscapes_panoptic_val.json --k 20'))
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
    --bootstrap N adds confidence intervals (images resampled, each resample
    its own gallery; with --gallery the gallery stays fixed).
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
            use_cache=not no_cache, progress=progress, all_classes=all_classes, index=bootstrap is not None,
        )
    boot = bootstrap_context_error([result.index], settings=bootstrap, all_classes=all_classes) \
        if bootstrap is not None else None
    payload = {**result.to_dict(), "bootstrap": boot.to_dict() if boot is not None else None}
    if not emit_json(payload, json_out):
        return
    # One column per category, as in the paper: printed at the table's natural width (wider than the console).
    from pss_bench.report.tables import ce_table

    print_wide_table(ce_table(result, bootstrap=boot))
