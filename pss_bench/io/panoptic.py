"""COCO panoptic format: JSON parsing with strict checks, and id PNG decoding.

Every check raises (or, for ``pss-bench validate``, records) a message that
names the file, the image id and the segment id at fault. Nothing here
computes metrics.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from pss_bench.errors import FormatError, GroundTruthFormatError, PredictionFormatError, UnsafePathError, blamed_on
from pss_bench.io.safe_read import open_regular, read_bytes, read_json_file  # noqa: F401  (read_json_file: re-exported)
from pss_bench.text import short_repr
from pss_bench.threads import gc_paused
from pss_bench.structures import Category, ImageId, Segments

VOID = 0
MAX_SEGMENT_ID = 256**3 - 1
# Refuse larger PNGs before allocating (PIL's decompression-bomb limit is 178,956,970).
MAX_PNG_PIXELS = 1 << 28
# Bounds that keep ids and areas exact in int64 / float64 arithmetic.
MAX_CATEGORY_ID = 2**31 - 1
MAX_AREA = 2**53

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


# --------------------------------------------------------------------------- ids


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """``(H, W)`` integer ids below ``2**24`` to ``(H, W, 3)`` uint8 colours."""
    ids = np.asarray(ids).astype(np.uint32, copy=False)
    out = np.empty(ids.shape + (3,), dtype=np.uint8)
    out[..., 0] = ids & 0xFF
    out[..., 1] = (ids >> 8) & 0xFF
    out[..., 2] = (ids >> 16) & 0xFF
    return out


# --------------------------------------------------------------------------- paths


#: Longest file name component (bytes) the usual file systems (ext4, xfs, btrfs, APFS, NTFS) accept.
NAME_MAX = 255


def safe_join(folder: str | os.PathLike, name: str, *, where: str, resolve: bool = True) -> Path:
    """Joins ``name`` (from a JSON) onto ``folder``, refusing names that escape it.

    Args:
        folder: the folder ``name`` must stay in.
        name: a relative file name from a user's file.
        where: the message prefix.
        resolve: also resolve symlinks and refuse a name whose file (or one of
            whose folders) is a link pointing outside ``folder``. The lexical
            checks alone cost no system call.

    Returns:
        ``folder / name`` (not resolved: messages show the user's path).

    Raises:
        UnsafePathError: ``name`` is not a non-empty string, is absolute, climbs
            out with ``..``, holds a NUL byte or a character the file system
            cannot encode, has a component longer than :data:`NAME_MAX` bytes,
            or (with ``resolve``) resolves outside ``folder``.
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"{where}: file_name must be a non-empty string, found {short_repr(name)}")
    if _PLAIN_NAMES and "/" not in name and "\\" not in name and "\0" not in name and name != ".." and name != ".":
        # One component (most datasets): the checks below reduce to its encoding and length, without pathlib.
        try:
            too_long = len(os.fsencode(name)) > NAME_MAX
        except UnicodeEncodeError:
            too_long = None
        if too_long is False:
            joined = (folder if isinstance(folder, Path) else Path(folder)) / name
            if resolve:
                _check_inside(folder, joined, name, where)
            return joined
    if "\0" in name:
        raise UnsafePathError(f"{where}: file_name {short_repr(name)} contains a NUL byte")
    try:
        encoded = os.fsencode(name)
    except UnicodeEncodeError:
        raise UnsafePathError(f"{where}: file_name {short_repr(name)} cannot be encoded as a file name (lone surrogate)") from None
    pure = Path(name)
    if pure.is_absolute() or name.startswith(("/", "\\")) or ".." in pure.parts or "\\" in name:
        raise UnsafePathError(f"{where}: file_name {short_repr(name)} escapes its folder {short_repr(str(folder))}")
    if any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        raise UnsafePathError(f"{where}: file_name {short_repr(name)} has a component longer than {NAME_MAX} bytes, "
                              f"too long for the file system")
    joined = Path(folder) / pure
    if resolve:
        _check_inside(folder, joined, name, where)
    return joined


