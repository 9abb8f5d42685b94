"""``pss-bench context-map``: a t-SNE of one category's embeddings with their context masks."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import cache_options, debug_option, example, gt_options, info, resolve_gt, workers_option, writable_figure


@click.command("context-map",
               epilog=example('pss-bench context-map preds/pss --category person --out map.png'))
@click.argument("pred", type=click.Path(exists=True, file_okay=False, path_type=Path))
@gt_options
@click.option("--category", required=True, help="Thing category, by name (person) or id.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              callback=writable_figure, help="Figure to write: .png, .pdf or .svg (the suffix picks the format).")
@click.option("--max-thumbnails", type=click.IntRange(min=0), default=150, show_default=True,
              help="Context masks drawn on the map (a random sample of the instances).")
@click.option("--perplexity", type=click.FloatRange(min=1.0), default=30.0, show_default=True,
              help="t-SNE perplexity (capped at (n - 1) / 3).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of t-SNE and of the thumbnail sample.")
@click.option("--color-by", "color_by", type=click.Choice(["class", "context"]), default="class", show_default=True,
              help="class: context masks in the dataset's class colours; context: points and masks framed in the "
                   "colour of each instance's hidden context label (SynthStreets' context.json).")
@click.option("--min-area", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave out instances with fewer pixels.")
@workers_option
@cache_options
@debug_option
def command(pred, gt_json, gt_dir, category, out, max_thumbnails, perplexity, seed, color_by, min_area, workers,
            cache_dir, no_cache):
    """Draw a t-SNE of a category's embeddings with each instance's context mask (the paper's Figure 5).

    Left: the instances at their t-SNE positions, a sample drawn as their 3x3
    semantic context masks; embeddings that encode context put similar masks
    together; a legend names the classes (and, with --color-by context, the
    hidden context labels). Right: the density of the points.
    """
    from pss_bench.evaluation.instances import load_instances
    from pss_bench.report.context_map import plot_context_map

    gt_json, gt_dir = resolve_gt(pred, gt_json, gt_dir)
    inst = load_instances(pred, gt_json, gt_dir, min_area=min_area, workers=workers, cache_dir=cache_dir,
                          use_cache=not no_cache)
    plot_context_map(inst, category, out, max_thumbnails=max_thumbnails, seed=seed, perplexity=perplexity,
                     color_by=color_by)
    info(f"wrote {out}")
