"""Absurd numbers in a GT JSON (ids and areas of 2**70 or 1e300, areas of 0): one line, never Infinity."""

from __future__ import annotations

import json

import pytest

from pss_bench.cli import main
from test_pq_errors import _edit_json, ds  # noqa: F401  (the fixture)


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    from pss_bench.cli import options

    monkeypatch.setitem(options._state, "debug", False)


def _set_category_id(value):
    def f(obj):
        old = obj["categories"][0]["id"]
        obj["categories"][0]["id"] = value
        for ann in obj["annotations"]:
            for s in ann["segments_info"]:
                if s["category_id"] == old:
                    s["category_id"] = value
    return f


def _set_area(value):
    def f(obj):
        obj["annotations"][0]["segments_info"][2]["area"] = value
    return f


@pytest.mark.parametrize("edit, match", [
    (_set_category_id(2**70), r"gt\.json: categories\[0\]: id 1180591620717411303424 out of range"),
    (_set_category_id(-1), r"gt\.json: categories\[0\]: id -1 out of range"),
    (_set_area(2**70), r"gt\.json: image 'img_a', segment 1001: 'area' must be a pixel count in \[1, \d+\], found 1180591620717411303424"),
    (_set_area(1e300), r"gt\.json: image 'img_a', segment 1001: 'area' must be a pixel count .* found 1e\+300"),
    (_set_area(0), r"gt\.json: image 'img_a', segment 1001: 'area' must be a pixel count .* found 0"),
    (_set_area(-16), r"gt\.json: image 'img_a', segment 1001: 'area' must be a pixel count .* found -16"),
])
@pytest.mark.parametrize("trust", [False, True])
def test_absurd_numbers_are_one_line_errors(ds, capsys, edit, match, trust):  # noqa: F811
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds
    _edit_json(gt_json, edit)
    out = tmp / "res.json"
    args = ["pq", str(pred_json), "--gt", str(gt_json), "--no-cache", "--json", str(out)]
    assert main(args + (["--trust-gt-area"] if trust else [])) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    import re

    assert re.search(match, err.replace("\n", "")), err
    assert not out.exists()


def test_trusted_areas_never_give_infinity(ds, capsys):  # noqa: F811
    """A valid run with --trust-gt-area writes strict JSON (no Infinity / NaN)."""
    tmp, gt_json, gt_dir, pred_json, pred_dir = ds
    out = tmp / "res.json"
    assert main(["pq", str(pred_json), "--gt", str(gt_json), "--no-cache", "--trust-gt-area", "--json", str(out)]) == 0
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-finite number {c} in the JSON"))
