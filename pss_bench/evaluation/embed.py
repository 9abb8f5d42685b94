"""``pss-bench embed``: dense feature maps pooled over the GT segments into a prediction directory.

Also the pooling of ``import-upsnet --features`` (:func:`pool_gt_segments`).
Reads ``<image_id>.npy`` maps (:mod:`pss_bench.io.features`) and the GT PNGs;
the pooling itself is :func:`pss_bench.metrics.context_error.pool_features`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from pss_bench.errors import GroundTruthFormatError, PredictionFormatError, UnsafePathError, blamed_on
from pss_bench.io.features import apply_feature_layout, check_feature_layout, read_feature_map
from pss_bench.io.panoptic import (
    PanopticAnnotation,
    PanopticJson,
    check_png_folder,
    load_panoptic_json,
    read_ids,
    safe_join,
)
from pss_bench.metrics.context_error import pool_features, segment_index_map
from pss_bench.structures import ImageId
from pss_bench.text import near_image_id
from pss_bench.threads import map_ordered


def pool_gt_segments(fpath: Path, image_id: ImageId, gt: PanopticJson, ann: PanopticAnnotation,
                     layout: str = "auto") -> tuple[int, np.ndarray, np.ndarray]:
    """The mean of the feature map ``fpath`` over each GT segment of ``ann`` present in its PNG.

    The pooling of ``pss-bench embed`` and of ``import-upsnet --features``.
    ``layout``: ``auto``, ``dhw`` or ``hwd`` (:func:`~pss_bench.io.features.check_feature_layout`).

    Returns:
        ``(D, segment_ids (N,) int64, means (N, D) float32)``.

    Raises:
        PredictionFormatError | GroundTruthFormatError: a bad feature map
            (:func:`~pss_bench.io.features.read_feature_map`, its layout) or GT PNG.
    """
    feats = apply_feature_layout(read_feature_map(fpath, image_id), layout)
    png = gt.png_path(ann)
    ids = read_ids(png, f"{png}: image {image_id!r}", GroundTruthFormatError)
    check_feature_layout(feats.shape, ids.shape, f"{fpath}: image {image_id!r}", layout)
    means, area = pool_features(feats, segment_index_map(ids, ann.segments.ids), len(ann.segments))
    keep = area > 0
    return feats.shape[0], ann.segments.ids[keep], means[keep]


def embed_features(
    features_dir: str | os.PathLike,
    gt_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    gt_dir: str | os.PathLike | None = None,
    model: str | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    layout: str = "auto",
) -> Path:
    """Pools ``FEATURES_DIR/<image_id>.npy`` over the GT segments into a prediction directory.

    ``layout``: the maps' axis order, ``auto`` (told from the shape, ambiguous
    ones refused), ``dhw`` or ``hwd`` (:func:`~pss_bench.io.features.check_feature_layout`).

    Every GT segment present in its PNG gets the mean of the feature map
    resized bilinearly to the GT size (:func:`~pss_bench.metrics.context_error.pool_features`).
    The directory is written atomically (nothing is left on failure); its
    manifest says ``"embeddings": "gt-segments"`` and names the GT JSON.

    Raises:
        GroundTruthFormatError | PredictionFormatError: bad GT or feature maps.
    """
    from pss_bench.io.prediction import PredictionWriter

    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    check_png_folder(gt, GroundTruthFormatError)
    features_dir = Path(features_dir)

    def one(ann: PanopticAnnotation):
        with blamed_on(PredictionFormatError, (UnsafePathError,)):  # an image id that escapes the folder
            fpath = safe_join(features_dir, f"{ann.image_id}.npy", where=f"{features_dir}: image {ann.image_id!r}")
        if not os.path.lexists(fpath):
            near = near_image_id(ann.image_id, (f.name[:-4] for f in features_dir.glob("*.npy")))
            if near is not None:
                raise PredictionFormatError(
                    f"{fpath}: image {ann.image_id!r}: feature map not found, but {near}.npy is there "
                    f"(files are named <image_id>.npy with the GT's image ids)")
        dim, seg_ids, means = pool_gt_segments(fpath, ann.image_id, gt, ann, layout)
        return ann.image_id, fpath, dim, seg_ids, means

    writer = PredictionWriter(out_dir, model or f"features:{features_dir.name}", overwrite=overwrite,
                              embeddings="gt-segments", gt_json=str(Path(gt_json).resolve()))
    with writer:
        first: tuple[int, Path] | None = None
        for image_id, fpath, dim, seg_ids, means in map_ordered(one, gt.annotations, workers, progress, "pss-ce"):
            if first is None:
                first = (dim, fpath)
            elif dim != first[0]:  # refused here, not later by context-error
                raise PredictionFormatError(
                    f"{fpath}: image {image_id!r}: feature map has {dim} channels but {first[1]} has {first[0]}: "
                    f"every image needs the same D"
                )
            writer.add_embeddings(image_id, seg_ids, means)
        return writer.commit()
