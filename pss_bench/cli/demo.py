"""``pss-bench demo``: the job ``make demo`` runs."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.compare import print_wide_table
from pss_bench.cli.options import console_err, debug_option, example, info, workers_option, writable_folder
from pss_bench.demo import DEMO_FRAMES, DEMO_K, FEW_INSTANCES


@click.command("demo", epilog=example('pss-bench demo --out demo_out'))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"), callback=writable_folder,
              show_default=True, help="Where the demo writes its data, predictions and report.")
@click.option("--frames", type=click.IntRange(min=2), default=DEMO_FRAMES, show_default=True,
              help="SynthStreets val frames to generate and evaluate.")
@click.option("--bootstrap", "bootstrap_n", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bootstrap resamples for the confidence intervals and p-values.")
@workers_option
@debug_option
def command(out, frames, bootstrap_n, workers):
    """Compare the bundled checkpoints on a fresh SynthStreets val set.

    Generates the data (fixed seed), runs predict with each bundled
    checkpoint, then prints `pss-bench compare`'s tables (values, 95%
    confidence intervals, paired differences and p-values), says which
    differences are significant, and writes the report.
    """
    from pss_bench.cli.progress import stage_progress
    from pss_bench.demo import run_demo, thing_instance_counts
    from pss_bench.report.provenance import command_line

    obj = click.get_current_context().find_root().obj
    command = command_line("pss-bench", obj["argv"]) if isinstance(obj, dict) and "argv" in obj else None
    from pss_bench.metrics.bootstrap import BootstrapSettings
    from pss_bench.report.tables import compare_table, interval_table, verdict_lines

    info(f"pss-bench demo: SynthStreets val ({frames} frames) -> predict with the bundled "
         "checkpoints -> compare ...")
    with stage_progress("demo") as progress:
        result, report = run_demo(out, frames=frames, workers=workers, bootstrap=BootstrapSettings(bootstrap_n),
                                  progress=progress, command=command)
    counts = thing_instance_counts(result.gt_json)
    few = {name: n for name, n in counts.items() if 0 < n < FEW_INSTANCES * (DEMO_K + 1)}
    print(f"Thing instances in the val set: {', '.join(f'{n} {name}' for name, n in counts.items() if n)} "
          f"(K = {DEMO_K}).")
    if few:
        console_err().print(f"warning: few instances for K = {DEMO_K} "
                            f"({', '.join(f'{name} {n}' for name, n in few.items())}): their CE is close to the "
                            "bounds whatever the embedding; use more --frames", markup=False, highlight=False)
    print_wide_table(compare_table(result, title="pss-bench demo: PQ and Context Error on SynthStreets val"))
    intervals = interval_table(result, title="confidence intervals and paired differences")
    if intervals is not None:
        print_wide_table(intervals)
    verdicts = verdict_lines(result)
    if verdicts:
        print("Differences (paired bootstrap):")
        for line in verdicts:
            print(f"  {line}")
    info(f"report: {report / 'report.html'} (and report.md); score your own dumps with "
         "pss-bench pq / context-error / compare")