#: POSIX paths: a name without "/" is one relative component (no drive letters).
_PLAIN_NAMES = os.sep == "/" and os.altsep is None


def _check_inside(folder, joined: Path, name: str, where: str, folder_real: str | None = None) -> str:
    """``realpath(joined)``, raising unless it lies inside ``realpath(folder)``."""
    root = folder_real if folder_real is not None else os.path.realpath(folder)
    real = _realpath_in(root, joined, name)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise UnsafePathError(
            f"{where}: file_name {short_repr(name)} is a symbolic link (or lies under one) that resolves to "
            f"{short_repr(real)}, outside its folder {short_repr(str(folder))}"
        )
    return real


def _realpath_in(folder_real: str, joined: Path, name: str) -> str:
    """``os.path.realpath(joined)`` for ``joined = folder / name``, where ``folder_real = realpath(folder)``.

    A plain file name (one component) that is not a symbolic link resolves to
    ``folder_real/name``: one ``lstat`` instead of one per folder of the path
    (a COCO val set resolves 5,000 names). Anything else takes the full walk.
    """
    if "/" not in name and name not in (".", "..") and (os.altsep is None or os.altsep not in name):
        try:
            if not stat.S_ISLNK(os.lstat(joined).st_mode):
                return os.path.join(folder_real, name)
        except OSError:
            pass
    return os.path.realpath(joined)


# --------------------------------------------------------------------------- PNG


def _parse_png_header(head: bytes, where: str) -> tuple[int, int, int, int]:
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise FormatError(f"{where}: not a PNG file (bad signature or truncated header)")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", head[16:26])
    return width, height, bit_depth, color_type


def read_png_header(path: Path, where: str | None = None) -> tuple[int, int, int, int]:
    """Returns ``(width, height, bit_depth, color_type)`` from a PNG's IHDR chunk.

    Raises:
        FormatError: the file is missing, not a regular file, not a PNG, or truncated.
    """
    with open_regular(path, where, FormatError, "PNG file") as f:
        return _parse_png_header(f.read(33), where or str(path))


@dataclass(frozen=True)
class PngFile:
    """A PNG file's bytes and IHDR fields, read once: hashed for cache keys, then decoded.

    Attributes:
        path: the file.
        data: its whole content.
        width, height, bit_depth, color_type: from the IHDR chunk.
    """

    path: Path
    data: bytes
    width: int
    height: int
    bit_depth: int
    color_type: int


def read_png_file(path: str | os.PathLike, where: str | None = None) -> PngFile:
    """Reads a whole PNG file and parses its header (no decoding).

    Only regular files are read: a FIFO or a device would block or never end.

    Raises:
        FormatError: missing, a folder or another non-regular file, not a PNG, or truncated.
    """
    path = Path(path)
    where = where or str(path)
    data = read_bytes(path, where, FormatError, "PNG file")
    width, height, bit_depth, color_type = _parse_png_header(data[:33], where)
    return PngFile(path, data, width, height, bit_depth, color_type)


def check_id_png(png: PngFile, where: str) -> None:
    """Refuses PNGs whose pixels are not 8-bit RGB(A) ids, or too large to decode.

    Raises:
        FormatError: grayscale, palette or 16-bit, or more than ``MAX_PNG_PIXELS``.
    """
    if png.color_type not in (2, 6) or png.bit_depth != 8:
        kind = _PNG_COLOR_TYPES.get(png.color_type, f"colour type {png.color_type}")
        raise FormatError(
            f"{where}: expected an 8-bit RGB panoptic PNG (id = R + 256*G + 256^2*B), "
            f"found {png.bit_depth}-bit {kind}"
        )
    if png.width * png.height > MAX_PNG_PIXELS:
        raise FormatError(
            f"{where}: {png.width}x{png.height} pixels is more than the {MAX_PNG_PIXELS} this tool decodes"
        )


