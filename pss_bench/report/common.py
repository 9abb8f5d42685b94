"""Shared pieces of the Context Error figures: crops, image lookup, saving (colours: :mod:`.palette`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pss_bench.errors import FormatError, GroundTruthFormatError, PssBenchError, UnsafePathError
from pss_bench.io.atomic import atomic_path
from pss_bench.io.panoptic import PanopticJson, read_ids, safe_join
from pss_bench.io.safe_read import open_regular
from pss_bench.structures import ImageId

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DPI = 100


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def context_window(box: Sequence[int]) -> tuple[int, int, int, int]:
    """The ``3w x 3h`` window ``x0, y0, x1, y1`` centred on a box ``x0, y0, w, h``."""
    x0, y0, w, h = (int(v) for v in box)
    return x0 - w, y0 - h, x0 + 2 * w, y0 + 2 * h


def crop_padded(arr: np.ndarray, window: tuple[int, int, int, int], fill) -> np.ndarray:
    """``arr[y0:y1, x0:x1]`` with the parts outside the array set to ``fill``."""
    x0, y0, x1, y1 = window
    height, width = arr.shape[:2]
    out = np.empty((y1 - y0, x1 - x0) + arr.shape[2:], dtype=arr.dtype)
    out[...] = fill
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = arr[sy0:sy1, sx0:sx1]
    return out


class ImageFinder:
    """Finds an image id's RGB file under a root.

    With the GT's ``images[*].file_name`` (``file_names``), the image is
    ``root/<file_name>`` or, failing that, the file of that name anywhere under
    the root (e.g. ``leftImg8bit/val/frankfurt/<file_name>``): COCO's image
    142238 is ``000000142238.jpg``, which no id prefix matches. Without a file
    name for an id, or when no file has it, the shortest file name starting
    with the id (and not continuing it: ``<id>0.png`` is another image) is
    used. An image that is not found is drawn as its semantic map, with one
    warning.
    """

    def __init__(self, root: str | os.PathLike | None, file_names: Mapping[ImageId, str] | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.file_names = dict(file_names or {})
        self._files: list[Path] | None = None
        self._warned: set = set()

    def _all_files(self) -> list[Path]:
        if self._files is None:
            self._files = [p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        return self._files

    def find(self, image_id: ImageId) -> Path | None:
        if self.root is None:
            return None
        name = self.file_names.get(image_id)
        if name is not None:
            try:
                direct = safe_join(self.root, name, where=f"{self.root}: image {image_id!r}")
            except UnsafePathError:
                direct = None
            if direct is not None and direct.is_file():
                return direct
            base = os.path.basename(name)
            hits = [p for p in self._all_files() if p.name == base]
            if hits:
                return min(hits, key=lambda p: len(p.parts))
            # cityscapesscripts' converter writes "<id>_gtFine_leftImg8bit.png", a name no file has:
            # fall back to the id
        key = str(image_id)
        hits = [p for p in self._all_files() if p.name.startswith(key)]
        # "<id>.png" and "<id>_leftImg8bit.png" match; "<id>0.png" (another id) must not.
        hits = [p for p in hits if len(p.stem) == len(key) or not p.stem[len(key)].isalnum()]
        return min(hits, key=lambda p: len(p.name)) if hits else None

    def load(self, image_id: ImageId, shape: tuple[int, int]) -> np.ndarray | None:
        """``(H, W, 3)`` uint8, or ``None`` (with a warning) when not found."""
        path = self.find(image_id)
        if path is None:
            if self.root is not None and image_id not in self._warned:
                self._warned.add(image_id)
                wanted = self.file_names.get(image_id)
                looked = f"{wanted!r} (the GT's file_name)" if wanted else f"a file name starting with {str(image_id)!r}"
                log.warning("%s: no RGB image for image %r (looked for %s); drawing its semantic map instead",
                            self.root, image_id, looked)
            return None
        from PIL import Image

        try:
            with open_regular(path, f"{path}: image {image_id!r}", FormatError, "image file") as f, \
                    Image.open(f) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise FormatError(f"{path}: image {image_id!r}: unreadable image ({exc})") from None
        if rgb.shape[:2] != tuple(shape):
            raise FormatError(
                f"{path}: image {image_id!r}: {rgb.shape[1]}x{rgb.shape[0]} but its GT is {shape[1]}x{shape[0]}"
            )
        return rgb


@dataclass(frozen=True)
class GTFacts:
    """What the report states about a GT JSON, from one read of the file.

    Attributes:
        sha256: hex digest of the file's bytes.
        images: entries of ``images`` (else ``annotations``), ``None`` when neither is a list.
        colours: category id -> ``(r, g, b)`` from ``categories[*].color``, where given as three bytes.
    """

    sha256: str
    images: int | None
    colours: dict[int, tuple[int, int, int]]


_FACTS: dict[tuple, GTFacts] = {}


def gt_json_facts(path: str | os.PathLike) -> GTFacts | None:
    """:class:`GTFacts` of a GT JSON read once per file version (``None``, with a warning, when unreadable).

    The GT was parsed and checked before a report is drawn: a failure here is a file changed meanwhile.
    """
    import hashlib
    import json

    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        log.warning("%s: not readable for the report's colours and provenance (%s)", path, exc.strerror)
        return None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _FACTS:
        return _FACTS[key]
    try:
        with open_regular(path, f"{path}", FormatError, "JSON file") as f:
            raw = f.read()
        obj = json.loads(raw)
    except (PssBenchError, ValueError, OSError) as exc:
        log.warning("%s: not readable for the report's colours and provenance (%s)", path, exc)
        return None
    images = None
    colours: dict[int, tuple[int, int, int]] = {}
    if isinstance(obj, dict):
        for k in ("images", "annotations"):
            if isinstance(obj.get(k), list):
                images = len(obj[k])
                break
        for c in obj.get("categories") or []:
            col = c.get("color") if isinstance(c, dict) else None
            if (isinstance(col, list) and len(col) == 3 and isinstance(c.get("id"), int)
                    and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in col)):
                colours[c["id"]] = (col[0], col[1], col[2])
    facts = GTFacts(hashlib.sha256(raw).hexdigest(), images, colours)
    if len(_FACTS) > 8:
        _FACTS.clear()
    _FACTS[key] = facts
    return facts


def gt_ids(gt: PanopticJson, image_index: int) -> np.ndarray:
    """The decoded ``(H, W)`` GT id map of ``gt.annotations[image_index]``."""
    ann = gt.annotations[image_index]
    path = gt.png_path(ann)
    return read_ids(path, f"{path}: image {ann.image_id!r}", GroundTruthFormatError)


def save_figure(fig, out: str | os.PathLike) -> Path:
    """Saves at :data:`DPI` (exact figure size, no tight bbox) atomically; closes the figure."""
    plt = pyplot()
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=DPI, format=fmt)
    except ValueError as exc:  # unknown format
        raise PssBenchError(f"{out}: cannot write this figure format ({exc})") from None
    finally:
        plt.close(fig)
    return out
