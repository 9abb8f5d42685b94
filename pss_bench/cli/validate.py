"""``pss-bench validate``: list every problem of a panoptic ground truth."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import categories_option, console_out, debug_option, example, workers_option
from pss_bench.cli.progress import progress_bar
from pss_bench.errors import GroundTruthFormatError
from pss_bench.text import printable


@click.command("validate", epilog=example('pss-bench validate gtFine/cityscapes_panoptic_val.json'))
@click.argument("gt_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gt-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="PNG folder (default: the JSON path without .json).")
@categories_option
@click.option("--trust-gt-area", is_flag=True, help="Do not compare each segment's 'area' with its PNG pixel count.")
@workers_option
@debug_option
def command(gt_json, gt_dir, categories, trust_gt_area, workers):
    """Check a COCO panoptic dataset (JSON + PNGs) and list every problem found.

    Exit code 0 when it is clean, 1 when anything is wrong.
    """
    from pss_bench.io.validate import validate_panoptic

    with progress_bar("validate") as progress:
        report = validate_panoptic(gt_json, gt_dir, workers=workers, check_area=not trust_gt_area, progress=progress,
                                    categories=categories)
    out = console_out()
    if report.ok:
        out.print(printable(f"OK: {gt_json}: {report.images} images, {report.segments} segments"), highlight=False,
                  markup=False)
        return
    for p in report.problems:
        out.print(printable(p), highlight=False, markup=False)
    raise GroundTruthFormatError(f"{gt_json}: {len(report.problems)} problem(s) found")
