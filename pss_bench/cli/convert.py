"""``pss-bench convert``: other panoptic layouts to COCO panoptic and back.

Only click is imported at module level; the converters (numpy, PIL,
pycocotools) load when a subcommand runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import debug_option, example, info
from pss_bench.cli.progress import progress_bar

_FORMATS = ("2ch", "3ch", "npy", "label")


def _optional_int(ctx, param, value):
    if value is None or str(value).lower() == "none":
        return None
    if param.name == "void_label" and str(value).lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected an integer or 'none', found {value!r}") from None


def _void_out(ctx, param, value):
    value = _optional_int(ctx, param, value)
    if value is None:
        raise click.BadParameter("expected an integer or 'auto' (every pixel needs a semantic label)")
    return value


def _overwrite_option(f):
    return click.option("--overwrite", is_flag=True, help="Replace existing outputs.")(f)


@click.group("convert",
             epilog=example('pss-bench convert from-deeplab2 raw/ pred.json --categories gt.json --images gt.json'))
def command() -> None:
    """Convert panoptic predictions between deeplab2, COCO instance/semantic and COCO panoptic layouts."""


@command.command("from-deeplab2",
                 epilog=example('pss-bench convert from-deeplab2 raw/ pred.json --categories gt.json --images gt.json'))
@click.argument("src_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--categories", "categories_json", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Panoptic categories: a category list or a panoptic JSON (its 'categories').")
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="2ch", show_default=True,
              help="2ch: RGB PNG, R=semantic G=instance; 3ch: G*256+B=instance; npy: (H,W,2) or label array; "
                   "label: 16-bit PNG of semantic*divisor+instance.")
@click.option("--label-divisor", type=click.IntRange(min=1), default=1000, show_default=True,
              help="label = semantic * divisor + instance (npy label maps and 'label' PNGs).")
@click.option("--void-label", default="auto", show_default=True, callback=_optional_int,
              help="Semantic label of VOID pixels, or 'none'; auto: 255, and for --format label the smallest "
                   "label no category uses (0 for Cityscapes label ids), as to-deeplab2 writes.")
@click.option("--crowd-instance", default="0", show_default=True, callback=_optional_int,
              help="Thing pixels with this instance id are the crowd region of their class (iscrowd=1), or 'none'.")
@click.option("--label-map", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help='JSON object {"label": category_id}, e.g. Cityscapes train ids to label ids (default: identity).')
@click.option("--images", "images_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON with 'images': image ids are taken from the entry whose file_name has the input's stem.")
@click.option("--png-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output PNG folder (default: OUT_JSON without .json).")
@_overwrite_option
@debug_option
def from_deeplab2(src_dir, out_json, categories_json, fmt, label_divisor, void_label, crowd_instance, label_map,
                  images_json, png_dir, overwrite):
    """Raw (semantic, instance) predictions in SRC_DIR to a COCO panoptic OUT_JSON and PNG folder."""
    from pss_bench.convert.files import deeplab2_to_coco, read_label_map

    with progress_bar("convert") as progress:
        n = deeplab2_to_coco(
            src_dir, out_json, categories_json, fmt=fmt, label_divisor=label_divisor, void_label=void_label,
            crowd_instance=crowd_instance, label_map=read_label_map(label_map), images_json=images_json,
            png_dir=png_dir, overwrite=overwrite, progress=progress,
        )
    info(f"wrote {out_json} ({n} images)")


@command.command("to-deeplab2", epilog=example('pss-bench convert to-deeplab2 gt.json raw/ --format 2ch'))
@click.argument("panoptic_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--png-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="PNG folder of PANOPTIC_JSON (default: the JSON path without .json).")
@click.option("--categories", "categories_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Categories, when PANOPTIC_JSON has none (a prediction).")
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="2ch", show_default=True,
              help="Output layout (see from-deeplab2).")
@click.option("--label-divisor", type=click.IntRange(min=1), default=1000, show_default=True,
              help="label = semantic * divisor + instance ('label' PNGs).")
@click.option("--void-label", default="auto", show_default=True, callback=_void_out,
              help="Semantic label written for VOID pixels; auto: 255, and for --format label the smallest label "
                   "no category uses (0 for Cityscapes label ids), so that VOID fits 16 bits.")
@click.option("--crowd-as-void", is_flag=True,
              help="Crowd pixels become VOID (deeplab2's treat_crowd_as_ignore) instead of instance 0.")
@click.option("--label-map", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help='JSON object {"label": category_id}; inverted to write labels (default: identity).')
@_overwrite_option
@debug_option
def to_deeplab2(panoptic_json, out_dir, png_dir, categories_json, fmt, label_divisor, void_label, crowd_as_void,
                label_map, overwrite):
    """COCO panoptic to (semantic, instance) files with deeplab2's rules (thing instances 1, 2, ... per class)."""
    from pss_bench.convert.files import coco_to_deeplab2, read_label_map

    with progress_bar("convert") as progress:
        n = coco_to_deeplab2(
            panoptic_json, out_dir, png_dir=png_dir, categories_json=categories_json, fmt=fmt,
            label_divisor=label_divisor, void_label=void_label, crowd_as_void=crowd_as_void,
            label_map=read_label_map(label_map), overwrite=overwrite, progress=progress,
        )
    info(f"wrote {out_dir} ({n} images)")