def decode_id_words(png: PngFile, where: str | None = None) -> np.ndarray:
    """Decodes an RGB(A) panoptic PNG to ``(H, W)`` uint32 words holding the ids.

    The id ``R + 256*G + 256**2*B`` is the word's low 24 bits; the high byte is
    the same for every pixel of the image (so runs of equal words are runs of
    equal ids) and is cleared for RGBA files, whose alpha panopticapi ignores.
    ``words & 0xFFFFFF`` gives the ids; :func:`read_id_png` returns them.

    Decodes with the fastest decoder installed: Wuffs (``pywuffs``, the
    ``fast-png`` extra), then pyspng (libspng), then PIL. All give the same
    pixels; Wuffs is skipped for files with a ``tRNS`` chunk (it would turn
    the transparent colour into transparent black), and a file Wuffs refuses
    goes to the next decoder, so it accepts what that one accepts. Set
    ``PSS_BENCH_PNG_DECODER=pyspng`` or ``=pil`` to start further down.

    Raises:
        FormatError: not an 8-bit RGB(A) PNG, too large, or corrupt data.
    """
    where = where or str(png.path)
    check_id_png(png, where)
    rgbx = None
    wuffs = _wuffs_decoder()
    if wuffs is not None and b"tRNS" not in png.data:  # (a match inside compressed data only costs the fallback)
        rgbx = _decode_png_wuffs(wuffs, png.data)
    if rgbx is None:
        spng = _spng_module()
        try:
            if spng is not None:
                rgbx = spng.load(png.data, "RGBA")
            else:
                rgbx = _decode_png_pil(png.data)
        except Exception as exc:  # each decoder raises several types for corrupt data
            raise FormatError(f"{where}: corrupt PNG data ({exc})") from None
    shape = (png.height, png.width)
    if rgbx.shape != shape + (4,) or rgbx.dtype != np.uint8 or not rgbx.flags.c_contiguous:
        raise FormatError(f"{where}: decoded shape {rgbx.shape} does not match its header")
    words = rgbx.view("<u4").reshape(shape)
    if png.color_type == 6:  # a real alpha channel: clear it so that runs follow the ids
        words = np.bitwise_and(words, MAX_SEGMENT_ID, out=words if words.flags.writeable else None)
    return words


def read_id_png(path: str | os.PathLike, where: str | None = None) -> np.ndarray:
    """Decodes an RGB panoptic PNG to ``(H, W)`` uint32 segment ids.

    RGBA is accepted with its alpha ignored, as panopticapi does. Grayscale,
    palette and 16-bit PNGs are refused: their values are not RGB ids. Only
    regular files are read (a FIFO would block).

    Raises:
        FormatError: missing, not a regular file, not a PNG, wrong mode or
            depth, or corrupt data.
    """
    where = where or str(path)
    return decode_ids(read_png_file(path, where), where)


def read_ids(path: str | os.PathLike, where: str, error: type[FormatError] = FormatError) -> np.ndarray:
    """:func:`read_id_png`, its failure raised as ``error`` (whose GT or prediction the PNG is).

    Args:
        where: the message's prefix (``"PATH: image ID"``).
        error: :class:`GroundTruthFormatError` or :class:`PredictionFormatError`
            (the CLI names the side), or :class:`FormatError`.
    """
    with blamed_on(error):
        return read_id_png(path, where=where)


def decode_ids(png: PngFile, where: str | None = None) -> np.ndarray:
    """:func:`decode_id_words` with the high byte cleared: ``(H, W)`` uint32 ids."""
    words = decode_id_words(png, where)
    if words.size and words.flat[0] > MAX_SEGMENT_ID:  # an opaque alpha byte, the same for every pixel
        words = np.bitwise_and(words, MAX_SEGMENT_ID, out=words if words.flags.writeable else None)
    return words


_SPNG: list = []
_WUFFS: list = []
_wuffs_local = threading.local()

#: ``PSS_BENCH_PNG_DECODER`` values, best first: each starts the preference list there.
_DECODER_ORDER = ("wuffs", "pyspng", "pil")


