"""The pss-bench prediction directory, written atomically by every model.

Layout (see ``docs/formats.md``)::

    OUT/manifest.json      {"format": "pss-bench-predictions", "version": 1, "model": ..., ...}
    OUT/panoptic.json      COCO panoptic prediction (annotations with segments_info)
    OUT/panoptic/<file>    RGB id PNGs
    OUT/embeddings/<image_id>.npz   segment_ids int64 (N,), embeddings float16/float32 (N, D)

Everything is written into a hidden sibling folder that is renamed onto
``OUT`` by :meth:`PredictionWriter.commit`: a failure leaves no partial output,
a full disk is one :class:`~pss_bench.errors.DiskFullError` naming ``OUT``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pss_bench.errors import FormatError, PssBenchError
from pss_bench.io.atomic import disk_full_as_error, staged_dir, write_json_atomic
from pss_bench.io.panoptic import safe_join, write_id_png
from pss_bench.structures import ImageId

FORMAT_NAME = "pss-bench-predictions"
FORMAT_VERSION = 1


def check_replaceable(out_dir: str | os.PathLike) -> None:
    """Refuses to replace anything but an earlier prediction directory or an empty folder.

    ``--overwrite`` must never delete a user's folder that only happens to
    have the name given to ``--out``: a folder is replaced only when its
    ``manifest.json`` says this tool wrote it.

    Raises:
        PssBenchError: ``out_dir`` is a file or a link, or a non-empty folder
            without a pss-bench ``manifest.json``.
    """
    from pss_bench.io.safe_read import read_json_file

    out = Path(out_dir)
    if not (out.exists() or out.is_symlink()):
        return
    if out.is_symlink() or not out.is_dir():
        kind = "a symbolic link" if out.is_symlink() else "not a folder"
        raise PssBenchError(f"{out}: exists and is {kind}; refusing to replace it with a prediction directory")
    if not any(out.iterdir()):
        return
    try:
        manifest = read_json_file(out / "manifest.json")
    except FormatError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise PssBenchError(
            f"{out}: folder exists, is not empty and is not a pss-bench prediction directory (no manifest.json "
            f"with format {FORMAT_NAME!r}); refusing to replace it"
        )


class PredictionWriter:
    """Collects per-image panoptic outputs, then publishes them in one rename.

    Args:
        out_dir: the directory to create; an existing one is replaced only on
            :meth:`commit`, only with ``overwrite=True``, and only when it is
            empty or an earlier prediction directory (:func:`check_replaceable`).
        model: a free-form model name for the manifest.
        extra: more manifest keys.
    """

    def __init__(self, out_dir: str | os.PathLike, model: str, *, overwrite: bool = False, **extra: Any) -> None:
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        # The staged folder is open from here to commit() (published) or abort() (removed).
        self._staged = staged_dir(self.out_dir, before=self._check_target, before_publish=self._check_target)
        self._tmp = self._staged.__enter__()
        self._open = True
        self.manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model": model, **extra}
        self.annotations: list[dict] = []
        try:
            with disk_full_as_error(self.out_dir):
                (self._tmp / "panoptic").mkdir()
        except BaseException:
            self.abort()
            raise

    def _check_target(self) -> None:
        """Refuses an existing ``out_dir`` without ``overwrite``, or one that is not ours to replace.

        Checked when the staging folder exists (cleaning may have put back a
        folder a killed run was replacing) and again before publishing.
        """
        if self.out_dir.exists() or self.out_dir.is_symlink():
            if not self.overwrite:
                raise FileExistsError(f"{self.out_dir}: already exists (pass overwrite to replace it)")
            check_replaceable(self.out_dir)

    def add_panoptic(
        self, image_id: ImageId, file_name: str, ids: np.ndarray, segments_info: Sequence[dict]
    ) -> None:
        """Writes one image's id PNG and records its ``segments_info``."""
        path = safe_join(self._tmp / "panoptic", file_name, where=f"image {image_id!r}")
        with disk_full_as_error(self.out_dir, rename=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_id_png(path, ids)
        self.annotations.append(
            {"image_id": image_id, "file_name": file_name, "segments_info": [dict(s) for s in segments_info]}
        )

    def add_embeddings(self, image_id: ImageId, segment_ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Writes ``embeddings/<image_id>.npz`` (``segment_ids`` int64, ``embeddings`` float16/float32).

        Args:
            image_id: the image id; it names the file, so it must not escape
                the folder (``..``, absolute paths).
            segment_ids: ``(N,)`` distinct segment ids: GT segment ids when
                the manifest says ``"embeddings": "gt-segments"`` (the
                default set here), ids in ``panoptic/`` for ``"pred-segments"``.
            embeddings: ``(N, D)`` float array, stored as float16 when given
                float16 and float32 otherwise.

        Raises:
            UnsafePathError: the image id escapes the folder.
            ValueError: shapes that disagree, repeated ids, or NaN/inf values.
        """
        from pss_bench.io.atomic import atomic_path

        seg = np.asarray(segment_ids)
        emb = np.asarray(embeddings)
        if seg.ndim != 1 or emb.ndim != 2 or emb.shape[0] != seg.shape[0]:
            raise ValueError(f"image {image_id!r}: expected segment_ids (N,) and embeddings (N, D), got {seg.shape} and {emb.shape}")
        if seg.size and seg.dtype.kind not in "iu":
            raise ValueError(f"image {image_id!r}: segment_ids must be integers, found {seg.dtype}")
        if np.unique(seg).shape[0] != seg.shape[0]:
            raise ValueError(f"image {image_id!r}: repeated segment ids")
        if not np.isfinite(emb).all():
            raise ValueError(f"image {image_id!r}: embeddings hold NaN or infinite values")
        emb = emb.astype(np.float16 if emb.dtype == np.float16 else np.float32, copy=False)
        path = safe_join(self._tmp / "embeddings", f"{image_id}.npz", where=f"image {image_id!r}")
        with disk_full_as_error(self.out_dir, rename=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, segment_ids=seg.astype(np.int64), embeddings=emb)
        self.manifest.setdefault("embeddings", "gt-segments")

    def commit(self, categories: Sequence[dict] | None = None) -> Path:
        """Writes the JSONs and moves the directory into place.

        An existing directory is replaced atomically where the file system
        allows it; elsewhere a kill between its two renames is repaired by the
        next run (:func:`~pss_bench.io.atomic.publish_dir`).
        """
        pan = {"annotations": self.annotations}
        if categories is not None:
            pan["categories"] = list(categories)
        try:
            with disk_full_as_error(self.out_dir, rename=True):
                write_json_atomic(self._tmp / "panoptic.json", pan, indent=None)
                write_json_atomic(self._tmp / "manifest.json", self.manifest)
        except BaseException:
            self.abort()
            raise
        self._open = False
        self._staged.__exit__(None, None, None)  # publishes
        return self.out_dir

    def abort(self) -> None:
        """Removes the staging folder; nothing is published."""
        if self._open:
            self._open = False
            try:
                self._staged.__exit__(_Aborted, _Aborted(), None)
            except _Aborted:
                pass

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()  # a no-op after commit()


class _Aborted(Exception):
    """Thrown into the staged folder's block to remove it unpublished."""
