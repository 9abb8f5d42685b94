"""``pss-bench import-upsnet``: official UPSNet results -> a pss-bench prediction directory."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import debug_option, example, info, writable_folder


@click.command("import-upsnet",
               epilog=example('pss-bench import-upsnet upsnet/val/results --gt gtFine/cityscapes_panoptic_val.json --dataset cityscapes --out preds/upsnet'))
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--gt", "gt_json", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The GT panoptic JSON the results were computed on (its 'images' order is UPSNet's order).")
@click.option("--gt-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="GT PNG folder (default: the GT JSON path without .json).")
@click.option("--dataset", type=click.Choice(["cityscapes", "coco"]), required=True,
              help="Which UPSNet category numbering the results use.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              callback=writable_folder, help="The prediction directory to write.")
@click.option("--category-map", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON {internal id: category id or name} overriding the built-in mapping.")
@click.option("--features", "features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Per-image dense features saved from UPSNet (<result PNG stem>.npy, D x h x w) to pool over the GT segments into embeddings/.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is an earlier prediction directory (or empty).")
@debug_option
def command(results_dir, gt_json, gt_dir, dataset, out_dir, category_map, features_dir, overwrite):
    """Convert official UPSNet test outputs (pans_unified/, results_list.pkl) in RESULTS_DIR
    into a pss-bench prediction directory with real image ids and GT category ids."""
    from pss_bench.baselines.upsnet.adapter import convert_upsnet_results, load_category_map
    from pss_bench.io.panoptic import load_panoptic_json

    from pss_bench.io.prediction import check_replaceable

    if out_dir.exists() and not overwrite:
        raise click.UsageError(f"{out_dir} exists; pass --overwrite to replace it")
    check_replaceable(out_dir)  # --overwrite replaces only an earlier prediction directory
    cmap = None
    if category_map is not None:
        cmap = load_category_map(category_map, load_panoptic_json(gt_json, gt_dir, role="gt"))
    out = convert_upsnet_results(results_dir, gt_json, dataset, out_dir, gt_dir=gt_dir, category_map=cmap,
                                 overwrite=overwrite, features_dir=features_dir)
    info(f"wrote {out}; score it with: pss-bench pq {out} --gt {gt_json}")
