"""PASCAL VOC 2012 (and SBD) instance labels turned into panoptic segments.

``SegmentationClass`` and ``SegmentationObject`` palette PNGs hold, per pixel,
a class index (0 background, 1..20 objects, 255 void) and an object index
(1..N, 0 background, 255 void). The panoptic form, used by the reader and by
``pss-bench prepare voc``:

* category id = VOC class index; the 20 object classes are things,
  ``background`` (0) is stuff;
* segment id = ``1000 * class + object index`` for an object, 1 for background;
* void (255 in either map) is VOID (segment id 0).

The SBD-augmented train list (``ImageSets/Segmentation/train_aug.txt``) reads
frames missing from VOC from SBD's ``cls/{id}.mat`` and ``inst/{id}.mat``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pss_bench.data.common import check_same_size, read_label_png, read_rgb
from pss_bench.data.sample import PanopticSample
from pss_bench.errors import FormatError, PssBenchError
from pss_bench.io.panoptic import safe_join
from pss_bench.io.safe_read import open_image, read_bytes
from pss_bench.structures import Category, Segments

# The VOC 2012 class list (index = label value). No library ships it as data.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOID_VALUE = 255
BACKGROUND_SEGMENT_ID = 1


def voc_categories() -> dict[int, Category]:
    """Category id (= VOC class index) -> :class:`Category`; background is the only stuff class."""
    return {i: Category(id=i, name=n, isthing=i > 0) for i, n in enumerate(VOC_CLASSES)}


def voc_to_panoptic(cls: np.ndarray, obj: np.ndarray, where: str = "VOC label") -> tuple[np.ndarray, list[dict]]:
    """Turns a VOC class map and object map into a panoptic id map and its segments.

    Args:
        cls: ``(H, W)`` integer class indices (0..20, 255 void).
        obj: ``(H, W)`` integer object indices (0 background, 1..254, 255 void).
        where: names the file in error messages.

    Returns:
        ``(panoptic, segments_info)``: ``(H, W)`` int64 ids (0 = VOID) and
        ``[{"id", "category_id", "iscrowd", "area"}]`` sorted by id.

    Raises:
        FormatError: sizes differ, an unknown class, an object spanning two
            classes, or object pixels without an object index.
    """
    if cls.shape != obj.shape:
        raise FormatError(f"{where}: class map {cls.shape} and object map {obj.shape} differ in size")
    cls = cls.astype(np.int64)
    obj = obj.astype(np.int64)
    void = (cls == VOID_VALUE) | (obj == VOID_VALUE)
    bad = ~void & (cls >= len(VOC_CLASSES))
    if bad.any():
        raise FormatError(f"{where}: class value {int(cls[bad][0])} is not a VOC class (0..20, 255 void)")
    orphan = ~void & (cls > 0) & (obj == 0)
    if orphan.any():
        y, x = np.argwhere(orphan)[0]
        raise FormatError(f"{where}: {int(orphan.sum())} object-class pixels have no object index (first at x={x}, y={y})")
    # One pass over (object, class) pairs: each object must carry one class.
    pair = np.where(void, -1, obj * 256 + cls)
    keys, counts = np.unique(pair[pair >= 0], return_counts=True)
    pan = np.zeros(cls.shape, dtype=np.int64)
    segments = []
    seen: dict[int, int] = {}
    for key, n in zip(keys.tolist(), counts.tolist()):
        o, c = divmod(key, 256)
        if o == 0:
            continue  # background, below
        if c == 0:
            raise FormatError(f"{where}: object {o} has {n} pixels labelled background in the class map")
        if o in seen:
            raise FormatError(f"{where}: object {o} spans two classes ({VOC_CLASSES[seen[o]]}, {VOC_CLASSES[c]})")
        seen[o] = c
        segments.append({"id": 1000 * c + o, "category_id": c, "iscrowd": 0, "area": int(n)})
    bg = ~void & (obj == 0)
    n_bg = int(bg.sum())
    if n_bg:
        pan[bg] = BACKGROUND_SEGMENT_ID
        segments.append({"id": BACKGROUND_SEGMENT_ID, "category_id": 0, "iscrowd": 0, "area": n_bg})
    fg = ~void & (obj > 0)
    pan[fg] = 1000 * cls[fg] + obj[fg]
    segments.sort(key=lambda s: s["id"])
    return pan, segments


def _read_voc_png(path: Path) -> np.ndarray:
    return read_label_png(path, ("P", "L"))


def _read_sbd_mat(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat  # MATLAB arrays, no pickles

    if not path.is_file():
        raise FormatError(f"{path}: SBD label file not found")
    try:
        m = loadmat(str(path), squeeze_me=True, struct_as_record=False)
        return np.asarray(m[key].Segmentation)
    except Exception as exc:  # scipy raises several types on bad files
        raise FormatError(f"{path}: not an SBD {key} .mat file ({exc})") from None


class VocPanoptic:
    """PASCAL VOC 2012 segmentation frames as panoptic samples.

    Args:
        root: ``VOC2012`` folder (``JPEGImages/``, ``SegmentationClass/``,
            ``SegmentationObject/``, ``ImageSets/Segmentation/``).
        split: a list name in ``ImageSets/Segmentation`` (``train``, ``val``,
            ``train_aug``...), or ``None`` for every frame with both label PNGs.
        sbd_dir: SBD's ``dataset`` folder (``cls/``, ``inst/``, ``img/``), for
            ids of the list that VOC does not label.

    Raises:
        PssBenchError: a missing split list or folder, an empty split, or an
            id without its files.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = "train",
                 sbd_dir: str | os.PathLike | None = None) -> None:
        self.root = Path(root)
        self.sbd_dir = Path(sbd_dir) if sbd_dir is not None else None
        self.categories = voc_categories()
        cls_dir, obj_dir = self.root / "SegmentationClass", self.root / "SegmentationObject"
        for d in (self.root / "JPEGImages", cls_dir, obj_dir):
            if not d.is_dir():
                raise PssBenchError(f"{d}: VOC folder not found")
        if split is None:
            ids = sorted(p.stem for p in obj_dir.glob("*.png"))
            if not ids:
                raise PssBenchError(f"{obj_dir}: no SegmentationObject PNGs")
        else:
            lst = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
            if not lst.is_file():
                raise PssBenchError(f"{lst}: split list {split!r} not found")
            try:
                text = read_bytes(lst, what="split list").decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError(f"{lst}: split list is not UTF-8 text") from None
            ids = [line.split()[0] for line in text.splitlines() if line.strip()]
            if not ids:
                raise PssBenchError(f"{lst}: split list is empty")
            for i in ids:  # ids name files: none may climb out of the VOC folders
                safe_join(cls_dir, f"{i}.png", where=f"{lst}: image {i!r}", resolve=False)
        self.split = split
        self.image_ids: list[str] = ids
        for i in ids:
            if not (cls_dir / f"{i}.png").is_file() or not (obj_dir / f"{i}.png").is_file():
                if self.sbd_dir is None:
                    missing = cls_dir / f"{i}.png" if not (cls_dir / f"{i}.png").is_file() else obj_dir / f"{i}.png"
                    raise PssBenchError(f"{missing}: label PNG of image {i!r} not found (no --sbd-dir given)")

    def __len__(self) -> int:
        return len(self.image_ids)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def image_file(self, i: int) -> Path:
        image_id = self.image_ids[i]
        p = self.root / "JPEGImages" / f"{image_id}.jpg"
        if not p.is_file() and self.sbd_dir is not None and (self.sbd_dir / "img" / f"{image_id}.jpg").is_file():
            p = self.sbd_dir / "img" / f"{image_id}.jpg"
        return p

    def labels(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        """``(class map, object map, where)`` of frame ``i``, from VOC or else SBD."""
        image_id = self.image_ids[i]
        c = self.root / "SegmentationClass" / f"{image_id}.png"
        o = self.root / "SegmentationObject" / f"{image_id}.png"
        if c.is_file() and o.is_file():
            return _read_voc_png(c), _read_voc_png(o), f"{o}: image {image_id!r}"
        assert self.sbd_dir is not None  # checked in __init__
        cm, im = self.sbd_dir / "cls" / f"{image_id}.mat", self.sbd_dir / "inst" / f"{image_id}.mat"
        return _read_sbd_mat(cm, "GTcls"), _read_sbd_mat(im, "GTinst"), f"{im}: image {image_id!r}"

    def __getitem__(self, i: int) -> PanopticSample:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        image_id = self.image_ids[i]
        img_path = self.image_file(i)
        image = read_rgb(img_path, where=f"{img_path}: image {image_id!r}")
        cls, obj, where = self.labels(i)
        check_same_size(image, cls, img_path, Path(where.split(": image")[0]))
        pan, segs = voc_to_panoptic(cls, obj, where)
        return PanopticSample(image=image, panoptic=pan, segments=Segments.from_records(segs),
                              image_id=image_id, categories=self.categories)


def convert_voc(root: str | os.PathLike, split: str | None, out_dir: str | os.PathLike | None = None,
                sbd_dir: str | os.PathLike | None = None,
                progress=None) -> tuple[Path, Path]:
    """Writes ``panoptic_{split}.json`` + ``panoptic_{split}/`` (COCO panoptic format).

    Args:
        root: the ``VOC2012`` folder.
        split: as :class:`VocPanoptic` (``None``: every labelled frame, named ``all``).
        out_dir: where to write (default ``root``).
        sbd_dir: SBD's ``dataset`` folder, for ``train_aug``.
        progress: called as ``progress(done, total)``.

    Returns:
        ``(json, png_dir)``. The JSON is written last, atomically.
    """
    from pss_bench.io.atomic import staging_area

    reader = VocPanoptic(root, split, sbd_dir)
    out = Path(out_dir) if out_dir is not None else Path(root)
    name = f"panoptic_{split or 'all'}"
    out.mkdir(parents=True, exist_ok=True)
    # PNGs go to a hidden folder that replaces the target only once every frame converted.
    with staging_area(out / name) as tmp:
        return _convert_into(reader, out, name, tmp, progress)


def _convert_into(reader: VocPanoptic, out: Path, name: str, tmp: Path, progress) -> tuple[Path, Path]:
    from pss_bench.io.atomic import publish_dir, write_json_atomic
    from pss_bench.io.panoptic import write_id_png

    png_dir = tmp / name
    png_dir.mkdir()
    images, annotations = [], []
    for i, image_id in enumerate(reader.image_ids):
        img_path = reader.image_file(i)
        cls, obj, where = reader.labels(i)
        with open_image(img_path, f"{img_path}: image {image_id!r}", FormatError) as im:
            w, h = im.size
        if (h, w) != cls.shape:
            raise FormatError(f"{where.split(': image')[0]}: label is {cls.shape[1]}x{cls.shape[0]} but its image "
                              f"{img_path} is {w}x{h} (WxH)")
        pan, segs = voc_to_panoptic(cls, obj, where)
        for s in segs:
            ys, xs = np.nonzero(pan == s["id"])
            s["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        write_id_png(png_dir / f"{image_id}.png", pan)
        images.append({"id": image_id, "file_name": img_path.name, "height": int(h), "width": int(w)})
        annotations.append({"image_id": image_id, "file_name": f"{image_id}.png", "segments_info": segs})
        if progress:
            progress(i + 1, len(reader))
    cats = [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "supercategory": "thing" if c.isthing else "stuff"}
            for c in reader.categories.values()]
    json_path = out / f"{name}.json"
    final_png = out / name
    publish_dir(png_dir, final_png)
    write_json_atomic(json_path, {"images": images, "annotations": annotations, "categories": cats})
    return json_path, final_png