def _decoder_floor() -> int:
    """Where ``PSS_BENCH_PNG_DECODER`` starts the preference list (0: the best installed)."""
    want = os.environ.get("PSS_BENCH_PNG_DECODER", "").lower()
    return _DECODER_ORDER.index(want) if want in _DECODER_ORDER else 0


def _spng_module():
    """pyspng, or None (not installed, or ``PSS_BENCH_PNG_DECODER=pil``)."""
    if _decoder_floor() > 1:
        return None
    if not _SPNG:
        try:
            import pyspng
        except ImportError:
            pyspng = None
        _SPNG.append(pyspng)
    return _SPNG[0]


def _wuffs_module():
    """pywuffs, or None (not installed, or ``PSS_BENCH_PNG_DECODER`` names a slower decoder)."""
    if _decoder_floor() > 0:
        return None
    if not _WUFFS:
        try:
            import pywuffs
            from pywuffs import aux
        except ImportError:
            pywuffs = aux = None
        _WUFFS.append((pywuffs, aux) if pywuffs is not None else None)
    return _WUFFS[0]


def _wuffs_decoder():
    """This thread's Wuffs PNG decoder to RGBA (straight alpha), or None."""
    mods = _wuffs_module()
    if mods is None:
        return None
    dec = getattr(_wuffs_local, "decoder", None)
    if dec is None:
        pywuffs, aux = mods
        cfg = aux.ImageDecoderConfig()
        cfg.enabled_decoders = [pywuffs.ImageDecoderType.PNG]
        cfg.pixel_format = pywuffs.PixelFormat.RGBA_NONPREMUL
        dec = _wuffs_local.decoder = aux.ImageDecoder(cfg)
    return dec


def _decode_png_wuffs(decoder, data: bytes) -> np.ndarray | None:
    """``(H, W, 4)`` uint8 RGBA, or None where Wuffs refuses the file (the next decoder decides)."""
    try:
        result = decoder.decode(data)
    except Exception:  # noqa: BLE001  (the fallback decoder reports what is wrong)
        return None
    if result.error_message:
        return None
    return result.pixbuf


def png_decoder_name() -> str:
    """``"wuffs"``, ``"pyspng"`` or ``"PIL"``: the decoder :func:`decode_id_words` tries first."""
    if _wuffs_module() is not None:
        return "wuffs"
    return "pyspng" if _spng_module() is not None else "PIL"


def _decode_png_pil(data: bytes) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBX or RGBA. PIL releases the GIL while inflating;
    asking for RGBX bytes saves repacking three channels into words."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode not in ("RGB", "RGBA"):
            raise ValueError(f"PIL decoded it as mode {im.mode}")
        raw = im.tobytes("raw", "RGBX") if im.mode == "RGB" else im.tobytes()
        return np.frombuffer(raw, dtype=np.uint8).reshape(im.size[1], im.size[0], 4)


def write_id_png(path: str | os.PathLike, ids: np.ndarray) -> None:
    """Writes ``(H, W)`` ids below ``2**24`` as an RGB panoptic PNG, atomically."""
    from PIL import Image

    from pss_bench.io.atomic import atomic_path

    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_SEGMENT_ID):
        raise ValueError(f"segment ids must lie in [0, {MAX_SEGMENT_ID}]")
    with atomic_path(path) as tmp:
        Image.fromarray(id2rgb(ids)).save(tmp, format="PNG")


# --------------------------------------------------------------------------- JSON


@dataclass(frozen=True)
class PanopticAnnotation:
    """One entry of ``annotations``: the PNG of one image and its segments."""

    image_id: ImageId
    file_name: str
    segments: Segments
    #: ids of ``segments_info`` entries refused for another problem (a missing
    #: ``area``, an unknown category, ...): listed in the JSON, so their pixels
    #: in the PNG are not a second problem.
    refused_ids: frozenset = frozenset()


