"""File-level converters behind ``pss-bench convert``.

Each function reads one dataset layout and writes another. Outputs appear
only when complete: PNG folders are written under a temporary name and
renamed at the end, JSON files are written to a temporary file and renamed.
An existing output is refused unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from pss_bench.convert.labels import (
    COMBINE_CONFIDENCE_THR,
    COMBINE_OVERLAP_THR,
    COMBINE_STUFF_AREA_LIMIT,
    combine_instances_and_semantic,
    decode_rle,
    merge_panoptic_label,
    panoptic_to_detection,
    panoptic_to_semantic,
    panoptic_to_semantic_instance,
    semantic_instance_to_panoptic,
    semantic_regions,
    split_panoptic_label,
)
from pss_bench.errors import FormatError, PssBenchError
from pss_bench.io.atomic import atomic_path, staged_dir
from pss_bench.io.panoptic import default_png_dir, id2rgb, read_id_png, read_json_file, safe_join

log = logging.getLogger(__name__)

#: Raw deeplab2 / panopticapi layouts of a (semantic, instance) prediction.
DEEPLAB2_FORMATS = ("2ch", "3ch", "npy", "label")
_SUFFIX = {"2ch": ".png", "3ch": ".png", "npy": ".npy", "label": ".png"}
#: ``void_label="auto"``: 255 (deeplab2's ignore label), except for ``label`` PNGs,
#: where ``255 * label_divisor`` overflows 16 bits: see :func:`default_void_label`.
AUTO_VOID = "auto"

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- output helpers


def _check_free(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise PssBenchError(f"{path}: already exists (use --overwrite to replace it)")


@contextlib.contextmanager
def _atomic_dir(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yields a staging folder next to ``path``; it replaces ``path`` on success only.

    The staging and the replacement are :mod:`pss_bench.io.atomic`'s: the
    folder gets the umask's mode, a killed run's leftovers are cleaned by the
    next one, and a full disk is one :class:`~pss_bench.errors.DiskFullError`.
    """
    path = Path(path)

    def clear_file() -> None:
        if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
            path.unlink()

    # The check comes after the staging folder: making it may put back a folder a killed run was replacing.
    with staged_dir(path, before=lambda: _check_free(path, overwrite), before_publish=clear_file) as tmp:
        yield tmp


def _write_json(path: Path, obj) -> None:
    import json

    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f)
            f.write("\n")


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG")


# --------------------------------------------------------------------------- inputs


def read_categories(path: str | os.PathLike) -> list[dict]:
    """The categories of a panoptic JSON (its ``categories``) or of a plain category list.

    Raises:
        FormatError: no list of ``{"id", "isthing"}`` objects.
    """
    path = Path(path)
    obj = read_json_file(path)
    cats = obj.get("categories") if isinstance(obj, dict) else obj
    if not isinstance(cats, list) or not cats:
        raise FormatError(f"{path}: expected a list of categories or an object with 'categories'")
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or c.get("isthing") not in (0, 1, True, False):
            raise FormatError(f"{path}: categories[{i}] needs an integer 'id' and 'isthing' 0 or 1")
    return cats


def read_label_map(path: str | os.PathLike | None) -> dict[int, int] | None:
    """A JSON object ``{"label": category_id}`` (e.g. Cityscapes train id -> label id)."""
    if path is None:
        return None
    obj = read_json_file(path)
    try:
        return {int(k): int(v) for k, v in obj.items()}
    except (AttributeError, TypeError, ValueError):
        raise FormatError(f"{path}: expected a JSON object of integer label -> integer category id") from None


