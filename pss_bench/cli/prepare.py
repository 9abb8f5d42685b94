"""``pss-bench prepare cityscapes|voc``: build COCO panoptic ground truth from a dataset's own labels."""

from __future__ import annotations

from pathlib import Path

import click

from pss_bench.cli.options import console_out, debug_option, example, workers_option, writable_folder
from pss_bench.text import printable


@click.group("prepare", epilog=example('pss-bench prepare cityscapes CITYSCAPES_ROOT --split val'))
def command() -> None:
    """Build the panoptic ground truth (JSON + PNGs) of a dataset on disk."""


@command.command("cityscapes", epilog=example('pss-bench prepare cityscapes CITYSCAPES_ROOT --split val'))
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", "splits", multiple=True, default=("train", "val"), show_default=True,
              help="Split to convert (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, callback=writable_folder,
              help="Output folder (default: ROOT/gtFine, where cityscapesscripts' converter writes).")
@click.option("--no-validate", is_flag=True, help="Skip the `pss-bench validate` check of the written GT.")
@workers_option
@debug_option
def cityscapes(root: Path, splits: tuple[str, ...], out_dir: Path | None, no_validate: bool, workers: int | None) -> None:
    """Run cityscapesscripts' panoptic converter on ROOT (holding leftImg8bit/ and gtFine/).

    Writes gtFine/cityscapes_panoptic_{split}.json and the folder of the same
    name, after checking names, sizes and PNG modes, then validates the result.
    """
    from pss_bench.data.cityscapes import prepare_cityscapes

    out = console_out()
    for split in splits:
        json_path, png_dir = prepare_cityscapes(root, split, out_dir, check=not no_validate, workers=workers)
        out.print(printable(f"{split}: {json_path} {png_dir}"), highlight=False, markup=False)


@command.command("voc", epilog=example('pss-bench prepare voc VOC2012_ROOT --split val'))
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", "splits", multiple=True, default=("train", "val"), show_default=True,
              help="List in ImageSets/Segmentation to convert (repeatable; 'all': every labelled frame).")
@click.option("--sbd-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="SBD 'dataset' folder (cls/, inst/, img/) for train_aug ids missing from VOC.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, callback=writable_folder,
              help="Output folder (default: ROOT).")
@debug_option
def voc(root: Path, splits: tuple[str, ...], sbd_dir: Path | None, out_dir: Path | None) -> None:
    """Turn PASCAL VOC 2012 SegmentationClass + SegmentationObject into COCO panoptic format.

    Writes panoptic_{split}.json and panoptic_{split}/ (255 stays VOID; the 20
    object classes are things, background is stuff).
    """
    from pss_bench.cli.progress import progress_bar
    from pss_bench.data.voc import convert_voc

    out = console_out()
    for split in splits:
        with progress_bar(f"VOC {split}") as progress:
            json_path, png_dir = convert_voc(root, None if split == "all" else split, out_dir, sbd_dir, progress)
        out.print(printable(f"{split}: {json_path} {png_dir}"), highlight=False, markup=False)
