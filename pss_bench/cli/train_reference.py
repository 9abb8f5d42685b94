"""``pss-bench train-reference``: train the PSS reference model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pss_bench.cli.options import console_err, debug_option, example, writable_folder


def training_options(f):
    """The options train-reference and train-baseline share."""
    for deco in reversed([
        click.option("--config", "config", required=True,
                     help="A shipped config name (cityscapes_r50, voc_r50, synthstreets_tiny) or a YAML file."),
        click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
                     help="Dataset root (the layout of the config's data.dataset, e.g. Cityscapes leftImg8bit/ + gtFine/)."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                     callback=writable_folder, help="Run folder: config.yaml, log.jsonl, checkpoint_last.pt, model_final.pt."),
        click.option("--device", default="cpu", show_default=True,
                     help="cpu, cuda or cuda:N (under torchrun each rank uses cuda:LOCAL_RANK)."),
        click.option("--resume", is_flag=True, help="Continue exactly from RUN/checkpoint_last.pt."),
        click.option("--pretrained", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Local torchvision ImageNet weights of the backbone (.pth); nothing is downloaded."),
        click.option("--stop-after", type=click.IntRange(min=1), default=None,
                     help="Stop after this iteration without finishing the schedule (resume later with --resume)."),
        click.argument("overrides", nargs=-1),
        debug_option,
    ]):
        f = deco(f)
    return f


@click.command("train-reference", context_settings={"ignore_unknown_options": False},
               epilog=example('pss-bench train-reference --config synthstreets_tiny --data synth/ --out runs/pss'))
@training_options
def command(config, data_root, out_dir, device, resume, pretrained, stop_after, overrides):
    """Train PSS (panoptic segment sorting) on DATA into OUT.

    OVERRIDES are section.key=value pairs applied to the config, e.g.
    train.iterations=500 data.batch_size=2 kmeans.grid=[4,8]. Multi-GPU or
    multi-node: run it under torchrun (DDP, NCCL on GPU, gloo on CPU).
    The final summary is printed on stdout as JSON.
    """
    run_training(config, data_root, out_dir, device, resume, pretrained, stop_after, overrides)


def run_training(config, data_root, out_dir, device, resume, pretrained, stop_after, overrides) -> None:
    """Shared by ``train-reference`` and ``train-baseline``: config, progress bar, JSON summary."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pss_bench.models.config import load_config
    from pss_bench.models.train import dist_info, init_distributed, train

    for o in overrides:
        if "=" not in o:
            raise click.UsageError(f"override {o!r}: expected section.key=value")
    cfg = load_config(config, overrides)
    init_distributed(device)
    rank = dist_info()[0]
    show = rank == 0
    # Off when stderr is not a terminal: rich would only print the bar's last state, which on an
    # early failure is a stray line before the one-line error.
    progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeRemainingColumn(), console=console_err(), transient=False,
                        disable=not show or not console_err().is_terminal)
    task = progress.add_task("train", total=cfg.train.iterations, info="")

    def update(it: int, total: int, rec: dict) -> None:
        info = f"loss {rec.get('loss_total', float('nan')):.3f} lr {rec.get('lr', 0):.2e}"
        if rec.get("val_pq") is not None:
            info += f" valPQ {100 * rec['val_pq']:.1f}"
        progress.update(task, completed=it, total=total, info=info)

    t0 = time.perf_counter()
    with progress:
        rec = train(cfg, out_dir, data_root=data_root, device=device, resume=resume, pretrained=pretrained,
                    stop_at=stop_after, progress=update)
    if show:
        click.echo(json.dumps({"run": str(out_dir), "seconds": round(time.perf_counter() - t0, 1), **rec}))
