"""``pss-bench pq``: panoptic quality of a prediction dump."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pss_bench.cli.options import console_err, console_out, debug_option, json_option, workers_option
from pss_bench.cli.progress import progress_bar
from pss_bench.io.atomic import write_json_atomic


def gt_from_manifest(pred: Path) -> tuple[Path, Path | None] | None:
    """``(gt_json, gt_dir or None)`` recorded in a prediction directory's manifest, if any."""
    manifest = pred / "manifest.json"
    if not (pred.is_dir() and manifest.is_file()):
        return None
    try:
        obj = json.loads(manifest.read_text())
    except (ValueError, OSError):
        return None
    gt, gt_dir = obj.get("gt_json"), obj.get("gt_dir")
    if not isinstance(gt, str):
        return None
    return Path(gt), Path(gt_dir) if isinstance(gt_dir, str) else None


@click.command("pq")
@click.argument("pred", type=click.Path(exists=True, path_type=Path))
@click.option("--gt", "gt_json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Ground-truth COCO panoptic JSON (default: 'gt_json' in PRED/manifest.json, with its 'gt_dir').")
@click.option("--pred-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Prediction PNG folder (default: PRED without .json, or PRED/panoptic).")
@click.option("--gt-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Ground-truth PNG folder (default: the GT JSON path without .json).")
@workers_option
@json_option
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where decoded GT is cached (default: $PSS_BENCH_CACHE_DIR or the user cache folder).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the GT cache.")
@click.option("--trust-gt-area", is_flag=True,
              help="Use the GT JSON's 'area' in IoUs as panopticapi does, instead of refusing areas that differ from the PNG.")
@debug_option
def command(pred, gt_json, pred_dir, gt_dir, workers, json_out, cache_dir, no_cache, trust_gt_area):
    """Panoptic quality (PQ, SQ, RQ) of PRED against the ground truth.

    PRED is a COCO panoptic prediction JSON (PNGs in --pred-dir, default the
    JSON path without .json) or a prediction directory with panoptic.json and
    panoptic/. Numbers follow panopticapi's evaluation exactly.
    """
    from pss_bench.evaluation.pq import evaluate_pq
    from pss_bench.report import pq_table

    if cache_dir is not None and no_cache:
        raise click.UsageError("--cache-dir and --no-cache exclude each other")
    if gt_json is None:
        found = gt_from_manifest(pred)
        if found is None:
            raise click.UsageError("missing --gt GT_JSON (PRED has no manifest.json naming its ground truth)")
        gt_json = found[0]
        gt_dir = gt_dir or found[1]
    with progress_bar("PQ") as progress:
        result = evaluate_pq(
            pred, gt_json, pred_dir=pred_dir, gt_dir=gt_dir, workers=workers,
            cache_dir=cache_dir, use_cache=not no_cache, trust_gt_area=trust_gt_area, progress=progress,
        )
    payload = result.to_dict()
    if json_out == "-":
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if json_out is not None:
        write_json_atomic(json_out, payload)
        console_err().print(f"wrote {json_out}")
    console_out().print(pq_table(result))