@dataclass
class PanopticJson:
    """A parsed COCO panoptic JSON with its PNG folder.

    Attributes:
        path: the JSON file.
        png_dir: the folder that ``annotations[*].file_name`` are relative to.
        categories: category id -> :class:`Category`, in the JSON's order
            (empty for prediction JSONs, which take the ground truth's).
        annotations: in the JSON's order.
        image_sizes: image id -> ``(height, width)`` from ``images``, when given.
        image_files: image id -> the RGB image's ``file_name`` from ``images``,
            when given (e.g. ``000000142238.jpg`` for COCO image 142238).
    """

    path: Path
    png_dir: Path
    categories: dict[int, Category]
    annotations: list[PanopticAnnotation]
    image_sizes: dict[ImageId, tuple[int, int]] = field(default_factory=dict)
    image_files: dict[ImageId, str] = field(default_factory=dict)
    _checked_paths: dict[str, tuple[Path, str]] = field(default_factory=dict, repr=False, compare=False)
    _png_dir_real: str | None = field(default=None, repr=False, compare=False)

    def png_path(self, ann: PanopticAnnotation) -> Path:
        """``png_dir / file_name``, refusing names that escape ``png_dir`` (also through symlinks).

        A name is resolved once; later calls (messages, the cache key) reuse the result.
        """
        return self._resolve(ann)[0]

    def _resolve(self, ann: PanopticAnnotation) -> tuple[Path, str]:
        """``(png_dir / file_name, its real path)``, checked once per name."""
        hit = self._checked_paths.get(ann.file_name)
        if hit is None:
            if self._png_dir_real is None:
                self._png_dir_real = os.path.realpath(self.png_dir)
            where = f"{self.path}: image {ann.image_id!r}"
            path = safe_join(self.png_dir, ann.file_name, where=where, resolve=False)
            hit = (path, _check_inside(self.png_dir, path, ann.file_name, where, self._png_dir_real))
            self._checked_paths[ann.file_name] = hit
        return hit

    def png_path_problems(self) -> list[tuple[ImageId, str]]:
        """Every annotation whose PNG resolves outside ``png_dir`` or is also another annotation's PNG.

        Resolves each path once (symlinks followed): two names for one file,
        such as a link next to its target, count as the same PNG.

        Returns:
            ``(image_id, message)`` pairs, in annotation order.
        """
        problems: list[tuple[ImageId, str]] = []
        owner: dict[str, ImageId] = {}
        for ann in self.annotations:
            try:
                _, real = self._resolve(ann)
            except UnsafePathError as exc:
                problems.append((ann.image_id, str(exc)))
                continue
            other = owner.setdefault(real, ann.image_id)
            if other != ann.image_id:
                problems.append((ann.image_id, f"{self.path}: image {ann.image_id!r}: its PNG "
                                 f"{short_repr(ann.file_name)} is also the PNG of image {other!r} "
                                 f"(each image needs its own PNG)"))
        return problems


class ProblemLog:
    """Raises the first problem, or collects them all (``pss-bench validate``)."""

    def __init__(self, error_cls: type[FormatError], collect: bool = False) -> None:
        self.error_cls = error_cls
        self.collect = collect
        self.problems: list[str] = []

    def add(self, message: str) -> None:
        if not self.collect:
            raise self.error_cls(message)
        self.problems.append(message)


