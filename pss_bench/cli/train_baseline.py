"""``pss-bench train-baseline``: train a baseline with the reference model's configs and trainer."""

from __future__ import annotations

import click

from pss_bench.cli.train_reference import run_training, training_options

BASELINES = {"upsnet": "model.arch=upsnet"}


@click.command("train-baseline")
@click.argument("baseline", type=click.Choice(sorted(BASELINES)))
@training_options
def command(baseline, config, data_root, out_dir, device, resume, pretrained, stop_after, overrides):
    """Train BASELINE (upsnet: the UPSNet-style two-branch model) on DATA into OUT.

    Same data, schedule, crops, logging, checkpoints, --resume and torchrun
    DDP as train-reference; the config's `upsnet:` section holds the
    baseline's own settings. `pss-bench predict` runs its checkpoints.
    """
    run_training(config, data_root, out_dir, device, resume, pretrained, stop_after,
                 (BASELINES[baseline], *overrides))
