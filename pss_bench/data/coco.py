"""COCO panoptic reader: a panoptic JSON, its PNG folder and an image folder."""

from __future__ import annotations

import os
from pathlib import Path

from pss_bench.data.common import PanopticJsonReader, load_gt
from pss_bench.errors import PssBenchError
from pss_bench.io.panoptic import safe_join
from pss_bench.structures import Category


class CocoPanoptic(PanopticJsonReader):
    """COCO-format panoptic ground truth with its images.

    Each image is found through ``images[*].file_name`` of the JSON (the
    annotation's PNG name with ``.jpg`` when an image entry is missing).

    Args:
        gt_json: the panoptic JSON (``panoptic_{split}.json``).
        image_dir: the folder of the RGB images.
        png_dir: the PNG folder (default: the JSON path without ``.json``).

    Raises:
        PssBenchError: a missing file or folder, or an image that is not there.
    """

    def __init__(self, gt_json: str | os.PathLike, image_dir: str | os.PathLike,
                 png_dir: str | os.PathLike | None = None) -> None:
        image_dir = Path(image_dir)
        if not image_dir.is_dir():
            raise PssBenchError(f"{image_dir}: image folder not found")
        gt = load_gt(gt_json, png_dir)
        names = gt.image_files  # images[*].file_name, parsed and type-checked with the GT
        paths = {}
        for ann in gt.annotations:
            name = names.get(ann.image_id) or str(Path(ann.file_name).with_suffix(".jpg"))
            p = safe_join(image_dir, name, where=f"{gt.path}: image {ann.image_id!r}")
            if not p.is_file():
                raise PssBenchError(f"{p}: image file of image {ann.image_id!r} in {gt.path} not found")
            paths[ann.image_id] = p
        super().__init__(gt, paths.__getitem__)


#: COCO panoptic's 133 categories (panopticapi's ``panoptic_coco_categories.json``):
#: 80 things, then 53 stuff classes, as ``(id, name)``.
_COCO_THINGS = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
_COCO_STUFF = (
    (92, "banner"), (93, "blanket"), (95, "bridge"), (100, "cardboard"), (107, "counter"), (109, "curtain"),
    (112, "door-stuff"), (118, "floor-wood"), (119, "flower"), (122, "fruit"), (125, "gravel"), (128, "house"),
    (130, "light"), (133, "mirror-stuff"), (138, "net"), (141, "pillow"), (144, "platform"), (145, "playingfield"),
    (147, "railroad"), (148, "river"), (149, "road"), (151, "roof"), (154, "sand"), (155, "sea"), (156, "shelf"),
    (159, "snow"), (161, "stairs"), (166, "tent"), (168, "towel"), (171, "wall-brick"), (175, "wall-stone"),
    (176, "wall-tile"), (177, "wall-wood"), (178, "water-other"), (180, "window-blind"), (181, "window-other"),
    (184, "tree-merged"), (185, "fence-merged"), (186, "ceiling-merged"), (187, "sky-other-merged"),
    (188, "cabinet-merged"), (189, "table-merged"), (190, "floor-other-merged"), (191, "pavement-merged"),
    (192, "mountain-merged"), (193, "grass-merged"), (194, "dirt-merged"), (195, "paper-merged"),
    (196, "food-other-merged"), (197, "building-other-merged"), (198, "rock-merged"), (199, "wall-other-merged"),
    (200, "rug-merged"),
)


def coco_panoptic_categories() -> dict[int, Category]:
    """COCO panoptic's 133 categories (80 things, 53 stuff), by id, in panopticapi's order."""
    cats = [Category(id=i, name=n, isthing=True) for i, n in _COCO_THINGS]
    cats += [Category(id=i, name=n, isthing=False) for i, n in _COCO_STUFF]
    return {c.id: c for c in cats}
