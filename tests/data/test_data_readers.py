"""Readers on the real sample frames: every one yields the documented PanopticSample."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as cs_labels

from pss_bench.data.cityscapes import CityscapesPanoptic, cityscapes_categories
from pss_bench.data.coco import CocoPanoptic
from pss_bench.data.sample import PanopticSample
from pss_bench.data.voc import VocPanoptic, voc_to_panoptic
from pss_bench.errors import FormatError, PssBenchError
from pss_bench.io.panoptic import read_id_png


def assert_documented_sample(s: PanopticSample) -> None:
    assert isinstance(s, PanopticSample)
    assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3
    assert s.panoptic.dtype == np.int64 and s.panoptic.shape == s.image.shape[:2]
    ids = set(np.unique(s.panoptic).tolist()) - {0}
    assert ids == set(s.segments.ids.tolist())  # every segment present, nothing undeclared
    assert all(int(c) in s.categories for c in s.segments.category_ids)
    assert s.isthing().shape == (len(s.segments),)
    if s.segments.areas is not None:
        for sid, area in zip(s.segments.ids, s.segments.areas):
            assert int((s.panoptic == sid).sum()) == int(area)


def test_cityscapes_categories_come_from_cityscapesscripts():
    cats = cityscapes_categories()
    expected = [l for l in cs_labels if not l.ignoreInEval]
    assert list(cats) == [l.id for l in expected]
    assert [c.isthing for c in cats.values()] == [l.hasInstances for l in expected]


def test_cityscapes_reader_on_real_train_frames(sample_data, cityscapes_train_gt):
    gt_json, _ = cityscapes_train_gt
    r = CityscapesPanoptic(sample_data / "cityscapes", "train", gt_json=gt_json)
    assert len(r) == 8
    assert r.image_ids == sorted(r.image_ids)
    s = r[0]
    assert_documented_sample(s)
    assert s.image.shape == (1024, 2048, 3)
    assert s.image_id == "aachen_000000_000019"
    # label ids, not train ids: things are 24..33 and ids decode as labelId*1000+k
    things = s.segments.ids[s.isthing() & ~s.segments.iscrowd]
    assert len(things) and all(24 <= i // 1000 <= 33 for i in things.tolist())
    assert list(s.categories) == list(cityscapes_categories())


def test_cityscapes_reader_on_real_val_frame(sample_data, cityscapes_val_gt):
    gt_json, png_dir = cityscapes_val_gt
    r = CityscapesPanoptic(sample_data / "cityscapes", "val", gt_json=gt_json)
    (s,) = list(r)
    assert_documented_sample(s)
    assert s.image_id == "frankfurt_000000_000294" and s.image.shape == (128, 256, 3)
    assert np.array_equal(s.panoptic, read_id_png(png_dir / "frankfurt_000000_000294_gtFine_panoptic.png"))


def test_cityscapes_reader_without_gt_names_the_fix(sample_data, tmp_path):
    with pytest.raises(PssBenchError, match="prepare cityscapes"):
        CityscapesPanoptic(sample_data / "cityscapes", "train")


def test_cityscapes_reader_refuses_image_without_gt(sample_data, cityscapes_val_gt, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(sample_data / "cityscapes" / "leftImg8bit" / "val", root / "leftImg8bit" / "val")
    extra = root / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_999999_leftImg8bit.png"
    shutil.copy(root / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000294_leftImg8bit.png", extra)
    with pytest.raises(PssBenchError) as ei:
        CityscapesPanoptic(root, "val", gt_json=cityscapes_val_gt[0])
    assert str(extra) in str(ei.value) and "\n" not in str(ei.value)


@pytest.mark.parametrize("sub,json_name,images", [
    ("panopticapi_sample/sample_data", "panoptic_examples.json", "input_images"),
])
def test_coco_reader_on_panopticapi_sample(sample_data, sub, json_name, images):
    d = sample_data / "coco_panoptic" / sub
    r = CocoPanoptic(d / json_name, d / images)
    assert len(r) == 2
    raw = json.loads((d / json_name).read_text())
    assert len(r.categories) == len(raw["categories"]) == 133
    for i, s in enumerate(r):
        assert_documented_sample(s)
        info = next(im for im in raw["images"] if im["id"] == s.image_id)
        assert s.image.shape[:2] == (info["height"], info["width"])
        assert s.segments.iscrowd.any() or not any(x["iscrowd"] for x in raw["annotations"][i]["segments_info"])


def test_coco_reader_missing_image_names_it(sample_data, tmp_path):
    d = sample_data / "coco_panoptic" / "panopticapi_sample" / "sample_data"
    (tmp_path / "imgs").mkdir()
    with pytest.raises(PssBenchError, match="000000142238.jpg"):
        CocoPanoptic(d / "panoptic_examples.json", tmp_path / "imgs")


def test_voc_reader_keeps_every_instance_and_the_void_border(sample_data):
    from PIL import Image

    r = VocPanoptic(sample_data / "voc", split=None)
    assert r.image_ids == ["2007_000063"]
    s = r[0]
    assert_documented_sample(s)
    cls = np.array(Image.open(sample_data / "voc" / "SegmentationClass" / "2007_000063.png"))
    obj = np.array(Image.open(sample_data / "voc" / "SegmentationObject" / "2007_000063.png"))
    # void border stays VOID, and nothing else is VOID
    assert np.array_equal(s.panoptic == 0, (cls == 255) | (obj == 255))
    # one segment per object, with the object's class and exact pixels
    objects = sorted(set(np.unique(obj).tolist()) - {0, 255})
    things = s.segments.ids[s.isthing()]
    assert len(things) == len(objects)
    for o in objects:
        (c,) = set(np.unique(cls[obj == o]).tolist())
        assert np.array_equal(s.panoptic == 1000 * c + o, obj == o)
    assert s.categories[0].name == "background" and not s.categories[0].isthing
    assert sum(c.isthing for c in s.categories.values()) == 20


def test_voc_missing_split_list_names_the_file(sample_data):
    with pytest.raises(PssBenchError, match="ImageSets/Segmentation/train.txt"):
        VocPanoptic(sample_data / "voc", split="train")


def test_voc_object_spanning_two_classes_is_refused():
    c = np.array([[0, 3], [5, 5]], np.uint8)
    o = np.array([[0, 1], [1, 1]], np.uint8)
    with pytest.raises(FormatError, match="object 1 spans two classes"):
        voc_to_panoptic(c, o, "x.png")


def test_voc_object_pixels_without_index_are_refused():
    c = np.array([[0, 3], [3, 3]], np.uint8)
    o = np.array([[0, 1], [1, 0]], np.uint8)
    with pytest.raises(FormatError, match="x.png: 1 object-class pixels have no object index"):
        voc_to_panoptic(c, o, "x.png")


def test_voc_label_of_wrong_size_names_the_file(sample_data, tmp_path):
    from PIL import Image

    root = tmp_path / "voc"
    shutil.copytree(sample_data / "voc", root)
    p = root / "SegmentationObject" / "2007_000063.png"
    Image.open(p).crop((0, 0, 100, 100)).save(p)
    with pytest.raises(FormatError) as ei:
        VocPanoptic(root, None)[0]
    assert "2007_000063" in str(ei.value) and "differ" in str(ei.value)


def test_voc_label_of_wrong_mode_names_the_file(sample_data, tmp_path):
    from PIL import Image

    root = tmp_path / "voc"
    shutil.copytree(sample_data / "voc", root)
    p = root / "SegmentationClass" / "2007_000063.png"
    Image.open(p).convert("RGB").save(p)
    with pytest.raises(FormatError) as ei:
        VocPanoptic(root, None)[0]
    assert str(p) in str(ei.value) and "RGB" in str(ei.value)


def test_voc_train_aug_reads_missing_frames_from_sbd(sample_data, tmp_path):
    from scipy.io import savemat

    root = tmp_path / "voc"
    shutil.copytree(sample_data / "voc", root)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("2007_000063\n2011_003353\n")
    sbd = tmp_path / "sbd"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "inst").mkdir()
    cls = np.zeros((500, 375), np.uint8)  # 2011_003353.jpg is 375x500 (WxH)
    inst = np.zeros((500, 375), np.uint8)
    cls[100:300, 50:200], inst[100:300, 50:200] = 15, 1
    cls[350:450, 200:300], inst[350:450, 200:300] = 15, 2
    savemat(sbd / "cls" / "2011_003353.mat", {"GTcls": {"Segmentation": cls}})
    savemat(sbd / "inst" / "2011_003353.mat", {"GTinst": {"Segmentation": inst, "Categories": np.array([15, 15])}})
    with pytest.raises(PssBenchError, match="2011_003353"):
        VocPanoptic(root, "train_aug")
    r = VocPanoptic(root, "train_aug", sbd_dir=sbd)
    s = r[1]
    assert_documented_sample(s)
    assert sorted(s.segments.ids.tolist()) == [1, 15001, 15002]


def test_undeclared_png_id_names_image_and_segment(tmp_path):
    from pss_bench.io.panoptic import write_id_png
    from pss_bench.io.atomic import write_json_atomic

    (tmp_path / "imgs").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "imgs" / "a.jpg")
    pan = np.full((4, 5), 3, np.int64)
    pan[0, 0] = 77
    write_id_png(tmp_path / "gt" / "a.png", pan)
    write_json_atomic(tmp_path / "gt.json", {
        "images": [{"id": "a", "file_name": "a.jpg", "height": 4, "width": 5}],
        "annotations": [{"image_id": "a", "file_name": "a.png",
                         "segments_info": [{"id": 3, "category_id": 1, "iscrowd": 0, "area": 19}]}],
        "categories": [{"id": 1, "name": "x", "isthing": 0}]})
    r = CocoPanoptic(tmp_path / "gt.json", tmp_path / "imgs")
    with pytest.raises(FormatError, match="image 'a', segment 77: in the PNG but not in the JSON"):
        r[0]


def test_coco_reader_on_transformers_sample(sample_data, tmp_path):
    """COCO image 39769: the fixture's segments_info list wrapped into a panoptic JSON."""
    d = sample_data / "coco_panoptic" / "transformers_sample" / "tests" / "fixtures" / "tests_samples" / "COCO"
    segs = json.loads((d / "coco_panoptic_annotations.txt").read_text())
    cats = json.loads((sample_data / "coco_panoptic" / "panopticapi_sample" / "panoptic_coco_categories.json").read_text())
    gt = {"images": [{"id": 39769, "file_name": "000000039769.png", "height": 480, "width": 640}],
          "annotations": [{"image_id": 39769, "file_name": "000000039769.png", "segments_info": segs}],
          "categories": cats}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    r = CocoPanoptic(tmp_path / "gt.json", d, png_dir=d / "coco_panoptic")
    (s,) = list(r)
    assert_documented_sample(s)
    assert s.image_id == 39769 and s.image.shape == (480, 640, 3)
    assert sorted(s.segments.ids.tolist()) == sorted(x["id"] for x in segs)


@pytest.mark.parametrize("content, needle", [
    (b"2007_000063\n\xff\xfe\n", "not UTF-8"),
    (b"../../../etc/passwd\n", "escapes its folder"),
])
def test_voc_hostile_split_list_is_one_line(sample_data, tmp_path, content, needle):
    root = tmp_path / "voc"
    shutil.copytree(sample_data / "voc", root)
    lst = root / "ImageSets" / "Segmentation" / "val.txt"
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_bytes(content)
    with pytest.raises(FormatError if needle == "not UTF-8" else PssBenchError) as ei:
        VocPanoptic(root, "val")
    assert "val.txt" in str(ei.value) and needle in str(ei.value)
