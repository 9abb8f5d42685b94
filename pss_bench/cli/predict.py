"""``pss-bench predict``: run a trained model (any registered one) and write a prediction directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pss_bench.cli.options import debug_option, example, workers_option, writable_folder
from pss_bench.cli.progress import progress_bar


@click.command("predict",
               epilog=example('pss-bench predict runs/pss/model_final.pt --data synth/ --split val --out preds/pss'))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Dataset root, in the layout of the checkpoint config's data.dataset.")
@click.option("--split", default="val", show_default=True, help="Split to predict.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              callback=writable_folder, help="Prediction directory to create (manifest.json, panoptic.json, panoptic/, embeddings/).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--dataset", default=None, help="Dataset reader (default: the checkpoint config's data.dataset).")
@click.option("--embeddings", "embed_mode", type=click.Choice(["gt-segments", "pred-segments", "none"]),
              default="gt-segments", show_default=True,
              help="Per-segment mean embeddings over GT segments (paper's Table 1), predicted segments, or none.")
@click.option("--max-images", type=click.IntRange(min=0), default=0, help="Predict at most this many images (0: all).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is an earlier prediction directory (or empty).")
@workers_option
@click.argument("overrides", nargs=-1)
@debug_option
def command(checkpoint, data_root, split, out_dir, device, dataset, embed_mode, max_images, overwrite, workers,
            overrides):
    """Predict panoptic segmentations of DATA/SPLIT with a trained CHECKPOINT.

    OVERRIDES (section.key=value) change inference settings, e.g.
    inference.merge_threshold=0.7 (PSS) or upsnet.embedding=fpn (the
    UPSNet-style baseline's embedding features). Prints a JSON summary on stdout.
    """
    import time

    from pss_bench.models.predict import write_predictions
    from pss_bench.models.registry import inference_overrides

    sections, keys = inference_overrides()
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        if "=" not in o or not (key.startswith(tuple(f"{s}." for s in sections)) or key in keys):
            allowed = " or ".join([*(f"{s}.KEY=VALUE" for s in sections), *(f"{k}=VALUE" for k in keys)])
            raise click.UsageError(f"override {o!r}: predict takes {allowed} only (inference settings; "
                                   "the others were fixed by training)")
    from pss_bench.io.prediction import check_replaceable

    if out_dir.exists() and not overwrite:
        raise click.UsageError(f"{out_dir} exists (pass --overwrite to replace it)")
    check_replaceable(out_dir)  # --overwrite replaces only an earlier prediction directory
    from pss_bench.threads import default_workers

    t0 = time.perf_counter()
    # The bar starts at its first update, after the workers are forked (no thread of it in them).
    with progress_bar("predict") as update:
        n = write_predictions(checkpoint, data_root, out_dir, split=split, device=device, dataset=dataset,
                              embed_mode=embed_mode, max_images=max_images, overwrite=overwrite,
                              overrides=overrides, progress=update, workers=workers or default_workers())
    click.echo(json.dumps({"out": str(out_dir), "images": n, "seconds": round(time.perf_counter() - t0, 2)}))
