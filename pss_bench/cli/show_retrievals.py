"""``pss-bench show-retrievals``: a query instance and its top-k retrievals, with their contexts."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import cache_options, debug_option, example, gallery_options, gt_options, info, resolve_gt, workers_option, writable_figure


def _parse_query(ctx, param, value: str) -> tuple[str, int]:
    image_id, sep, seg = value.rpartition(":")
    if not sep or not image_id:
        raise click.BadParameter("expected IMAGE_ID:SEGMENT_ID, e.g. frankfurt_000000_000294:26001")
    try:
        return image_id, int(seg)
    except ValueError:
        raise click.BadParameter(f"segment id {seg!r} is not an integer") from None


@click.command("show-retrievals",
               epilog=example('pss-bench show-retrievals preds/pss --query frankfurt_000000_000294:26001 --out fig.png'))
@click.argument("pred", type=click.Path(exists=True, file_okay=False, path_type=Path))
@gt_options
@click.option("--images", "images_root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder searched (recursively) for <image_id>*.png/jpg RGB images; without it the semantic map is drawn.")
@click.option("--query", "query", required=True, callback=_parse_query,
              help="The query instance as IMAGE_ID:SEGMENT_ID (a non-crowd thing segment of the GT).")
@click.option("--k", "k", type=click.IntRange(min=1), default=5, show_default=True, help="Retrievals shown.")
@gallery_options
@click.option("--gallery-images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="RGB image folder of --gallery (default: --images).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              callback=writable_figure, help="Figure to write: .png, .pdf or .svg (the suffix picks the format).")
@workers_option
@cache_options
@debug_option
def command(pred, gt_json, gt_dir, images_root, query, k, gallery, gallery_gt, gallery_gt_dir, gallery_images,
            out, workers, cache_dir, no_cache):
    """Draw a query instance and its top-k retrievals (the paper's Figures 1 and 4).

    Top row: each instance outlined in its 3w x 3h context window (a small
    instance in a wider neighbourhood, the window dashed), titled with its pair
    Context Error to the query. Bottom row: the 3x3 semantic context masks the
    Context Error compares, in the dataset's colours, with a legend.
    """
    from pss_bench.errors import PssBenchError
    from pss_bench.evaluation.instances import load_instances
    from pss_bench.report.retrievals import plot_retrievals, retrieval_panels, title_lines

    gt_json, gt_dir = resolve_gt(pred, gt_json, gt_dir)
    opts = dict(workers=workers, cache_dir=cache_dir, use_cache=not no_cache)
    inst = load_instances(pred, gt_json, gt_dir, **opts)
    gal = None
    if gallery is not None:
        gal = load_instances(gallery, *resolve_gt(gallery, gallery_gt, gallery_gt_dir, "--gallery-gt"), **opts)
    image_id, seg_id = query
    row = inst.find(image_id, seg_id)
    if row is None:
        raise PssBenchError(
            f"{gt_json}: image {image_id!r}, segment {seg_id}: not an instance with an embedding "
            f"(it must be a non-crowd thing segment of the GT, embedded in {pred})"
        )
    panels = retrieval_panels(inst, row, gal, k, images_root, gallery_images)
    if len(panels) == 1:
        info("warning: no other instance of this category to retrieve")
    from pss_bench.report.palette import dataset_palette

    cat = inst.gt.categories[int(inst.category_ids[row])].name
    title = title_lines(f"query {cat} {image_id}:{seg_id} and its {len(panels) - 1} nearest retrievals"
                        f"{' in ' + str(gallery) if gallery is not None else ''}")
    plot_retrievals(panels, out, suptitle=title, palette=dataset_palette(inst.gt.categories, inst.gt.path))
    info(f"wrote {out}")