def default_png_dir(json_path: str | os.PathLike) -> Path:
    """panopticapi's convention: the PNG folder is the JSON path without ``.json``."""
    p = Path(json_path)
    return p.with_suffix("") if p.suffix == ".json" else p.parent / (p.name + "_png")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_categories(obj, path: Path, log: ProblemLog) -> dict[int, Category]:
    """The GT's categories; without a single usable one, raises at once.

    Every segment refers to a category, so a missing or unusable
    ``categories`` list is the root cause of any later problem: it is
    reported alone instead of as one false problem per segment.
    """
    cats: dict[int, Category] = {}
    raw = obj.get("categories")
    if not isinstance(raw, list) or not raw:
        found = "missing" if "categories" not in obj else f"found {short_repr(raw)}"
        raise log.error_cls(
            f"{path}: 'categories' must be a non-empty list of {{id, name, isthing}} ({found}); "
            f"segments cannot be checked without it (give them with --categories FILE|cityscapes|coco)"
        )
    problems: list[str] = []
    for i, c in enumerate(raw):
        if not isinstance(c, dict) or not _is_int(c.get("id")):
            problems.append(f"{path}: categories[{i}] has no integer 'id'")
            continue
        cid = c["id"]
        if not 0 <= cid <= MAX_CATEGORY_ID:
            log.add(f"{path}: categories[{i}]: id {cid} out of range [0, {MAX_CATEGORY_ID}]")
            continue
        if cid in cats:
            problems.append(f"{path}: category id {cid} is listed twice")
            continue
        isthing = c.get("isthing")
        if isthing not in (0, 1, True, False):
            problems.append(f"{path}: category {cid}: 'isthing' must be 0 or 1, found {short_repr(isthing)}")
            isthing = 0
        name = c.get("name", str(cid))
        if not isinstance(name, str):
            problems.append(f"{path}: category {cid}: 'name' must be a string, found {short_repr(name)}")
            name = str(cid)
        cats[cid] = Category(id=cid, name=name, isthing=bool(isthing))
    if not cats:
        raise log.error_cls(f"{problems[0]}; no usable category in 'categories', so segments cannot be checked")
    for p in problems:
        log.add(p)
    return cats


def read_categories_json(path: str | os.PathLike, error_cls: type[FormatError] = GroundTruthFormatError
                         ) -> dict[int, Category]:
    """Categories from a JSON file: a list of ``{id, name, isthing}`` or an object with ``categories``.

    Raises:
        error_cls: unreadable file, or no usable category (every problem of
            the list is checked as for a GT's own ``categories``).
    """
    path = Path(path)
    obj = read_json_file(path, error_cls)
    if isinstance(obj, list):
        obj = {"categories": obj}
    if not isinstance(obj, dict):
        raise error_cls(f"{path}: expected a list of categories or an object with 'categories'")
    return _parse_categories(obj, path, ProblemLog(error_cls))


def _parse_segments(
    seg_list,
    where: str,
    log: ProblemLog,
    categories: dict[int, Category] | None,
    need_area: bool,
) -> tuple[Segments, frozenset]:
    """The usable segments, and the ids of the entries refused after their id was read."""
    ids: list[int] = []
    refused: set[int] = set()
    cats: list[int] = []
    crowd: list[bool] = []
    areas: list[int] = []
    seen: set[int] = set()
    if not isinstance(seg_list, list):
        log.add(f"{where}: 'segments_info' must be a list")
        seg_list = []
    for i, s in enumerate(seg_list):
        # The usual segment first, in one test (``type(x) is int`` leaves out bool, as _is_int does); any
        # other goes through the checks below, which name what is wrong.
        if type(s) is dict:
            sid, cid, isc = s.get("id"), s.get("category_id"), s.get("iscrowd", 0)
            if (type(sid) is int and 0 < sid <= MAX_SEGMENT_ID and sid not in seen and type(cid) is int
                    and (categories is None or cid in categories) and isc in (0, 1, True, False)):
                area = s.get("area") if need_area else None
                if not need_area or (type(area) is int and 1 <= area <= MAX_AREA):
                    seen.add(sid)
                    ids.append(sid)
                    cats.append(cid)
                    crowd.append(bool(isc))
                    if need_area:
                        areas.append(area)
                    continue
        if not isinstance(s, dict):
            log.add(f"{where}: segments_info[{i}] is not an object")
            continue
        sid = s.get("id")
        if not _is_int(sid):
            log.add(f"{where}: segments_info[{i}] has no integer 'id' (found {short_repr(sid)})")
            continue
        here = f"{where}, segment {sid}"
        if sid == VOID:
            log.add(f"{here}: id 0 is reserved for VOID pixels and cannot be a segment")
            continue
        if not 0 < sid <= MAX_SEGMENT_ID:
            log.add(f"{here}: id out of the RGB range [1, {MAX_SEGMENT_ID}]")
            continue
        if sid in seen:
            log.add(f"{here}: segment id listed twice")
            continue
        seen.add(sid)
        refused.add(sid)  # until every field below passed
        cid = s.get("category_id")
        if not _is_int(cid):
            log.add(f"{here}: no integer 'category_id' (found {short_repr(cid)})")
            continue
        if categories is not None and cid not in categories:
            log.add(f"{here}: unknown category_id {cid}")
            continue
        isc = s.get("iscrowd", 0)
        if isc not in (0, 1, True, False):
            log.add(f"{here}: 'iscrowd' must be 0 or 1, found {short_repr(isc)}")
            continue
        if need_area:
            area = s.get("area")
            if not _is_int(area) and not (isinstance(area, float) and area.is_integer()):
                log.add(f"{here}: no integer 'area' (found {short_repr(area)})")
                continue
            if not 1 <= area <= MAX_AREA:
                log.add(f"{here}: 'area' must be a pixel count in [1, {MAX_AREA}], found {area!r}")
                continue
            areas.append(int(area))
        refused.discard(sid)
        ids.append(sid)
        cats.append(cid)
        crowd.append(bool(isc))
    return Segments(
        ids=np.array(ids, dtype=np.int64),
        category_ids=np.array(cats, dtype=np.int64),
        iscrowd=np.array(crowd, dtype=bool),
        areas=np.array(areas, dtype=np.int64) if need_area else None,
    ), frozenset(refused)


