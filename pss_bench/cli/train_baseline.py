"""``pss-bench train-baseline``: train a baseline with the reference model's configs and trainer."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import debug_option
from pss_bench.cli.train_reference import run_training

BASELINES = {"upsnet": "model.arch=upsnet"}


@click.command("train-baseline")
@click.argument("baseline", type=click.Choice(sorted(BASELINES)))
@click.option("--config", "config", required=True,
              help="The same config names as train-reference (cityscapes_r50, voc_r50, synthstreets_tiny) or a YAML file.")
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Dataset root (the layout of the config's data.dataset).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: config.yaml, log.jsonl, checkpoint_last.pt, model_final.pt.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda or cuda:N (under torchrun each rank uses cuda:LOCAL_RANK).")
@click.option("--resume", is_flag=True, help="Continue exactly from RUN/checkpoint_last.pt.")
@click.option("--pretrained", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Local torchvision ImageNet weights of the backbone (.pth); nothing is downloaded.")
@click.option("--stop-after", type=click.IntRange(min=1), default=None,
              help="Stop after this iteration without finishing the schedule (resume later with --resume).")
@click.argument("overrides", nargs=-1)
@debug_option
def command(baseline, config, data_root, out_dir, device, resume, pretrained, stop_after, overrides):
    """Train BASELINE (upsnet: the UPSNet-style two-branch model) on DATA into OUT.

    Same data, schedule, crops, logging, checkpoints, --resume and torchrun
    DDP as train-reference; the config's `upsnet:` section holds the
    baseline's own settings. `pss-bench predict` runs its checkpoints.
    """
    run_training(config, data_root, out_dir, device, resume, pretrained, stop_after,
                 (BASELINES[baseline], *overrides))
