"""``pss-bench compare``: PQ and Context Error of several models side by side, with a report."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import (
    bootstrap_options,
    cache_options,
    debug_option,
    emit_json,
    metrics_options,
    example,
    info,
    json_option,
    resolve_gt,
    workers_option,
    writable_folder,
)
from pss_bench.cli.progress import progress_bar


def _parse_names(ctx, param, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",")]
    if any(not n for n in names):
        raise click.BadParameter(f"empty name in {value!r}; expected e.g. --names pss,upsnet")
    return names


def print_wide_table(table) -> None:
    """stdout at the table's natural width: a squeezed table would cut the numbers to "0.…"."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    width = table.__rich_measure__(console, console.options.update_width(100_000)).maximum
    if width > console.width:
        console = Console(soft_wrap=True, width=width)
    console.print(table)


@click.command("compare",
               epilog=example('pss-bench compare preds/pss preds/upsnet --gt gtFine/cityscapes_panoptic_val.json --report report/'))
@click.argument("pred_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--gt", "gt_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Ground-truth COCO panoptic JSON shared by every model (default: 'gt_json' in the first "
                   "PRED_DIR's manifest.json).")
@click.option("--gt-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Ground-truth PNG folder (default: the GT JSON path without .json, or the manifest's gt_dir).")
@click.option("--names", callback=_parse_names, default=None,
              help="Comma-separated model names, one per PRED_DIR (default: the directory names).")
@click.option("--k", "k", type=click.IntRange(min=1), default=20, show_default=True,
              help="Neighbours retrieved per Context Error query.")
@json_option
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None, callback=writable_folder,
              help="Write report.md, report.html, results.json and the charts to this folder (replaced atomically).")
@click.option("--images", "images_root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder searched (recursively) for <image_id>*.png/jpg RGB images, "
                   "for the report's retrieval strips.")
@click.option("--queries", "n_queries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Query instances with retrieval strips in the report.")
@bootstrap_options(1000)
@metrics_options
@workers_option
@cache_options
@debug_option
def command(pred_dirs, gt_json, gt_dir, names, k, json_out, report_dir, images_root, n_queries, bootstrap,
            all_classes, metrics, dilation_ratio, pc_normalize, workers, cache_dir, no_cache):
    """Compare models: PQ and Context Error of each PRED_DIR against one ground truth.

    Each PRED_DIR is a prediction directory (manifest.json, panoptic.json +
    panoptic/, embeddings/), or what `pss-bench pq` reads: a folder with
    panoptic.json + panoptic/ only, or a prediction JSON. Prints one table: PQ, PQ-Th, PQ-St, SQ, RQ, the
    Context Error per thing category, the mean CE and its relative difference
    to the first model, and the random / oracle bounds. A directory without
    embeddings gets its PQ only; one without panoptic predictions its CE only.
    The GT is decoded once and shared by all models.

    Unless --bootstrap 0, a second table gives every metric with its
    confidence interval and, for each model after the first, the difference
    with its interval and paired-bootstrap p-value. Classes whose K covers
    every other instance (CE = random = oracle) are marked and left out of
    the mean CE unless --all-classes.

    --metrics adds Boundary PQ, PQ†, Parsing Covering and PQ by object size
    (JSON: each model's pq; with the bootstrap, a third table of their
    intervals and paired p-values; in the --report pages under "Further
    metrics").
    """
    from pss_bench.evaluation.compare import compare_models
    from pss_bench.report.document import check_report_target, write_report
    from pss_bench.report.tables import compare_table, interval_table, variant_interval_table

    if names is not None and len(names) != len(pred_dirs):
        raise click.UsageError(f"--names gives {len(names)} names for {len(pred_dirs)} prediction directories")
    if names is not None and len(set(names)) != len(names):
        raise click.UsageError(f"--names must be distinct, got {','.join(names)}")
    if images_root is not None and report_dir is None:
        raise click.UsageError("--images is used by --report only")
    if report_dir is not None:
        check_report_target(report_dir)
    gt_json, gt_dir = resolve_gt(pred_dirs[0], gt_json, gt_dir)

    with progress_bar("compare") as update:
        result = compare_models(
            pred_dirs, gt_json, gt_dir=gt_dir, names=names, k=k, workers=workers, cache_dir=cache_dir,
            use_cache=not no_cache, keep_instances=report_dir is not None,
            progress=lambda stage, done, total: update(done, total), all_classes=all_classes, bootstrap=bootstrap,
            metrics=metrics, dilation_ratio=dilation_ratio, pc_normalize=pc_normalize,
        )
    if report_dir is not None:
        from pss_bench.report.provenance import collect, command_line

        obj = click.get_current_context().find_root().obj
        command = command_line("pss-bench", obj["argv"]) if isinstance(obj, dict) and "argv" in obj else None
        write_report(result, report_dir, images_root=images_root, n_queries=n_queries,
                     provenance=collect(result, command))
    table = emit_json(result.to_dict(), json_out)
    if report_dir is not None:
        info(f"wrote the report to {report_dir}/report.md (and report.html)")
    if table:
        print_wide_table(compare_table(result))
        intervals = interval_table(result)
        if intervals is not None:
            print_wide_table(intervals)
        further = variant_interval_table(result)
        if further is not None:
            print_wide_table(further)