def load_panoptic_json(
    path: str | os.PathLike,
    png_dir: str | os.PathLike | None = None,
    *,
    role: str = "gt",
    categories: dict[int, Category] | None = None,
    log: ProblemLog | None = None,
) -> PanopticJson:
    """Parses and checks a COCO panoptic JSON.

    Args:
        path: the JSON file.
        png_dir: its PNG folder; default :func:`default_png_dir`.
        role: ``"gt"`` (categories and areas required) or ``"prediction"``
            (categories taken from ``categories``, areas ignored).
        categories: for predictions, the ground truth's categories, to check
            each segment's ``category_id``; for a GT, its categories instead
            of the JSON's own (for a GT JSON without ``categories``).
        log: where problems go; by default the first one is raised.

    Raises:
        GroundTruthFormatError | PredictionFormatError: the first problem found.
    """
    # Parsing builds a container per segment and no cycles: the collector's passes would free nothing.
    with gc_paused():
        return _load_panoptic_json(path, png_dir, role, categories, log)


def _load_panoptic_json(path, png_dir, role: str, categories: dict[int, Category] | None,
                        log: ProblemLog | None) -> PanopticJson:
    is_gt = role == "gt"
    error_cls = GroundTruthFormatError if is_gt else PredictionFormatError
    log = log or ProblemLog(error_cls)
    path = Path(path)
    png_dir = Path(png_dir) if png_dir is not None else default_png_dir(path)
    obj = read_json_file(path, error_cls)
    if not isinstance(obj, dict):
        raise error_cls(f"{path}: expected a JSON object with 'annotations', found {type(obj).__name__}")
    if is_gt and categories is None:
        categories = _parse_categories(obj, path, log)
    raw_anns = obj.get("annotations")
    if not isinstance(raw_anns, list):
        raise error_cls(f"{path}: 'annotations' must be a list")

    sizes: dict[ImageId, tuple[int, int]] = {}
    image_files: dict[ImageId, str] = {}
    raw_images = obj.get("images")
    for im in raw_images if isinstance(raw_images, list) else []:
        if not isinstance(im, dict) or not (_is_int(im.get("id")) or isinstance(im.get("id"), str)):
            continue
        if _is_int(im.get("height")) and _is_int(im.get("width")):
            sizes[im["id"]] = (im["height"], im["width"])
        if isinstance(im.get("file_name"), str) and im["file_name"]:
            image_files[im["id"]] = im["file_name"]

    annotations: list[PanopticAnnotation] = []
    seen_images: set[ImageId] = set()
    png_owner: dict[str, ImageId] = {}
    for i, a in enumerate(raw_anns):
        if not isinstance(a, dict):
            log.add(f"{path}: annotations[{i}] is not an object")
            continue
        image_id = a.get("image_id")
        if not (_is_int(image_id) or isinstance(image_id, str)):
            log.add(f"{path}: annotations[{i}] has no 'image_id' (int or string)")
            continue
        where = f"{path}: image {image_id!r}"
        if image_id in seen_images:
            log.add(f"{where}: image id listed twice in 'annotations'")
            continue
        seen_images.add(image_id)
        file_name = a.get("file_name")
        try:
            safe_join(png_dir, file_name, where=where, resolve=False)  # links are resolved by check_png_folder
        except UnsafePathError as exc:
            log.add(str(exc))
            continue
        norm = os.path.normpath(file_name)
        other = png_owner.setdefault(norm, image_id)
        if other != image_id:
            log.add(f"{where}: file_name {short_repr(file_name)} is also the PNG of image {other!r} "
                    f"(each image needs its own PNG)")
            continue
        segs, refused = _parse_segments(a.get("segments_info"), where, log, categories, need_area=is_gt)
        annotations.append(PanopticAnnotation(image_id=image_id, file_name=file_name, segments=segs,
                                              refused_ids=refused))
    return PanopticJson(
        path=path,
        png_dir=png_dir,
        categories=categories or {},
        annotations=annotations,
        image_sizes=sizes,
        image_files=image_files,
    )