@command.command("combine",
                 epilog=example('pss-bench convert combine pan.json --instances inst.json --semantic sem/ --images gt.json --categories gt.json'))
@click.argument("out_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--instances", "instances_json", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="COCO instance results (image_id, category_id, segmentation RLE, score).")
@click.option("--semantic", required=True, type=click.Path(exists=True, path_type=Path),
              help="Semantic segmentation: COCO detection-format JSON (RLE per category) or a folder of PNGs (pixel = category id).")
@click.option("--images", "images_json", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON with 'images' (id, file_name, height, width), e.g. the GT panoptic JSON.")
@click.option("--categories", "categories_json", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Panoptic categories (a list or a panoptic JSON).")
@click.option("--confidence-thr", type=float, default=0.5, show_default=True,
              help="Instances with a lower score are dropped.")
@click.option("--overlap-thr", type=float, default=0.5, show_default=True,
              help="An instance whose area is covered by more than this share of higher-scored ones is dropped.")
@click.option("--stuff-area-limit", type=float, default=64 * 64, show_default=True,
              help="Stuff regions with fewer free pixels are dropped.")
@click.option("--png-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output PNG folder (default: OUT_JSON without .json).")
@_overwrite_option
@debug_option
def combine(out_json, instances_json, semantic, images_json, categories_json, confidence_thr, overlap_thr,
            stuff_area_limit, png_dir, overwrite):
    """Instance results + semantic segmentation to a COCO panoptic prediction (panopticapi's combine rules)."""
    from pss_bench.convert.files import combine_to_coco

    with progress_bar("combine") as progress:
        n = combine_to_coco(
            instances_json, semantic, images_json, categories_json, out_json, png_dir=png_dir,
            confidence_thr=confidence_thr, overlap_thr=overlap_thr, stuff_area_limit=stuff_area_limit,
            overwrite=overwrite, progress=progress,
        )
    info(f"wrote {out_json} ({n} images)")


@command.command("to-detection",
                 epilog=example('pss-bench convert to-detection panoptic.json detection.json --things-only'))
@click.argument("panoptic_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--png-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="PNG folder of PANOPTIC_JSON (default: the JSON path without .json).")
@click.option("--categories", "categories_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Categories, when PANOPTIC_JSON has none.")
@click.option("--things-only", is_flag=True, help="Keep only segments of thing categories.")
@_overwrite_option
@debug_option
def to_detection(panoptic_json, out_json, png_dir, categories_json, things_only, overwrite):
    """COCO panoptic to COCO detection format (one RLE annotation per segment)."""
    from pss_bench.convert.files import coco_to_detection

    with progress_bar("convert") as progress:
        n = coco_to_detection(panoptic_json, out_json, png_dir=png_dir, categories_json=categories_json,
                              things_only=things_only, overwrite=overwrite, progress=progress)
    info(f"wrote {out_json} ({n} annotations)")


@command.command("to-semantic", epilog=example('pss-bench convert to-semantic panoptic.json semantic/'))
@click.argument("panoptic_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--png-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="PNG folder of PANOPTIC_JSON (default: the JSON path without .json).")
@click.option("--categories", "categories_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Categories, when PANOPTIC_JSON has none (only for --things-other).")
@click.option("--things-other", is_flag=True, help="Write every thing category as 183 ('other'), as COCO-stuff.")
@_overwrite_option
@debug_option
def to_semantic(panoptic_json, out_dir, png_dir, categories_json, things_other, overwrite):
    """COCO panoptic to 8-bit semantic PNGs (pixel = category id, 0 = none)."""
    from pss_bench.convert.files import coco_to_semantic_pngs

    with progress_bar("convert") as progress:
        n = coco_to_semantic_pngs(panoptic_json, out_dir, png_dir=png_dir, categories_json=categories_json,
                                  things_other=things_other, overwrite=overwrite, progress=progress)
    info(f"wrote {out_dir} ({n} images)")
