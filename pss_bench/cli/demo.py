"""``pss-bench demo``: the job ``make demo`` runs."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import console_err, console_out, debug_option, workers_option


@click.command("demo")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sample data root (default: $PSS_BENCH_SAMPLE_DATA, else ../shared/data).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"),
              show_default=True, help="Where the demo writes its GT and predictions.")
@workers_option
@debug_option
def command(data, out, workers):
    """Evaluate a perturbed copy of the real Cityscapes sample frames and print the PQ table."""
    from pss_bench.demo import run_demo
    from pss_bench.report import pq_table

    console_err().print("pss-bench demo: building Cityscapes panoptic GT with cityscapesscripts, "
                        "shifting it as a stand-in prediction, evaluating PQ ...")
    result, out_dir = run_demo(data, out, workers)
    console_out().print(pq_table(result, title="PQ of a shifted copy of the Cityscapes sample GT"))
    console_err().print(f"files in {out_dir}/ ; evaluate your own dumps with: pss-bench pq PRED --gt GT_JSON")
