"""Every bad input gets one clear error naming the file, image and segment; nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pq_oracle import assert_same_as_oracle, oracle_pq, write_dataset
from pss_bench.cli import cli, main
from pss_bench.errors import GroundTruthFormatError, PredictionFormatError, PssBenchError
from pss_bench.evaluation.pq import evaluate_pq

CATS = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 2, "name": "car", "isthing": 1},
    {"id": 10, "name": "road", "isthing": 0},
    {"id": 11, "name": "sky", "isthing": 0},
]


def _maps():
    a = np.zeros((12, 16), np.int64)
    a[:4] = 11  # sky
    a[4:] = 10  # road
    a[6:10, 2:6] = 1001  # person
    a[5:11, 9:15] = 2001  # car
    a[11, :] = 0  # VOID row
    segs_a = [
        {"id": 11, "category_id": 11}, {"id": 10, "category_id": 10},
        {"id": 1001, "category_id": 1}, {"id": 2001, "category_id": 2},
    ]
    b = np.full((12, 16), 10, np.int64)
    b[2:5, 3:9] = 2002
    segs_b = [{"id": 10, "category_id": 10}, {"id": 2002, "category_id": 2}]
    return [("img_a", a, segs_a), ("img_b", b, segs_b)]


@pytest.fixture()
def ds(tmp_path):
    """A valid GT and a valid (slightly wrong) prediction."""
    gt_json, gt_dir = write_dataset(tmp_path, "gt", _maps(), CATS, with_area=True)
    pred_images = []
    for image_id, ids, segs in _maps():
        p = np.roll(ids, 1, axis=1)
        pred_images.append((image_id, p, [{"id": s["id"], "category_id": s["category_id"]} for s in segs]))
    pred_json, pred_dir = write_dataset(tmp_path, "pred", pred_images, None, with_area=False)
    return tmp_path, gt_json, gt_dir, pred_json, pred_dir


def _edit_json(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _run_cli(args, tmp_path):
    """Runs the CLI; returns (exit code, stdout, stderr, json file path)."""
    out_json = tmp_path / "result.json"
    runner = CliRunner()
    res = runner.invoke(cli, args + ["--json", str(out_json), "--no-cache"], standalone_mode=False, catch_exceptions=True)
    return res, out_json


def test_valid_input_passes_and_matches_oracle(ds):
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds
    r = evaluate_pq(pred_json, gt_json, use_cache=False)
    assert_same_as_oracle(r.to_dict(), oracle_pq(gt_json, gt_dir, pred_json, pred_dir))


# Each case: (what to break, error type, substrings the message must contain)
def _missing_pred_png(tmp, gt_json, gt_dir, pred_json, pred_dir):
    (pred_dir / "img_b.png").unlink()


def _missing_pred_folder(tmp, gt_json, gt_dir, pred_json, pred_dir):
    for f in pred_dir.iterdir():
        f.unlink()
    pred_dir.rmdir()


def _png_not_json(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][0]["segments_info"].pop(2))


def _json_not_png(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][1]["segments_info"].append({"id": 777, "category_id": 2}))


def _gt_png_not_json(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(gt_json, lambda o: o["annotations"][0]["segments_info"].pop(3))


def _gt_json_not_png(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(gt_json, lambda o: o["annotations"][1]["segments_info"].append(
        {"id": 555, "category_id": 1, "area": 3, "iscrowd": 0}))


def _unknown_category(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][0]["segments_info"][2].update(category_id=99))


def _gt_unknown_category(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(gt_json, lambda o: o["annotations"][0]["segments_info"][2].update(category_id=98))


def _size_mismatch(tmp, gt_json, gt_dir, pred_json, pred_dir):
    from pss_bench.io.panoptic import id2rgb
    ids = np.full((12, 15), 10)
    Image.fromarray(id2rgb(ids)).save(pred_dir / "img_b.png")
    _edit_json(pred_json, lambda o: o["annotations"][1].update(segments_info=[{"id": 10, "category_id": 10}]))


def _no_prediction(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"].pop(1))


def _truncated_json(tmp, gt_json, gt_dir, pred_json, pred_dir):
    pred_json.write_text(pred_json.read_text()[:-20])


def _truncated_gt_json(tmp, gt_json, gt_dir, pred_json, pred_dir):
    gt_json.write_text(gt_json.read_text()[: len(gt_json.read_text()) // 2])


def _not_an_object(tmp, gt_json, gt_dir, pred_json, pred_dir):
    pred_json.write_text("[1, 2, 3]")


def _grayscale_png(tmp, gt_json, gt_dir, pred_json, pred_dir):
    Image.fromarray(np.full((12, 16), 10, np.uint8), mode="L").save(pred_dir / "img_b.png")


def _palette_png(tmp, gt_json, gt_dir, pred_json, pred_dir):
    Image.fromarray(np.full((12, 16), 10, np.uint8), mode="L").convert("P").save(pred_dir / "img_b.png")


def _png16(tmp, gt_json, gt_dir, pred_json, pred_dir):
    Image.fromarray(np.full((12, 16), 10, np.uint16)).save(pred_dir / "img_b.png")


def _truncated_png(tmp, gt_json, gt_dir, pred_json, pred_dir):
    data = (pred_dir / "img_b.png").read_bytes()
    (pred_dir / "img_b.png").write_bytes(data[: len(data) // 2])


def _dup_segment(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][0]["segments_info"].append({"id": 1001, "category_id": 2}))


def _dup_gt_segment(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(gt_json, lambda o: o["annotations"][0]["segments_info"].append(
        {"id": 1001, "category_id": 2, "area": 16, "iscrowd": 0}))


def _dup_image(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"].append(dict(o["annotations"][0])))


def _dup_gt_image(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(gt_json, lambda o: o["annotations"].append(dict(o["annotations"][0])))


def _segment_id_zero(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(gt_json, lambda o: o["annotations"][0]["segments_info"].append(
        {"id": 0, "category_id": 10, "area": 16, "iscrowd": 0}))


def _pred_segment_id_zero(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][0]["segments_info"].append({"id": 0, "category_id": 10}))


def _wrong_area(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(gt_json, lambda o: o["annotations"][0]["segments_info"][3].update(area=5))


def _escaping_file_name(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][0].update(file_name="../gt/img_a.png"))


def _absolute_file_name(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][0].update(file_name=str(gt_dir / "img_a.png")))


def _missing_gt_folder(tmp, gt_json, gt_dir, pred_json, pred_dir):
    gt_dir.rename(tmp / "elsewhere")


def _link_file_outside(tmp, gt_json, gt_dir, pred_json, pred_dir):
    (pred_dir / "img_a.png").unlink()
    (pred_dir / "img_a.png").symlink_to(gt_dir / "img_a.png")  # a file outside the prediction folder


def _link_folder_outside(tmp, gt_json, gt_dir, pred_json, pred_dir):
    (pred_dir / "sub").symlink_to(gt_dir, target_is_directory=True)
    _edit_json(pred_json, lambda o: o["annotations"][0].update(file_name="sub/img_a.png"))


def _same_png_twice(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][1].update(file_name="./img_a.png"))


def _same_gt_png_through_a_link(tmp, gt_json, gt_dir, pred_json, pred_dir):
    (gt_dir / "img_b.png").unlink()
    (gt_dir / "img_b.png").symlink_to("img_a.png")


def _nul_in_file_name(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][0].update(file_name="img_a.png\u0000.png"))


def _surrogate_in_file_name(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][0].update(file_name="img_\ud800.png"))


def _file_name_too_long(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(pred_json, lambda o: o["annotations"][0].update(file_name="x" * 300 + ".png"))


def _fifo_png(tmp, gt_json, gt_dir, pred_json, pred_dir):
    import os

    (pred_dir / "img_b.png").unlink()
    os.mkfifo(pred_dir / "img_b.png")


def _fifo_gt_png(tmp, gt_json, gt_dir, pred_json, pred_dir):
    import os

    (gt_dir / "img_a.png").unlink()
    os.mkfifo(gt_dir / "img_a.png")


def _fifo_json(tmp, gt_json, gt_dir, pred_json, pred_dir):
    import os

    pred_json.unlink()
    os.mkfifo(pred_json)


def _deep_json(tmp, gt_json, gt_dir, pred_json, pred_dir):
    pred_json.write_text('{"annotations": ' + "[" * 100_000 + "]" * 100_000 + "}")


def _deep_gt_json(tmp, gt_json, gt_dir, pred_json, pred_dir):
    # deep enough for a RecursionError in any later recursive walk, shallow enough for the parser
    _edit_json(gt_json, lambda o: o["categories"][0].update(isthing=json.loads("[" * 500 + "]" * 500)))


def _huge_int_in_json(tmp, gt_json, gt_dir, pred_json, pred_dir):
    pred_json.write_text('{"annotations": [], "x": ' + "1" * 5000 + "}")  # past Python's int-parsing limit


def _gt_without_categories(tmp, gt_json, gt_dir, pred_json, pred_dir):
    _edit_json(gt_json, lambda o: o.pop("categories"))


CASES = [
    (_missing_pred_png, PredictionFormatError, ["img_b.png", "'img_b'", "not found"]),
    (_missing_pred_folder, PredictionFormatError, ["pred", "folder", "not found"]),
    (_missing_gt_folder, GroundTruthFormatError, ["gt", "folder", "not found"]),
    (_png_not_json, PredictionFormatError, ["img_a.png", "'img_a'", "segment 1001", "in the PNG but not in the JSON"]),
    (_json_not_png, PredictionFormatError, ["img_b.png", "'img_b'", "segment 777", "in the JSON but not in the PNG"]),
    (_gt_png_not_json, GroundTruthFormatError, ["img_a.png", "'img_a'", "segment 2001", "in the PNG but not in the JSON"]),
    (_gt_json_not_png, GroundTruthFormatError, ["'img_b'", "segment 555", "in the JSON but not in the PNG"]),
    (_unknown_category, PredictionFormatError, ["pred.json", "'img_a'", "segment 1001", "unknown category_id 99"]),
    (_gt_unknown_category, GroundTruthFormatError, ["gt.json", "'img_a'", "segment 1001", "unknown category_id 98"]),
    (_size_mismatch, PredictionFormatError, ["img_b.png", "'img_b'", "15x12", "16x12"]),
    (_no_prediction, PredictionFormatError, ["pred.json", "no prediction", "'img_b'"]),
    (_truncated_json, PredictionFormatError, ["pred.json", "malformed or truncated JSON"]),
    (_truncated_gt_json, GroundTruthFormatError, ["gt.json", "malformed or truncated JSON"]),
    (_not_an_object, PredictionFormatError, ["pred.json", "expected a JSON object"]),
    (_grayscale_png, PredictionFormatError, ["img_b.png", "'img_b'", "8-bit grayscale"]),
    (_palette_png, PredictionFormatError, ["img_b.png", "'img_b'", "palette"]),
    (_png16, PredictionFormatError, ["img_b.png", "'img_b'", "16-bit"]),
    (_truncated_png, PredictionFormatError, ["img_b.png", "'img_b'", "corrupt PNG"]),
    (_dup_segment, PredictionFormatError, ["pred.json", "'img_a'", "segment 1001", "listed twice"]),
    (_dup_gt_segment, GroundTruthFormatError, ["gt.json", "'img_a'", "segment 1001", "listed twice"]),
    (_dup_image, PredictionFormatError, ["pred.json", "'img_a'", "listed twice"]),
    (_dup_gt_image, GroundTruthFormatError, ["gt.json", "'img_a'", "listed twice"]),
    (_segment_id_zero, GroundTruthFormatError, ["gt.json", "'img_a'", "segment 0", "VOID"]),
    (_pred_segment_id_zero, PredictionFormatError, ["pred.json", "'img_a'", "segment 0", "VOID"]),
    (_wrong_area, GroundTruthFormatError, ["img_a.png", "'img_a'", "segment 2001", "area 5", "36 pixels"]),
    (_escaping_file_name, PredictionFormatError, ["pred.json", "'img_a'", "../gt/img_a.png", "escapes"]),
    (_absolute_file_name, PredictionFormatError, ["pred.json", "'img_a'", "escapes"]),
    (_link_file_outside, PredictionFormatError, ["pred.json", "'img_a'", "symbolic link", "outside its folder"]),
    (_link_folder_outside, PredictionFormatError, ["pred.json", "'img_a'", "sub/img_a.png", "outside its folder"]),
    (_same_png_twice, PredictionFormatError, ["pred.json", "'img_b'", "also the PNG of image 'img_a'"]),
    (_same_gt_png_through_a_link, GroundTruthFormatError, ["gt.json", "'img_b'", "also the PNG of image 'img_a'"]),
    (_nul_in_file_name, PredictionFormatError, ["pred.json", "'img_a'", "NUL byte"]),
    (_surrogate_in_file_name, PredictionFormatError, ["pred.json", "'img_a'", "cannot be encoded"]),
    (_file_name_too_long, PredictionFormatError, ["pred.json", "'img_a'", "too long"]),
    (_fifo_png, PredictionFormatError, ["img_b.png", "'img_b'", "FIFO"]),
    (_fifo_gt_png, GroundTruthFormatError, ["img_a.png", "'img_a'", "FIFO"]),
    (_fifo_json, PredictionFormatError, ["pred.json", "FIFO"]),
    (_deep_json, PredictionFormatError, ["pred.json", "nested more than"]),
    (_deep_gt_json, GroundTruthFormatError, ["gt.json", "nested more than"]),
    (_huge_int_in_json, PredictionFormatError, ["pred.json", "cannot be read"]),
    (_gt_without_categories, GroundTruthFormatError, ["gt.json", "'categories'", "missing"]),
]


@pytest.mark.usefixtures("no_hang")  # a FIFO read would block forever
@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.parametrize("breaker,exc_type,needles", CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_bad_input_raises_one_clear_error(ds, breaker, exc_type, needles, processes):
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds
    breaker(*ds)
    with pytest.raises(exc_type) as ei:
        evaluate_pq(pred_json, gt_json, gt_dir=gt_dir if gt_dir.exists() else None, pred_dir=pred_dir, use_cache=False,
                    workers=2, processes=processes)
    msg = str(ei.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize("breaker,exc_type,needles", CASES[:12:3], ids=[c[0].__name__.strip("_") for c in CASES[:12:3]])
def test_cli_bad_input_exit_1_one_line_no_output(ds, breaker, exc_type, needles, capsys):
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds
    breaker(*ds)
    out_json = tmp / "result.json"
    code = main(["pq", str(pred_json), "--gt", str(gt_json), "--pred-dir", str(pred_dir), "--json", str(out_json), "--no-cache"])
    captured = capsys.readouterr()
    assert code == 1
    assert not out_json.exists()
    assert not list(tmp.glob(".result.json*"))
    err_lines = [l for l in captured.err.splitlines() if l.strip()]
    assert len(err_lines) == 1 and err_lines[0].startswith("error:"), captured.err
    assert "Traceback" not in captured.err
    assert needles[-1] in err_lines[0]


def test_cli_debug_shows_traceback(ds):
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds
    _no_prediction(*ds)
    with pytest.raises(PssBenchError):
        main(["pq", str(pred_json), "--gt", str(gt_json), "--no-cache", "--debug"])


def test_trust_gt_area_restores_panopticapi_numbers(ds):
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds
    _wrong_area(*ds)
    r = evaluate_pq(pred_json, gt_json, use_cache=False, trust_gt_area=True)
    assert_same_as_oracle(r.to_dict(), oracle_pq(gt_json, gt_dir, pred_json, pred_dir))


def test_stuff_free_split_gives_null_row_where_official_code_crashes(tmp_path, caplog):
    cats = [{"id": 1, "name": "person", "isthing": 1}, {"id": 10, "name": "road", "isthing": 0}]
    ids = np.zeros((8, 8), np.int64)
    ids[2:6, 2:6] = 5
    segs = [{"id": 5, "category_id": 1}]
    gt_json, gt_dir = write_dataset(tmp_path, "gt", [("x", ids, segs)], cats, with_area=True)
    pred_json, pred_dir = write_dataset(tmp_path, "pred", [("x", ids, segs)], None, with_area=False)
    oracle = oracle_pq(gt_json, gt_dir, pred_json, pred_dir)
    assert oracle["Stuff"] is None  # cityscapesscripts raised ZeroDivisionError
    with caplog.at_level("WARNING", logger="pss_bench"):
        r = evaluate_pq(pred_json, gt_json, use_cache=False)
    assert r.stuff is None and r.to_dict()["Stuff"] is None
    assert r.all.pq == 1.0 and r.things.n == 1
    assert any("Stuff row is null" in m for m in caplog.messages)


def test_gt_segment_id_zero_is_refused_where_official_code_exceeds_100(tmp_path):
    """panopticapi counts a GT 'segment 0' over VOID pixels, which can push PQ above 1."""
    cats = [{"id": 10, "name": "road", "isthing": 0}]
    ids = np.zeros((4, 4), np.int64)
    ids[:, 2:] = 7
    # A declared "segment 0" (area 2) over the 8 VOID pixels of columns 0-1.
    gt_segs = [{"id": 7, "category_id": 10, "area": 8, "iscrowd": 0}, {"id": 0, "category_id": 10, "area": 2, "iscrowd": 0}]
    gt_json, gt_dir = write_dataset(tmp_path, "gt", [("x", ids, gt_segs)], cats, with_area=True)
    pred = np.full_like(ids, 7)  # covers the VOID columns too: harmless under the official rules
    pred_json, pred_dir = write_dataset(tmp_path, "pred", [("x", pred, [{"id": 7, "category_id": 10}])], None, False)
    oracle = oracle_pq(gt_json, gt_dir, pred_json, pred_dir)
    assert oracle["stat"].pq_per_cat[10].tp == 2  # one prediction matched twice
    assert oracle["All"]["pq"] > 1.0
    with pytest.raises(GroundTruthFormatError, match="segment 0"):
        evaluate_pq(pred_json, gt_json, use_cache=False)


def test_validate_refused_segment_is_not_also_missing_from_the_json(ds, capsys):
    """Issue 23 item 6: a segment without 'area' is one problem, not also 'in the PNG but not in the JSON'."""
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds
    _edit_json(gt_json, lambda o: o["annotations"][0]["segments_info"][2].pop("area"))
    assert main(["validate", str(gt_json)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"{gt_json}: image 'img_a', segment 1001: no integer 'area' (found None)"]


def test_validate_prediction_without_areas_lists_each_segment_once(ds, capsys):
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds
    _edit_json(pred_json, lambda o: o.update(categories=CATS))
    assert main(["validate", str(pred_json)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 6 and all("no integer 'area'" in line for line in out)  # 4 + 2 segments


def test_prediction_keyed_by_file_stems_names_the_near_match(ds, capsys):
    """Issue 23 item 10: an image id with a file suffix gets a hint naming the near match."""
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds

    def stems(o):
        for a in o["annotations"]:
            a["image_id"] = f"{a['image_id']}_leftImg8bit"
    _edit_json(pred_json, stems)
    assert main(["pq", str(pred_json), "--gt", str(gt_json), "--no-cache"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "no prediction for GT image 'img_a'" in err and "the prediction has image 'img_a_leftImg8bit'" in err


def test_coco_image_id_as_a_string_names_the_near_match(sample_data, tmp_path, capsys):
    root = sample_data / "coco_panoptic" / "mseg_sample" / "tests" / "test_data" / "COCOPanoptic_test_data"
    gt = root / "annotations" / "panoptic_val2017.json"
    obj = json.loads(gt.read_text())
    for a in obj["annotations"]:
        a["image_id"] = str(a["image_id"])
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(obj))
    assert main(["pq", str(pred), "--gt", str(gt), "--pred-dir", str(root / "annotations" / "panoptic_val2017"),
                 "--categories", "coco", "--no-cache"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "no prediction for GT image 139" in err and "the prediction has image '139'" in err


@pytest.mark.parametrize("wanted, candidates, near", [
    (139, ["139"], "139"),
    (139, ["000000000139", "140"], "000000000139"),
    ("aachen_000000_000019", ["aachen_000000_000019_gtFine_panoptic", "x"], "aachen_000000_000019_gtFine_panoptic"),
    ("aachen_000000_000019", ["bochum_000000_000019"], None),
    ("a", ["ab", "a_b"], "a_b"),
    (7, [17, "70"], None),
])
def test_near_image_id(wanted, candidates, near):
    from pss_bench.text import near_image_id

    assert near_image_id(wanted, candidates) == near
