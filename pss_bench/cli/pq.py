"""``pss-bench pq``: panoptic quality of a prediction dump."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import (
    bootstrap_options,
    cache_options,
    categories_option,
    console_out,
    debug_option,
    emit_json,
    example,
    gt_options,
    json_option,
    metrics_options,
    resolve_gt,
    workers_option,
)
from pss_bench.cli.progress import progress_bar
from pss_bench.threads import keep_freed_memory


@click.command("pq",
               epilog=example('pss-bench pq preds/pss --gt gtFine/cityscapes_panoptic_val.json --json pq.json'))
@click.argument("pred", type=click.Path(exists=True, path_type=Path))
@gt_options
@categories_option
@click.option("--pred-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Prediction PNG folder (default: PRED without .json, or PRED/panoptic).")
@workers_option
@json_option
@cache_options
@click.option("--trust-gt-area", is_flag=True,
              help="Use the GT JSON's 'area' in IoUs as panopticapi does, instead of refusing areas that differ from the PNG.")
@metrics_options
@bootstrap_options(0, all_classes=False)
@click.option("--all-classes", is_flag=True,
              help="Print a row for every category, also those with no GT or predicted segment (the JSON has them all).")
@debug_option
def command(pred, gt_json, categories, pred_dir, gt_dir, workers, json_out, cache_dir, no_cache, trust_gt_area, metrics,
            dilation_ratio, pc_normalize, bootstrap, all_classes):
    """Panoptic quality (PQ, SQ, RQ) of PRED against the ground truth.

    PRED is a COCO panoptic prediction JSON (PNGs in --pred-dir, default the
    JSON path without .json) or a prediction directory with panoptic.json and
    panoptic/. Numbers follow panopticapi's evaluation exactly. --bootstrap N
    adds confidence intervals (images resampled, statistics re-summed).
    --metrics adds Boundary PQ, PQ†, Parsing Covering and PQ by object size,
    computed in the same pass (see docs/metrics.md); with --bootstrap each
    gets its intervals too, from the same resampled images (JSON: a
    "bootstrap" beside each metric's numbers).
    """
    from pss_bench.evaluation.pq import evaluate_pq
    from pss_bench.report.tables import pq_table, variant_tables

    gt_json, gt_dir = resolve_gt(pred, gt_json, gt_dir)
    keep_freed_memory()  # this process lives for one evaluation (and its forked workers do too)
    with progress_bar("PQ") as progress:
        # Forked workers: this process runs no other thread yet (the bar starts after the workers).
        result = evaluate_pq(
            pred, gt_json, pred_dir=pred_dir, gt_dir=gt_dir, workers=workers,
            cache_dir=cache_dir, use_cache=not no_cache, trust_gt_area=trust_gt_area, progress=progress,
            processes=True, metrics=metrics, dilation_ratio=dilation_ratio, pc_normalize=pc_normalize,
            categories=categories,
        )
    boot = None
    further: dict = {}
    if bootstrap is not None:
        # imports the Context Error metrics too: only when asked
        from pss_bench.metrics.bootstrap import bootstrap_pq, bootstrap_variants, variant_bootstrap_dict

        boot = bootstrap_pq([result.images], settings=bootstrap)
        further = bootstrap_variants([result], settings=bootstrap)  # the same resampled images as PQ's
    payload = {**result.to_dict(), "bootstrap": boot.to_dict() if boot is not None else None}
    for key, b in further.items():
        # Beside each metric's numbers, as PQ's "bootstrap" is beside PQ's ("pq_area": per range).
        where = payload
        for part in key.split("/"):
            where = where[part]
        where["bootstrap"] = variant_bootstrap_dict(key, b)
    if emit_json(payload, json_out):
        console = console_out()
        if "pq" in metrics:
            console.print(pq_table(result, bootstrap=boot, all_classes=all_classes))
        for table in variant_tables(result, all_classes=all_classes, bootstrap=further):
            console.print(table)
