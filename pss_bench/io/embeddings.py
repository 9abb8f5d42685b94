"""Reading the embeddings of a pss-bench prediction directory, with strict checks.

Layout (see ``docs/formats.md``)::

    PRED_DIR/manifest.json             {"format": "pss-bench-predictions", "version": 1,
                                        "model": ..., "embeddings": "gt-segments" | "pred-segments"}
    PRED_DIR/embeddings/<image_id>.npz segment_ids: int64 (N,); embeddings: float16/float32 (N, D)

Every problem raises :class:`~pss_bench.errors.PredictionFormatError` with a
one-line message naming the file (and image and segment where they apply).
Files are read by :func:`~pss_bench.io.safe_arrays.read_npz`: plain numeric
``.npy`` members only, sizes bounded before anything is allocated. Nothing here knows the ground
truth: checking segment ids against it is the caller's job.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pss_bench.errors import PredictionFormatError, UnsafePathError, blamed_on
from pss_bench.io.panoptic import read_json_file, safe_join
from pss_bench.io.prediction import FORMAT_NAME, FORMAT_VERSION
from pss_bench.io.safe_arrays import npz_member_names, read_npz
from pss_bench.structures import ImageId
from pss_bench.text import near_image_id

log = logging.getLogger(__name__)

EMBEDDING_KINDS = ("gt-segments", "pred-segments")
EMBEDDINGS_DIR = "embeddings"


@dataclass(frozen=True)
class ImageEmbeddings:
    """The embeddings of one image.

    Attributes:
        image_id: the image id (as in the ground truth).
        path: the ``.npz`` file they came from.
        segment_ids: ``(N,)`` int64 distinct segment ids.
        embeddings: ``(N, D)`` float32.
    """

    image_id: ImageId
    path: Path
    segment_ids: np.ndarray
    embeddings: np.ndarray


def read_manifest(pred_dir: str | os.PathLike) -> dict:
    """Loads and checks ``PRED_DIR/manifest.json``.

    Raises:
        PredictionFormatError: missing or malformed manifest, unknown format or
            version, or an ``embeddings`` value other than ``gt-segments`` /
            ``pred-segments``.
    """
    pred_dir = Path(pred_dir)
    path = pred_dir / "manifest.json"
    if not pred_dir.is_dir():
        raise PredictionFormatError(f"{pred_dir}: expected a prediction directory holding manifest.json and embeddings/")
    if not path.is_file():
        raise PredictionFormatError(f"{path}: manifest not found (a prediction directory needs manifest.json)")
    manifest = read_json_file(path, PredictionFormatError)
    if not isinstance(manifest, dict):
        raise PredictionFormatError(f"{path}: expected a JSON object, found {type(manifest).__name__}")
    if manifest.get("format") != FORMAT_NAME:
        raise PredictionFormatError(f"{path}: 'format' must be {FORMAT_NAME!r}, found {manifest.get('format')!r}")
    if manifest.get("version") != FORMAT_VERSION:
        raise PredictionFormatError(
            f"{path}: unsupported version {manifest.get('version')!r} (this pss-bench reads version {FORMAT_VERSION})"
        )
    kind = manifest.get("embeddings")
    if kind is not None and kind not in EMBEDDING_KINDS:
        raise PredictionFormatError(f"{path}: 'embeddings' must be one of {list(EMBEDDING_KINDS)}, found {kind!r}")
    return manifest


def embeddings_path(pred_dir: str | os.PathLike, image_id: ImageId) -> Path:
    """``PRED_DIR/embeddings/<image_id>.npz``, refusing ids that escape the folder.

    Raises:
        PredictionFormatError: the image id is empty, absolute or climbs out with ``..``.
    """
    folder = Path(pred_dir) / EMBEDDINGS_DIR
    with blamed_on(PredictionFormatError, (UnsafePathError,)):
        return safe_join(folder, f"{image_id}.npz", where=f"{folder}: image {image_id!r}")


def read_image_embeddings(path: str | os.PathLike, image_id: ImageId) -> ImageEmbeddings:
    """Reads and checks one ``.npz`` file.

    Raises:
        PredictionFormatError: unreadable file, a member that is not a plain
            ``.npy`` (a pickle), sizes over the limits, missing arrays, wrong
            dtype or shape, repeated segment ids, NaN or infinite values.
    """
    path = Path(path)
    where = f"{path}: image {image_id!r}"
    try:
        arrays = read_npz(path, ("segment_ids", "embeddings"), where, error_cls=PredictionFormatError)
        missing = {"segment_ids", "embeddings"} - set(arrays)
        if missing:
            raise PredictionFormatError(f"{where}: missing array(s) {sorted(missing)} (found {npz_member_names(path)})")
    except FileNotFoundError:
        raise PredictionFormatError(f"{where}: embeddings file not found") from None
    seg, emb = arrays["segment_ids"], arrays["embeddings"]
    if seg.ndim != 1 or seg.dtype.kind not in "iu":
        raise PredictionFormatError(f"{where}: 'segment_ids' must be a 1-D integer array, found {seg.dtype} {seg.shape}")
    if emb.ndim != 2 or emb.dtype not in (np.float16, np.float32):
        raise PredictionFormatError(f"{where}: 'embeddings' must be a 2-D float16/float32 array, found {emb.dtype} {emb.shape}")
    if emb.shape[0] != seg.shape[0]:
        raise PredictionFormatError(
            f"{where}: {seg.shape[0]} segment ids but {emb.shape[0]} embedding rows"
        )
    if emb.shape[1] == 0:
        raise PredictionFormatError(f"{where}: embeddings have dimension 0")
    if seg.size and seg.dtype.kind == "u" and int(seg.max()) > np.iinfo(np.int64).max:
        raise PredictionFormatError(f"{where}, segment {int(seg.max())}: not a segment id (over 2**63)")
    seg = seg.astype(np.int64)
    uniq, counts = np.unique(seg, return_counts=True)
    if uniq.shape[0] != seg.shape[0]:
        raise PredictionFormatError(f"{where}, segment {int(uniq[counts > 1][0])}: listed twice in 'segment_ids'")
    emb = emb.astype(np.float32)
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        bad = int(seg[np.flatnonzero(~finite)[0]])
        raise PredictionFormatError(f"{where}, segment {bad}: embedding holds NaN or infinite values")
    return ImageEmbeddings(image_id=image_id, path=path, segment_ids=seg, embeddings=emb)


def load_embeddings(pred_dir: str | os.PathLike, image_ids) -> tuple[dict, dict[ImageId, ImageEmbeddings]]:
    """Reads the manifest and the embeddings of the given images.

    An image without a file has no embeddings (a warning is logged); files for
    images not in ``image_ids`` are ignored.

    Args:
        pred_dir: the prediction directory.
        image_ids: the ground truth's image ids, in order.

    Returns:
        ``(manifest, {image_id: ImageEmbeddings})``.

    Raises:
        PredictionFormatError: a bad manifest or file, dimensions that differ
            between images, an unsafe image id, or no embeddings at all.
    """
    pred_dir = Path(pred_dir)
    manifest = read_manifest(pred_dir)
    folder = pred_dir / EMBEDDINGS_DIR
    if not folder.is_dir():
        raise PredictionFormatError(f"{folder}: embeddings folder not found")
    out: dict[ImageId, ImageEmbeddings] = {}
    missing: list[ImageId] = []
    dim: tuple[int, Path] | None = None
    for image_id in image_ids:
        path = embeddings_path(pred_dir, image_id)
        if not os.path.lexists(path):  # a folder, FIFO or broken link under that name is refused by the reader
            missing.append(image_id)
            continue
        e = read_image_embeddings(path, image_id)
        if e.segment_ids.shape[0]:
            if dim is None:
                dim = (e.embeddings.shape[1], path)
            elif e.embeddings.shape[1] != dim[0]:
                raise PredictionFormatError(
                    f"{path}: image {image_id!r}: embeddings have dimension {e.embeddings.shape[1]} "
                    f"but {dim[1]} has {dim[0]}"
                )
        out[image_id] = e
    if not out:
        hint = ""
        if missing:
            near = near_image_id(missing[0], (f.name[:-4] for f in folder.glob("*.npz")))
            if near is not None:
                hint = (f" (GT image {missing[0]!r} has none, but {near}.npz is there: files are named "
                        f"<image_id>.npz with the GT's image ids)")
        raise PredictionFormatError(
            f"{folder}: no embeddings file for any of the {len(missing)} ground-truth images{hint}")
    if missing:
        log.warning("%s: %d ground-truth images have no embeddings file (e.g. %s)", folder, len(missing), missing[:3])
    return manifest, out
