"""``pss-bench make-synthetic``: write a SynthStreets dataset in the Cityscapes layout."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import console_out, debug_option, emit_json, example, json_option, writable_folder
from pss_bench.data.limits import MAX_FRAMES, MAX_SIDE
from pss_bench.text import printable


@click.command("make-synthetic",
               epilog=example('pss-bench make-synthetic synth/ --train 200 --val 50 --seed 0'))
@click.argument("out", type=click.Path(path_type=Path), callback=writable_folder)
@click.option("--train", type=click.IntRange(min=0, max=MAX_FRAMES), default=200, show_default=True, help="Number of train frames.")
@click.option("--val", type=click.IntRange(min=0, max=MAX_FRAMES), default=50, show_default=True, help="Number of val frames.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), default=0, show_default=True,
              help="Dataset seed: the same seed gives byte-identical files.")
@click.option("--height", type=click.IntRange(min=64, max=MAX_SIDE), default=256, show_default=True, help="Image height in pixels.")
@click.option("--width", type=click.IntRange(min=128, max=MAX_SIDE), default=512, show_default=True, help="Image width in pixels.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Rendering processes (default: the usable CPU cores); does not change the output.")
@json_option
@debug_option
def command(out, train, val, seed, height, width, workers, json_out):
    """Generate SynthStreets into OUT: street scenes with hidden context labels.

    OUT gets leftImg8bit/, gtFine/ (instanceIds, labelIds, labelTrainIds,
    color, and the panoptic JSON + PNGs made by cityscapesscripts), and
    context.json ({image_id: {segment id: context label}}), which is never
    used in training.
    """
    from pss_bench.cli.progress import progress_bar
    from pss_bench.data.synthstreets import generate
    from pss_bench.threads import default_workers

    with progress_bar("SynthStreets") as progress:
        summary = generate(out, train, val, seed=seed, height=height, width=width,
                           workers=workers or default_workers(), progress=progress)
    if not emit_json(summary.to_dict(), json_out):
        return
    con = console_out()
    con.print(printable(f"{out}: {train} train + {val} val frames, {summary.instances} instances with context labels"),
              highlight=False, markup=False)
    for name, counts in summary.context_counts.items():
        con.print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False, markup=False)
