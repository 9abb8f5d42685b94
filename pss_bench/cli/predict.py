"""``pss-bench predict``: run a trained model (PSS or the UPSNet-style baseline) and write a prediction directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pss_bench.cli.options import debug_option
from pss_bench.cli.progress import progress_bar


@click.command("predict")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Dataset root, in the layout of the checkpoint config's data.dataset.")
@click.option("--split", default="val", show_default=True, help="Split to predict.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Prediction directory to create (manifest.json, panoptic.json, panoptic/, embeddings/).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--dataset", default=None, help="Dataset reader (default: the checkpoint config's data.dataset).")
@click.option("--embeddings", "embed_mode", type=click.Choice(["gt-segments", "pred-segments", "none"]),
              default="gt-segments", show_default=True,
              help="Per-segment mean embeddings over GT segments (paper's Table 1), predicted segments, or none.")
@click.option("--max-images", type=click.IntRange(min=0), default=0, help="Predict at most this many images (0: all).")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
@click.argument("overrides", nargs=-1)
@debug_option
def command(checkpoint, data_root, split, out_dir, device, dataset, embed_mode, max_images, overwrite, overrides):
    """Predict panoptic segmentations of DATA/SPLIT with a trained CHECKPOINT.

    OVERRIDES (section.key=value) change inference settings, e.g.
    inference.merge_threshold=0.7. Prints a JSON summary on stdout.
    """
    import time

    import torch

    from pss_bench.errors import PssBenchError
    from pss_bench.io.prediction import PredictionWriter
    from pss_bench.reference_model.config import config_from_dict
    from pss_bench.reference_model.data import build_dataset
    from pss_bench.reference_model.postprocess import region_embeddings
    from pss_bench.reference_model.registry import load_checkpoint
    from pss_bench.reference_model.train import predict_panoptic

    for o in overrides:
        if not o.startswith(("inference.", "kmeans.")) or "=" not in o:
            raise click.UsageError(f"override {o!r}: predict takes inference.KEY=VALUE or kmeans.KEY=VALUE only")
    if out_dir.exists() and not overwrite:
        raise click.UsageError(f"{out_dir} exists (pass --overwrite to replace it)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PssBenchError("--device cuda: CUDA is not available on this machine")
    net, cfg, categories, _ = load_checkpoint(checkpoint, device=device)
    if overrides:
        from pss_bench.reference_model.config import _set_override

        data = cfg.to_dict()
        for o in overrides:
            _set_override(data, o)
        cfg = config_from_dict(data)
    ds, ds_cats = build_dataset(dataset or cfg.data.dataset, data_root, split)
    if [c.id for c in ds_cats] != [c.id for c in categories]:
        raise PssBenchError(f"{data_root}: the dataset's categories differ from the checkpoint's ({checkpoint})")
    dev = torch.device(device)
    n = len(ds) if max_images == 0 else min(max_images, len(ds))
    extra = {"checkpoint": str(checkpoint), "config": cfg.name, "split": split}
    if getattr(ds, "gt_json", None) is not None:
        extra["gt_json"] = str(Path(ds.gt_json).resolve())
    t0 = time.perf_counter()
    model_name = {"pss": "pss-reference", "upsnet": "upsnet-style"}.get(cfg.model.arch, cfg.model.arch)
    with PredictionWriter(out_dir, model=model_name, overwrite=overwrite, **extra) as writer:
        if embed_mode != "none":
            writer.manifest["embeddings"] = embed_mode
        with progress_bar("predict") as update:
            for i in range(n):
                item = ds[i]
                ids, info, emb, seg_emb = predict_panoptic(net, item["image"].to(dev), categories, cfg)
                image_id = item["image_id"]
                writer.add_panoptic(image_id, f"{image_id}.png", ids.cpu().numpy().astype("int64"), info)
                if embed_mode == "gt-segments":
                    seg_ids, e = region_embeddings(emb, item["panoptic"].to(dev))
                    writer.add_embeddings(image_id, seg_ids.cpu().numpy(), e.cpu().numpy())
                elif embed_mode == "pred-segments" and seg_emb is None:
                    seg_ids, e = region_embeddings(emb, ids.to(dev))
                    writer.add_embeddings(image_id, seg_ids.cpu().numpy(), e.cpu().numpy())
                elif embed_mode == "pred-segments":
                    present = [s["id"] for s in info]
                    e = seg_emb[torch.tensor(present, dtype=torch.long, device=dev) - 1] if present else seg_emb[:0]
                    writer.add_embeddings(image_id, torch.tensor(present, dtype=torch.long).numpy(), e.cpu().numpy())
                update(i + 1, n)
        writer.commit(categories=[{"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in categories])
    click.echo(json.dumps({"out": str(out_dir), "images": n, "seconds": round(time.perf_counter() - t0, 2)}))