def read_deeplab2_prediction(path: Path, fmt: str, label_divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """``(semantic, instance)`` int64 maps of one raw prediction file.

    Formats (deeplab2's ``raw_panoptic_format`` names in brackets):

    * ``2ch``: RGB PNG, R = semantic, G = instance (panopticapi's 2-channel
      format, deeplab2's ``two_channel_png``);
    * ``3ch``: RGB PNG, R = semantic, G * 256 + B = instance
      (``three_channel_png``);
    * ``npy``: ``(H, W, >=2)`` array, channel 0 semantic, 1 instance
      (``two_channel_numpy_array``), or an ``(H, W)`` label map;
    * ``label``: a grayscale (8/16-bit) PNG of ``semantic * label_divisor + instance``.

    Raises:
        FormatError: unreadable file or wrong layout.
    """
    where = str(path)
    if fmt == "npy":
        from pss_bench.io.safe_arrays import read_npy

        try:
            arr = read_npy(path, where)  # plain numeric dtypes only, size bounded before allocating
        except FileNotFoundError:
            raise FormatError(f"{where}: file not found") from None
        if arr.dtype.kind not in "ui":
            raise FormatError(f"{where}: expected an integer array, found {arr.dtype}")
        if arr.ndim == 3 and arr.shape[2] >= 2:
            return arr[..., 0].astype(np.int64), arr[..., 1].astype(np.int64)
        if arr.ndim == 2:
            return split_panoptic_label(arr, label_divisor)
        raise FormatError(f"{where}: expected an (H, W, 2) or (H, W) array, found shape {arr.shape}")
    from pss_bench.io.safe_read import open_image

    try:
        with open_image(path, where, FormatError) as im:  # regular files only: a FIFO would block
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except FormatError:
        raise
    except Exception as exc:  # PIL raises several types on corrupt files
        raise FormatError(f"{where}: not a readable image ({exc})") from None
    if fmt == "label":
        if arr.ndim != 2:
            raise FormatError(f"{where}: expected a single-channel label PNG, found mode {mode}")
        return split_panoptic_label(arr, label_divisor)
    if arr.ndim != 3 or arr.shape[2] < 3 or arr.dtype != np.uint8:
        raise FormatError(f"{where}: expected an 8-bit RGB PNG for format {fmt!r}, found mode {mode}")
    sem = arr[..., 0].astype(np.int64)
    inst = arr[..., 1].astype(np.int64)
    if fmt == "3ch":
        inst = inst * 256 + arr[..., 2].astype(np.int64)
    return sem, inst


def default_void_label(fmt: str, categories: list[dict], label_map: Mapping[int, int] | None = None) -> int:
    """The VOID label ``void_label="auto"`` stands for, the same for both directions of a round trip.

    255 (deeplab2's ``ignore_label``) for ``2ch``, ``3ch`` and ``npy``; for
    ``label`` PNGs the smallest non-negative label no category uses (0 for
    Cityscapes' label ids, 19 for its train ids), so that
    ``void * label_divisor`` fits 16 bits.
    """
    if fmt != "label":
        return 255
    ids = [c["id"] for c in categories]
    used = set(label_map) if label_map is not None else set(ids)
    return next(v for v in range(len(used) + 1) if v not in used)


def _resolve_void(void_label, fmt: str, categories: list[dict], label_map: Mapping[int, int] | None):
    return default_void_label(fmt, categories, label_map) if void_label == AUTO_VOID else void_label


def write_deeplab2(path: Path, semantic: np.ndarray, instance: np.ndarray, fmt: str, label_divisor: int,
                   *, where: str | os.PathLike | None = None) -> None:
    """Writes ``(semantic, instance)`` in one of :data:`DEEPLAB2_FORMATS`.

    Args:
        where: the file named in errors (the final path when ``path`` is in a staging folder).

    Raises:
        FormatError: a value does not fit the format (use ``npy``).
    """
    where = path if where is None else where
    sem = np.asarray(semantic, dtype=np.int64)
    inst = np.asarray(instance, dtype=np.int64)
    if fmt == "npy":
        out = np.stack([sem, inst, np.zeros_like(sem)], axis=-1).astype(np.int32)
        with open(path, "wb") as f:
            np.save(f, out, allow_pickle=False)
        return
    if fmt == "label":
        label = merge_panoptic_label(sem, inst, label_divisor)
        if label.min() < 0 or label.max() > 65535:
            top = np.unravel_index(int(np.argmax(label)), label.shape)
            raise FormatError(
                f"{where}: label {int(label.max())} (semantic {int(sem[top])} * divisor {label_divisor} + instance "
                f"{int(inst[top])}) does not fit a 16-bit PNG: pass a smaller --void-label or --label-divisor "
                f"(instances here go up to {int(inst.max())}), or use --format npy")
        _save_png(path, label.astype(np.uint16))
        return
    max_inst = 255 if fmt == "2ch" else 65535
    if sem.min() < 0 or sem.max() > 255 or inst.max() > max_inst:
        raise FormatError(f"{where}: semantic labels up to {int(sem.max())} or instance ids up to {int(inst.max())} "
                          f"do not fit format {fmt!r} (use --format npy)")
    rgb = np.zeros(sem.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = sem
    if fmt == "2ch":
        rgb[..., 1] = inst
    else:
        rgb[..., 1] = inst // 256
        rgb[..., 2] = inst % 256
    _save_png(path, rgb)


def _panoptic_input(json_path: str | os.PathLike, png_dir: str | os.PathLike | None):
    json_path = Path(json_path)
    obj = read_json_file(json_path)
    if not isinstance(obj, dict) or not isinstance(obj.get("annotations"), list):
        raise FormatError(f"{json_path}: expected a COCO panoptic JSON with 'annotations'")
    png_dir = Path(png_dir) if png_dir is not None else default_png_dir(json_path)
    if not png_dir.is_dir():
        raise FormatError(f"{png_dir}: PNG folder of {json_path} not found")
    return json_path, obj, png_dir


def _annotation_ids(json_path: Path, png_dir: Path, ann: dict, index: int) -> tuple[np.ndarray, list[dict], str]:
    if not isinstance(ann, dict) or not isinstance(ann.get("segments_info"), list):
        raise FormatError(f"{json_path}: annotations[{index}] needs 'segments_info'")
    where = f"{json_path}: image {ann.get('image_id')!r}"
    png = safe_join(png_dir, ann.get("file_name"), where=where)
    return read_id_png(png, where=f"{png}: image {ann.get('image_id')!r}"), ann["segments_info"], where


# --------------------------------------------------------------------------- deeplab2 <-> COCO panoptic


def deeplab2_to_coco(
    src_dir: str | os.PathLike,
    out_json: str | os.PathLike,
    categories_json: str | os.PathLike,
    *,
    fmt: str = "2ch",
    label_divisor: int = 1000,
    void_label: int | str | None = AUTO_VOID,
    crowd_instance: int | None = 0,
    label_map: Mapping[int, int] | None = None,
    images_json: str | os.PathLike | None = None,
    png_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> int:
    """Converts a folder of raw (semantic, instance) predictions to COCO panoptic.

    Every ``*.png`` / ``*.npy`` file of ``src_dir`` (by ``fmt``) is one
    image; its image id is the file name's stem, or, with ``images_json``,
    the ``id`` of the image whose ``file_name`` has that stem, whose ``id``
    is that stem, or whose annotation's PNG has that stem (the names
    :func:`coco_to_deeplab2` writes, e.g. Cityscapes' ``*_gtFine_panoptic``).
    ``void_label="auto"``: :func:`default_void_label`.

    Returns:
        The number of images written.
    """
    src_dir = Path(src_dir)
    out_json = Path(out_json)
    png_dir = Path(png_dir) if png_dir is not None else default_png_dir(out_json)
    if fmt not in DEEPLAB2_FORMATS:
        raise PssBenchError(f"unknown format {fmt!r}; expected one of {', '.join(DEEPLAB2_FORMATS)}")
    if not src_dir.is_dir():
        raise PssBenchError(f"{src_dir}: input folder not found")
    categories = read_categories(categories_json)
    void_label = _resolve_void(void_label, fmt, categories, label_map)
    thing_ids = [c["id"] for c in categories if c["isthing"]]
    cat_ids = [c["id"] for c in categories]
    files = sorted(src_dir.glob(f"*{_SUFFIX[fmt]}"))
    if not files:
        raise PssBenchError(f"{src_dir}: no *{_SUFFIX[fmt]} file for format {fmt!r}")
    by_stem = _images_by_stem(images_json) if images_json is not None else {}
    _check_free(out_json, overwrite)
    images, annotations = [], []
    with _atomic_dir(png_dir, overwrite) as tmp_dir:
        for n, path in enumerate(files, 1):
            sem, inst = read_deeplab2_prediction(path, fmt, label_divisor)
            info = by_stem.get(path.stem)
            if images_json is not None and info is None:
                raise PssBenchError(f"{path}: no image in {images_json} whose file_name or id is {path.stem!r}, "
                                    "nor an annotation whose file_name has that stem")
            image_id = info["id"] if info is not None else path.stem
            ids, segments = semantic_instance_to_panoptic(
                sem, inst, thing_ids=thing_ids, void_label=void_label, crowd_instance=crowd_instance,
                category_ids=cat_ids, label_to_category=label_map, where=str(path),
            )
            name = f"{path.stem}.png"
            _save_png(tmp_dir / name, id2rgb(ids))
            images.append({"id": image_id, "file_name": info.get("file_name", name) if info else name,
                           "height": int(ids.shape[0]), "width": int(ids.shape[1])})
            annotations.append({"image_id": image_id, "file_name": name, "segments_info": segments})
            if progress:
                progress(n, len(files))
        _write_json(out_json, {"images": images, "annotations": annotations, "categories": categories})
    return len(files)


def _images_by_stem(images_json: str | os.PathLike) -> dict[str, dict]:
    """File stem -> image entry: by ``images[].file_name``, ``images[].id`` and ``annotations[].file_name``."""
    obj = read_json_file(images_json)
    if not isinstance(obj, dict):
        raise FormatError(f"{images_json}: expected a JSON object with 'images'")
    images = [im for im in obj.get("images") or [] if isinstance(im, dict) and "id" in im]
    by_id = {str(im["id"]): im for im in images}
    by_stem: dict[str, dict] = {}
    for ann in obj.get("annotations") or []:
        if isinstance(ann, dict) and isinstance(ann.get("file_name"), str) and "image_id" in ann:
            by_stem[Path(ann["file_name"]).stem] = by_id.get(str(ann["image_id"]), {"id": ann["image_id"]})
    by_stem.update(by_id)
    for im in images:
        if isinstance(im.get("file_name"), str):
            by_stem[Path(im["file_name"]).stem] = im
    return by_stem


def coco_to_deeplab2(
    panoptic_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    png_dir: str | os.PathLike | None = None,
    categories_json: str | os.PathLike | None = None,
    fmt: str = "2ch",
    label_divisor: int = 1000,
    void_label: int | str = AUTO_VOID,
    crowd_as_void: bool = False,
    label_map: Mapping[int, int] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> int:
    """Converts COCO panoptic PNGs to raw (semantic, instance) files, with deeplab2's rules.

    ``label_map`` maps label -> category id (as for :func:`deeplab2_to_coco`);
    it is inverted here. Output files are named after the PNGs.
    ``void_label="auto"``: :func:`default_void_label`.
    """
    if fmt not in DEEPLAB2_FORMATS:
        raise PssBenchError(f"unknown format {fmt!r}; expected one of {', '.join(DEEPLAB2_FORMATS)}")
    json_path, obj, png_dir = _panoptic_input(panoptic_json, png_dir)
    categories = read_categories(categories_json if categories_json is not None else json_path)
    void_label = _resolve_void(void_label, fmt, categories, label_map)
    thing_ids = [c["id"] for c in categories if c["isthing"]]
    to_label = None
    if label_map is not None:
        to_label = {}
        for label, cid in label_map.items():
            if cid in to_label:
                raise PssBenchError(f"the label map gives category {cid} two labels ({to_label[cid]}, {label})")
            to_label[cid] = label
    anns = obj["annotations"]
    with _atomic_dir(Path(out_dir), overwrite) as tmp_dir:
        for n, ann in enumerate(anns, 1):
            ids, segments, where = _annotation_ids(json_path, png_dir, ann, n - 1)
            sem, inst = panoptic_to_semantic_instance(
                ids, segments, thing_ids=thing_ids, void_label=void_label, crowd_as_void=crowd_as_void,
                category_to_label=to_label, where=where,
            )
            name = Path(ann["file_name"]).stem + _SUFFIX[fmt]
            write_deeplab2(tmp_dir / name, sem, inst, fmt, label_divisor, where=Path(out_dir) / name)
            if progress:
                progress(n, len(anns))
    return len(anns)


# --------------------------------------------------------------------------- combine


def _instances_by_image(path: Path) -> dict:
    obj = read_json_file(path)
    if isinstance(obj, dict):
        obj = obj.get("annotations")
    if not isinstance(obj, list):
        raise FormatError(f"{path}: expected a list of instance results (or an object with 'annotations')")
    out: dict = {}
    for i, a in enumerate(obj):
        if not isinstance(a, dict) or not all(k in a for k in ("image_id", "category_id", "segmentation")):
            raise FormatError(f"{path}: result [{i}] needs 'image_id', 'category_id' and 'segmentation'")
        if "score" not in a:
            a = dict(a, score=1.0)  # ground-truth-like files: every instance is certain
        out.setdefault(a["image_id"], []).append(a)
    return out


def combine_to_coco(
    instances_json: str | os.PathLike,
    semantic: str | os.PathLike,
    images_json: str | os.PathLike,
    categories_json: str | os.PathLike,
    out_json: str | os.PathLike,
    *,
    png_dir: str | os.PathLike | None = None,
    confidence_thr: float = COMBINE_CONFIDENCE_THR,
    overlap_thr: float = COMBINE_OVERLAP_THR,
    stuff_area_limit: float = COMBINE_STUFF_AREA_LIMIT,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> int:
    """Instance results + semantic segmentation -> a COCO panoptic prediction.

    Args:
        instances_json: COCO instance results (``image_id``, ``category_id``,
            ``segmentation`` RLE, ``score``), e.g. detectron2's
            ``coco_instances_results.json``.
        semantic: a COCO detection-format JSON of semantic regions (RLE per
            category and image, as panopticapi's ``--semseg_json_file``), or a
            folder of semantic PNGs (pixel = category id) named after the
            images' file names with ``.png``.
        images_json: a JSON with ``images`` (``id``, ``file_name``, ``height``,
            ``width``), e.g. the GT panoptic JSON.
        categories_json: the panoptic categories (``isthing`` decides stuff).
        out_json: the prediction JSON; PNGs go to ``png_dir`` (default: the
            JSON path without ``.json``).

    Returns:
        The number of images written.
    """
    out_json = Path(out_json)
    png_dir = Path(png_dir) if png_dir is not None else default_png_dir(out_json)
    categories = read_categories(categories_json)
    stuff_ids = [c["id"] for c in categories if not c["isthing"]]
    images = [im for im in (read_json_file(images_json).get("images") or []) if isinstance(im, dict)]
    if not images:
        raise FormatError(f"{images_json}: no 'images' list")
    inst_by_image = _instances_by_image(Path(instances_json))
    semantic = Path(semantic)
    sem_by_image: dict | None = None
    if semantic.is_file():
        sem_by_image = _instances_by_image(semantic)
    elif not semantic.is_dir():
        raise PssBenchError(f"{semantic}: semantic input not found (a JSON file or a PNG folder)")
    _check_free(out_json, overwrite)
    annotations = []
    with _atomic_dir(png_dir, overwrite) as tmp_dir:
        for n, im in enumerate(images, 1):
            image_id, h, w = im.get("id"), im.get("height"), im.get("width")
            if not isinstance(h, int) or not isinstance(w, int) or not isinstance(im.get("file_name"), str):
                raise FormatError(f"{images_json}: image {image_id!r} needs 'file_name', 'height' and 'width'")
            where = f"image {image_id!r}"
            name = Path(im["file_name"]).stem + ".png"
            if sem_by_image is not None:
                regions = [(a["category_id"], decode_rle(a["segmentation"], h, w, f"{semantic}: {where}"))
                           for a in sem_by_image.get(image_id, [])]
            else:
                from pss_bench.data.common import read_label_png

                sem_png = safe_join(semantic, name, where=f"{images_json}: {where}")
                sem_map = read_label_png(sem_png, ("L", "P", "I;16", "I"), where=f"{sem_png}: {where}")
                if sem_map.shape != (h, w):
                    raise FormatError(f"{sem_png}: {where}: size {sem_map.shape} differs from the image size {(h, w)}")
                regions = semantic_regions(sem_map)
            ids, segments = combine_instances_and_semantic(
                h, w, inst_by_image.get(image_id, []), regions, stuff_ids=stuff_ids,
                confidence_thr=confidence_thr, overlap_thr=overlap_thr, stuff_area_limit=stuff_area_limit,
                where=f"{instances_json}: {where}",
            )
            _save_png(tmp_dir / name, id2rgb(ids))
            annotations.append({"image_id": image_id, "file_name": name, "segments_info": segments})
            if progress:
                progress(n, len(images))
        _write_json(out_json, {"images": images, "annotations": annotations, "categories": categories})
    return len(images)


# --------------------------------------------------------------------------- panoptic -> detection / semantic


def coco_to_detection(
    panoptic_json: str | os.PathLike,
    out_json: str | os.PathLike,
    *,
    png_dir: str | os.PathLike | None = None,
    categories_json: str | os.PathLike | None = None,
    things_only: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> int:
    """COCO panoptic -> COCO detection format (RLE masks), as panopticapi's converter.

    The output keeps the input's top-level fields; ``annotations`` are the
    segments (``id`` numbered from 0 over the dataset) and ``categories``
    lose ``isthing`` (they keep ``color``, as in panopticapi's shipped
    ``sample_data/panoptic_coco_detection_format.json``).

    Returns:
        The number of annotations written.
    """
    json_path, obj, png_dir = _panoptic_input(panoptic_json, png_dir)
    out_json = Path(out_json)
    _check_free(out_json, overwrite)
    categories = read_categories(categories_json if categories_json is not None else json_path)
    thing_ids = [c["id"] for c in categories if c["isthing"]] if things_only else None
    out_anns: list[dict] = []
    anns = obj["annotations"]
    for n, ann in enumerate(anns, 1):
        ids, segments, where = _annotation_ids(json_path, png_dir, ann, n - 1)
        out_anns.extend(panoptic_to_detection(ids, segments, ann.get("image_id"), thing_ids=thing_ids, where=where))
        if progress:
            progress(n, len(anns))
    for i, a in enumerate(out_anns):
        a["id"] = i
    out = {k: v for k, v in obj.items() if k not in ("annotations", "categories")}
    out["annotations"] = out_anns
    out["categories"] = [
        {k: v for k, v in c.items() if k != "isthing"}
        for c in categories if not things_only or c["isthing"]
    ]
    _write_json(out_json, out)
    return len(out_anns)


def coco_to_semantic_pngs(
    panoptic_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    png_dir: str | os.PathLike | None = None,
    categories_json: str | os.PathLike | None = None,
    things_other: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> int:
    """COCO panoptic -> 8-bit semantic PNGs (pixel = category id, 0 = none), as panopticapi.

    With ``things_other`` every thing category becomes 183 ("other"), as
    panopticapi's ``--things_other`` for the COCO-stuff challenge.

    Returns:
        The number of images written.
    """
    json_path, obj, png_dir = _panoptic_input(panoptic_json, png_dir)
    thing_ids = None
    if things_other:
        categories = read_categories(categories_json if categories_json is not None else json_path)
        thing_ids = [c["id"] for c in categories if c["isthing"]]
    anns = obj["annotations"]
    with _atomic_dir(Path(out_dir), overwrite) as tmp_dir:
        for n, ann in enumerate(anns, 1):
            ids, segments, where = _annotation_ids(json_path, png_dir, ann, n - 1)
            sem = panoptic_to_semantic(ids, segments, things_other=thing_ids, where=where)
            _save_png(tmp_dir / (Path(ann["file_name"]).stem + ".png"), sem)
            if progress:
                progress(n, len(anns))
    return len(anns)
