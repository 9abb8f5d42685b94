"""``pss-bench demo``: the job ``make demo`` runs."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.compare import print_wide_table
from pss_bench.cli.options import debug_option, info, workers_option, writable_folder


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"), callback=writable_folder,
              show_default=True, help="Where the demo writes its data, predictions and report.")
@click.option("--frames", type=click.IntRange(min=2), default=40, show_default=True,
              help="SynthStreets val frames to generate and evaluate.")
@workers_option
@debug_option
def command(out, frames, workers):
    """Compare the bundled PSS and UPSNet-style checkpoints on a fresh SynthStreets val set.

    Generates the data (fixed seed), runs predict with each bundled
    checkpoint, then prints `pss-bench compare`'s table and writes its report.
    """
    from pss_bench.cli.progress import progress_bar
    from pss_bench.demo import run_demo
    from pss_bench.report_compare import compare_table

    info(f"pss-bench demo: SynthStreets val ({frames} frames) -> predict with the bundled "
                        "checkpoints -> compare ...")
    with progress_bar("demo", delay_s=0.0) as bar:
        result, report = run_demo(out, frames=frames, workers=workers,
                                  progress=lambda stage, done, total: bar(done, total))
    print_wide_table(compare_table(result, title="pss-bench demo: PQ and Context Error on SynthStreets val"))
    info(f"report: {report / 'report.html'} (and report.md); score your own dumps with "
                        "pss-bench pq / context-error / compare")
