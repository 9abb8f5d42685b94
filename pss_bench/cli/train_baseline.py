"""``pss-bench train-baseline``: train a registered baseline with the shared configs and trainer."""

from __future__ import annotations

import click

from pss_bench.cli.train_reference import run_training, training_options
from pss_bench.cli.options import example


def _baseline(ctx, param, value: str) -> str:
    from pss_bench.models.registry import default_model, list_models

    known = [m for m in list_models() if m != default_model()]  # the default model is train-reference's
    if value not in known:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(map(repr, known))}.", ctx, param)
    return value


@click.command("train-baseline",
               epilog=example('pss-bench train-baseline upsnet --config synthstreets_tiny --data synth/ --out runs/upsnet'))
@click.argument("baseline", callback=_baseline)
@training_options
def command(baseline, config, data_root, out_dir, device, resume, pretrained, stop_after, overrides):
    """Train BASELINE (a registered model: upsnet, the UPSNet-style two-branch model) on DATA into OUT.

    Same data, schedule, crops, logging, checkpoints, --resume and torchrun
    DDP as train-reference; the config's section of the baseline (`upsnet:`)
    holds its own settings. `pss-bench predict` runs its checkpoints.
    """
    run_training(config, data_root, out_dir, device, resume, pretrained, stop_after,
                 (f"model.arch={baseline}", *overrides))
