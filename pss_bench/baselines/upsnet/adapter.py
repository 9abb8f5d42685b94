"""Convert the official UPSNet test outputs into a pss-bench prediction directory.

UPSNet's test script writes, under ``results/``:

* ``pans_unified/pan_2ch/<name>.png``: red = UPSNet-internal semantic id
  (255 = void), green = instance index (0 for stuff);
* ``pans_unified/pan/<name>.png`` (RGB ids) with ``pans_unified/pred.json``,
  whose ``annotations`` carry ``segments_info`` only, no ``image_id`` and no
  ``file_name``: entry i belongs to the i-th image of the GT JSON;
* ``results_list.pkl`` (pickle protocol 2) with ``all_boxes``, ``all_masks``,
  ``all_ssegs``, ``all_panos``, ``all_pano_cls_inds``.

``<name>`` is the GT image's ``file_name`` with ``_leftImg8bit`` removed and
``jpg``/``jpeg`` replaced by ``png`` (as UPSNet's ``save_image`` does). Category ids are UPSNet-internal: Cityscapes
train ids (mapped to label ids with cityscapesscripts' table), or for COCO
0-52 the stuff and 53-132 the thing categories, each in the GT JSON's order.

The pickle is read with a restricted unpickler and only used to check that it
covers the GT images (count and sizes); the panoptic segments come from the
PNGs, preferring ``pan/`` + ``pred.json`` when both are present.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pss_bench.errors import FormatError, PredictionFormatError
from pss_bench.io.panoptic import (
    PanopticAnnotation,
    PanopticJson,
    id2rgb,
    load_panoptic_json,
    read_id_png,
    read_ids,
    read_json_file,
    safe_join,
)
from pss_bench.io.prediction import PredictionWriter
from pss_bench.io.safe_pickle import load_restricted_pickle
from pss_bench.text import short_repr

log = logging.getLogger(__name__)

VOID_SEMANTIC = 255
COCO_NUM_STUFF = 53


def cityscapes_category_map() -> dict[int, int]:
    """UPSNet-internal Cityscapes id (train id 0-18) -> Cityscapes label id."""
    from cityscapesscripts.helpers.labels import labels

    return {l.trainId: l.id for l in labels if not l.ignoreInEval and 0 <= l.trainId < 255}


def coco_category_map(gt: PanopticJson) -> dict[int, int]:
    """UPSNet-internal COCO id -> GT category id: stuff first, then things, each in GT order."""
    stuff = [c.id for c in gt.categories.values() if not c.isthing]
    things = [c.id for c in gt.categories.values() if c.isthing]
    if len(stuff) != COCO_NUM_STUFF:
        raise FormatError(
            f"{gt.path}: UPSNet's COCO ids assume {COCO_NUM_STUFF} stuff categories, the GT has {len(stuff)}; "
            "pass --category-map"
        )
    return {i: cid for i, cid in enumerate(stuff + things)}


def load_category_map(path: str | os.PathLike, gt: PanopticJson) -> dict[int, int]:
    """A JSON ``{"<internal id>": <category id or name>}`` given by the user."""
    obj = read_json_file(path)
    if not isinstance(obj, dict):
        raise FormatError(f"{path}: expected an object {{\"<internal id>\": <category id or name>}}, "
                          f"found {type(obj).__name__}")
    by_name = {c.name: c.id for c in gt.categories.values()}
    out = {}
    for k, v in obj.items():
        key = k.strip()
        digits = key[1:] if key.startswith("-") else key
        if not (digits.isascii() and digits.isdigit()):
            raise FormatError(f"{path}: internal id {short_repr(k)} is not an integer, so not an internal category id")
        # The length check first: int() of thousands of digits is refused (or slow).
        if len(digits) > 5 or not 0 <= int(key) < 2**16:
            raise FormatError(f"{path}: internal id {short_repr(key)} out of range [0, 65536), "
                              f"so not an internal category id")
        if isinstance(v, str):
            cid = by_name.get(v)
        elif isinstance(v, int) and not isinstance(v, bool):
            cid = v
        else:
            cid = None
        if cid not in gt.categories:
            raise FormatError(f"{path}: internal id {key} maps to {short_repr(v)}, which is not a GT category")
        out[int(key)] = cid
    return out


def upsnet_png_name(image_file_name: str) -> str:
    """The official name of an image's result PNG (relative to ``pan_2ch/`` or ``pan/``).

    UPSNet names it after the GT ``images[*].file_name`` with ``_leftImg8bit``
    removed and ``jpg``/``jpeg`` replaced by ``png``.
    """
    return image_file_name.replace("_leftImg8bit", "").replace("jpg", "png").replace("jpeg", "png")


@dataclass
class _Image:
    image_id: object
    ann: PanopticAnnotation  # the GT annotation; its PNG file name is reused for the prediction
    upsnet_name: str
    size: tuple[int, int] | None


def _gt_images(gt: PanopticJson, gt_json: Path) -> list[_Image]:
    raw = read_json_file(gt_json)
    images = raw.get("images")
    if not isinstance(images, list) or not images:
        raise FormatError(f"{gt_json}: UPSNet results follow the GT's 'images' order, but it has no 'images' list")
    ann_by_id = {a.image_id: a for a in gt.annotations}
    out = []
    for i, im in enumerate(images):
        image_id = im.get("id") if isinstance(im, dict) else None
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise FormatError(f"{gt_json}: images[{i}] has no 'id' (int or string)")
        ann = ann_by_id.get(image_id)
        if ann is None:
            raise FormatError(f"{gt_json}: image {image_id!r} is in 'images' but has no annotation")
        height, width = im.get("height"), im.get("width")
        size = (height, width) if all(isinstance(v, int) and not isinstance(v, bool) for v in (height, width)) else None
        file_name = im.get("file_name", ann.file_name)
        if not isinstance(file_name, str) or not file_name:
            raise FormatError(f"{gt_json}: image {image_id!r}: 'file_name' must be a string, found {short_repr(file_name)}")
        out.append(_Image(image_id, ann, upsnet_png_name(file_name), size))
    return out


def _segments_from_2ch(rgb: np.ndarray, cat_map: dict[int, int], where: str):
    """``(ids, segments_info)`` from a pan_2ch image (red semantic, green instance)."""
    sem = rgb[..., 0].astype(np.int64)
    inst = rgb[..., 1].astype(np.int64)
    code = sem * 256 + inst
    codes = np.unique(code)
    segs = []
    lut = np.zeros(256 * 256, dtype=np.int64)
    for code_v in codes.tolist():
        s, i = divmod(code_v, 256)
        if s == VOID_SEMANTIC:
            continue
        if s not in cat_map:
            raise PredictionFormatError(f"{where}: semantic id {s} is not an UPSNet category of this dataset")
        sid = len(segs) + 1
        lut[code_v] = sid
        segs.append({"id": sid, "category_id": cat_map[s]})
    ids = lut[code]
    return ids, segs


def convert_upsnet_results(
    results_dir: str | os.PathLike,
    gt_json: str | os.PathLike,
    dataset: str,
    out_dir: str | os.PathLike,
    *,
    gt_dir: str | os.PathLike | None = None,
    category_map: dict[int, int] | None = None,
    overwrite: bool = False,
    features_dir: str | os.PathLike | None = None,
) -> Path:
    """Writes a pss-bench prediction directory from official UPSNet outputs.

    Args:
        results_dir: UPSNet's ``.../results`` folder (or its ``pans_unified``).
        gt_json: the GT panoptic JSON the results were computed on.
        dataset: ``"cityscapes"`` or ``"coco"`` (selects the category mapping).
        out_dir: the prediction directory to create.
        category_map: overrides the internal id -> category id mapping.
        features_dir: optional folder of dense features saved from UPSNet's
            forward pass, ``<name>.npy`` (``D x h x w``, e.g. the 512-channel
            stride-4 ``fcn_feat``) with ``<name>`` the result PNG's stem; they
            are pooled over the GT segments into ``embeddings/`` as
            ``pss-bench embed`` does.

    Raises:
        FormatError: missing folders, an image count or order that does not
            match the GT, a refused pickle, unknown categories.
    """
    results_dir = Path(results_dir)
    gt_json = Path(gt_json)
    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    if category_map is None:
        if dataset == "cityscapes":
            category_map = cityscapes_category_map()
        elif dataset == "coco":
            category_map = coco_category_map(gt)
        else:
            raise ValueError(f"unknown dataset {dataset!r}")
    for cid in category_map.values():
        if cid not in gt.categories:
            raise FormatError(f"{gt_json}: category {cid} (from the {dataset} mapping) is not in the GT categories")
    images = _gt_images(gt, gt_json)

    unified = results_dir / "pans_unified" if (results_dir / "pans_unified").is_dir() else results_dir
    pan_dir, pred_json, two_ch = unified / "pan", unified / "pred.json", unified / "pan_2ch"
    entries = None
    if pan_dir.is_dir() and os.path.lexists(pred_json):  # a FIFO or folder there is refused by the reader
        obj = read_json_file(pred_json, PredictionFormatError)
        entries = obj.get("annotations") if isinstance(obj, dict) else None
        if not isinstance(entries, list):
            raise PredictionFormatError(f"{pred_json}: expected {{'annotations': [...]}}")
        if len(entries) != len(images):
            raise PredictionFormatError(
                f"{pred_json}: {len(entries)} entries but the GT {gt_json} has {len(images)} images; "
                "UPSNet's pred.json must list one entry per GT image, in the GT's order"
            )
    elif not two_ch.is_dir():
        raise FormatError(f"{unified}: neither pan/ with pred.json nor pan_2ch/ found (UPSNet's pans_unified folder)")

    pkl = results_dir / "results_list.pkl"
    if pkl.is_file():
        _check_pickle(pkl, images)

    with PredictionWriter(out_dir, model="upsnet-official", overwrite=overwrite, gt_json=str(gt_json.resolve()),
                          gt_dir=str(gt.png_dir.resolve()), source=str(results_dir)) as writer:
        first_dim: tuple[int, Path] | None = None
        for k, im in enumerate(images):
            if entries is not None:
                png = safe_join(pan_dir, im.upsnet_name, where=f"image {im.image_id!r}")
                where = f"{png}: image {im.image_id!r} (pred.json entry {k})"
                ids = read_ids(png, where, PredictionFormatError).astype(np.int64)
                segs = _segments_from_pred_json(entries[k], ids, category_map, where)
            else:
                png = safe_join(two_ch, im.upsnet_name, where=f"image {im.image_id!r}")
                where = f"{png}: image {im.image_id!r}"
                rgb = id2rgb(read_id_png(png, where=where))
                ids, segs = _segments_from_2ch(rgb, category_map, where)
            if im.size is not None and ids.shape != tuple(im.size):
                raise PredictionFormatError(
                    f"{where}: result is {ids.shape[1]}x{ids.shape[0]} but the GT image is {im.size[1]}x{im.size[0]}"
                )
            writer.add_panoptic(im.image_id, im.ann.file_name, ids, segs)
            if features_dir is not None:
                fpath, seg_ids, means = _pooled_features(Path(features_dir), im, gt)
                if first_dim is None:
                    first_dim = (means.shape[1], fpath)
                elif means.shape[1] != first_dim[0]:
                    raise PredictionFormatError(
                        f"{fpath}: image {im.image_id!r}: feature map has {means.shape[1]} channels but "
                        f"{first_dim[1]} has {first_dim[0]}: every image needs the same D"
                    )
                writer.add_embeddings(im.image_id, seg_ids, means)
        writer.commit()
    return Path(out_dir)


def _pooled_features(features_dir: Path, im: _Image, gt: PanopticJson) -> tuple[Path, np.ndarray, np.ndarray]:
    """The feature file, and the mean of its map over each GT segment present in the GT PNG."""
    from pss_bench.evaluation.embed import pool_gt_segments

    stem = os.path.splitext(os.path.basename(im.upsnet_name))[0]
    fpath = safe_join(features_dir, stem + ".npy", where=f"image {im.image_id!r}")
    _, seg_ids, means = pool_gt_segments(fpath, im.image_id, gt, im.ann)
    return fpath, seg_ids, means


def _segments_from_pred_json(entry, ids: np.ndarray, cat_map: dict[int, int], where: str) -> list[dict]:
    segs_in = entry.get("segments_info") if isinstance(entry, dict) else None
    if not isinstance(segs_in, list):
        raise PredictionFormatError(f"{where}: entry has no 'segments_info' list")
    declared = {}
    for i, s in enumerate(segs_in):
        if not isinstance(s, dict):
            raise PredictionFormatError(f"{where}: segments_info[{i}] is not an object, so it has no integer 'id' "
                                        f"(found {short_repr(s)})")
        sid, cat = s.get("id"), s.get("category_id")
        if not isinstance(sid, int) or isinstance(sid, bool) or not 0 < sid < 2**24:
            raise PredictionFormatError(f"{where}: segments_info[{i}] has no integer 'id' in [1, 2**24) "
                                        f"(found {short_repr(sid)})")
        if isinstance(cat, bool) or not isinstance(cat, int) or cat not in cat_map:
            raise PredictionFormatError(
                f"{where}, segment {sid}: category {short_repr(cat)} is not an UPSNet category of this dataset"
            )
        declared[sid] = cat_map[cat]
    present = set(np.unique(ids).tolist()) - {0}
    if present != set(declared):
        extra = sorted(present - set(declared))[:3]
        missing = sorted(set(declared) - present)[:3]
        raise PredictionFormatError(
            f"{where}: segments do not match the PNG (in the PNG only: {extra}, in pred.json only: {missing}); "
            "pred.json entries must follow the GT JSON's image order"
        )
    return [{"id": sid, "category_id": cid} for sid, cid in declared.items()]


def _describe(obj) -> str:
    """A short description of an untrusted object (never its repr: it may be huge or hold itself)."""
    if isinstance(obj, np.ndarray):
        return f"a {obj.ndim}-D {obj.dtype} array of shape {obj.shape}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    return f"a {type(obj).__name__}"


def _check_pickle(pkl: Path, images: list[_Image]) -> None:
    """Checks that ``all_panos`` holds one 2-D (or 3-D) array per GT image, of the GT image's size.

    Only types and shapes are looked at, never the contents, so shared or
    self-referencing containers cost nothing.
    """
    obj = load_restricted_pickle(pkl)
    if not isinstance(obj, dict):
        raise FormatError(f"{pkl}: expected a dict with all_panos, found {_describe(obj)}")
    panos = obj.get("all_panos")
    if panos is None:
        log.warning("%s: no all_panos; skipping the image-count check", pkl)
        return
    if isinstance(panos, np.ndarray) and panos.ndim >= 3 and panos.dtype.kind in "biuf":
        panos = list(panos)  # one stacked array of same-size images
    if not isinstance(panos, (list, tuple)):
        raise FormatError(f"{pkl}: all_panos must be a list with one array per image, found {_describe(panos)}")
    if len(panos) != len(images):
        raise FormatError(f"{pkl}: all_panos holds {len(panos)} images but the GT has {len(images)}")
    for k, (p, im) in enumerate(zip(panos, images)):
        if not isinstance(p, np.ndarray) or p.ndim not in (2, 3) or p.dtype.kind not in "biuf":
            raise FormatError(f"{pkl}: all_panos[{k}] must be a 2-D (or 3-D) numeric array, found {_describe(p)}")
        shape = p.shape
        if im.size is not None and tuple(shape[:2]) != tuple(im.size):
            raise FormatError(
                f"{pkl}: all_panos[{k}] is {shape[1]}x{shape[0]} but GT image {im.image_id!r} is "
                f"{im.size[1]}x{im.size[0]}: wrong image order?"
            )