def check_png_folder(pj: PanopticJson, error_cls: type[FormatError]) -> None:
    """Raises when the PNG folder is missing, a PNG path resolves outside it, or
    two annotations share one PNG: before any decoding starts."""
    if not pj.png_dir.is_dir():
        raise error_cls(f"{pj.png_dir}: PNG folder of {pj.path} not found")
    problems = pj.png_path_problems()
    if problems:
        raise error_cls(problems[0][1])


def segment_problems_against_png(
    ids_in_png: np.ndarray,
    counts: np.ndarray,
    segments: Segments,
    where: str,
    check_area: bool,
    refused_ids: frozenset = frozenset(),
) -> list[str]:
    """Compares a decoded PNG's ids and pixel counts with ``segments_info``.

    Args:
        ids_in_png: ``(M,)`` ids present in the PNG (VOID included or not).
        counts: ``(M,)`` their pixel counts.
        segments: the JSON's segments.
        where: ``"<png path>: image '<id>'"`` for the messages.
        check_area: compare declared ``area`` with the pixel count.
        refused_ids: ids of entries the JSON lists but that were refused for
            another, already reported problem: not "in the PNG but not in the JSON".
    """
    problems: list[str] = []
    declared = {int(s): i for i, s in enumerate(segments.ids)}
    present = {int(s): int(c) for s, c in zip(ids_in_png, counts) if c > 0}
    for sid in present:
        if sid != VOID and sid not in declared and sid not in refused_ids:
            problems.append(f"{where}, segment {sid}: in the PNG but not in the JSON")
    for sid, i in declared.items():
        if sid not in present:
            problems.append(f"{where}, segment {sid}: in the JSON but not in the PNG")
        elif check_area and segments.areas is not None and int(segments.areas[i]) != present[sid]:
            problems.append(
                f"{where}, segment {sid}: JSON area {int(segments.areas[i])} differs from "
                f"its {present[sid]} pixels in the PNG (use --trust-gt-area to keep the JSON's)"
            )
    return problems



def resolve_panoptic_input(path: str | os.PathLike, png_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(json, png_dir)`` for a COCO panoptic JSON or a pss-bench prediction directory.

    A directory must hold ``panoptic.json`` and ``panoptic/``; a JSON file's
    PNG folder defaults to :func:`default_png_dir`. ``png_dir`` overrides both.
    """
    p = Path(path)
    if p.is_dir():
        json_path = p / "panoptic.json"
        if not json_path.is_file():
            raise FormatError(f"{p}: a prediction directory must hold panoptic.json and panoptic/")
        return json_path, Path(png_dir) if png_dir is not None else p / "panoptic"
    return p, Path(png_dir) if png_dir is not None else default_png_dir(p)
