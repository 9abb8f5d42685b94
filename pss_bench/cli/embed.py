"""``pss-bench embed``: pool any model's dense feature maps over the GT segments."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import debug_option, example, info, resolve_gt, workers_option, writable_folder
from pss_bench.cli.progress import progress_bar


@click.command("embed",
               epilog=example('pss-bench embed features/ --gt gtFine/cityscapes_panoptic_val.json --out preds/dino'))
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--gt", "gt_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Ground-truth COCO panoptic JSON whose segments are pooled (default: 'gt_json' in "
                   "FEATURES_DIR/manifest.json).")
@click.option("--gt-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Ground-truth PNG folder (default: the GT JSON path without .json, or the manifest's gt_dir).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              callback=writable_folder, help="Prediction directory to write (manifest.json, embeddings/).")
@click.option("--model", default=None, help="Model name for the manifest (default: features:<FEATURES_DIR name>).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it is an earlier prediction directory (or empty).")
@click.option("--layout", type=click.Choice(["auto", "dhw", "hwd"]), default="auto", show_default=True,
              help="Axis order of the maps: dhw (D x h x w), hwd (channels last), or auto: told from the shape, "
                   "ambiguous ones refused.")
@workers_option
@debug_option
def command(features_dir, gt_json, gt_dir, out_dir, model, overwrite, layout, workers):
    """Pool dense feature maps over the GT segments into a prediction directory.

    FEATURES_DIR holds <image_id>.npy, a D x h x w float array per GT image at
    any stride, or at a model's fixed input size (a ViT's 37 x 37); --layout
    hwd reads channels-last maps. Each is resized bilinearly to the GT size (as
    torch.nn.functional.interpolate with align_corners=False) and averaged over
    every GT segment, giving embeddings/<image_id>.npz for `pss-bench
    context-error`.
    """
    from pss_bench.evaluation.embed import embed_features

    from pss_bench.io.prediction import check_replaceable

    gt_json, gt_dir = resolve_gt(features_dir, gt_json, gt_dir)
    if out_dir.exists() and not overwrite:
        raise click.UsageError(f"{out_dir} already exists (pass --overwrite to replace it)")
    check_replaceable(out_dir)  # --overwrite replaces only an earlier prediction directory
    with progress_bar("embed") as progress:
        out = embed_features(features_dir, gt_json, out_dir, gt_dir=gt_dir, model=model, overwrite=overwrite,
                             workers=workers, progress=progress, layout=layout)
    info(f"wrote {out}")
