"""``pss-bench context-error`` end to end: exit codes, table, --json schema, no output on failure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from context_error_helpers import reset_cli_debug, write_embeddings, write_tiny_gt
from pss_bench.cli import cli, main

CATS = [{"id": 1, "name": "road", "isthing": 0}, {"id": 2, "name": "car", "isthing": 1},
        {"id": 3, "name": "person", "isthing": 1}]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    reset_cli_debug(monkeypatch)


@pytest.fixture
def ds(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for n in range(6):
        ids = np.ones((12, 16), np.uint32)
        ids[: 2 + n % 3, :] = 0
        ids[4:7, 2 + n : 5 + n] = 2
        ids[8:11, 9:11] = 3
        segs = [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0},
                {"id": 3, "category_id": 3, "iscrowd": 0}]
        images[f"img{n}"] = (ids, segs)
    gt_json, gt_dir = write_tiny_gt(tmp_path, images, CATS)
    pred = write_embeddings(tmp_path / "pred", {k: ([2, 3], rng.normal(size=(2, 4))) for k in images},
                            gt_json=str(gt_json))
    return tmp_path, gt_json, pred


def test_table_and_json_schema(ds, capsys):
    tmp, gt_json, pred = ds
    out = tmp / "ce.json"
    assert main(["context-error", str(pred), "--gt", str(gt_json), "--k", "3", "--json", str(out), "--no-cache"]) == 0
    cap = capsys.readouterr()
    assert "car" in cap.out and "person" in cap.out and "oracle" in cap.out and "mean" in cap.out
    res = json.loads(out.read_text())
    assert set(res) == {"k", "all_classes", "per_class", "mean", "mean_all_classes", "bootstrap"} and res["k"] == 3
    assert res["bootstrap"] is None and res["all_classes"] is False
    assert set(res["per_class"]) == {"2", "3"}
    row_keys = {"ce", "random", "oracle", "score", "queries", "precision", "informative", "classes"}
    for row in res["per_class"].values():
        assert set(row) == row_keys
        assert row["queries"] == 6
        assert row["informative"] is True  # 5 others > K = 3
        assert row["oracle"] <= row["ce"] + 1e-12
    assert set(res["mean"]) == row_keys and res["mean"]["classes"] == 2
    assert res["mean_all_classes"] == res["mean"]
    assert res["mean"]["ce"] == pytest.approx((res["per_class"]["2"]["ce"] + res["per_class"]["3"]["ce"]) / 2)
    assert f"{res['mean']['ce']:.3f}" in cap.out


def test_cli_runner_json_dash_and_manifest_gt(ds):
    tmp, gt_json, pred = ds
    runner = CliRunner()
    res = runner.invoke(cli, ["context-error", str(pred), "--json", "-", "--cache-dir", str(tmp / "c")])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    # K = 20 covers the 5 other instances of each class: both are uninformative, the mean is undefined
    # and only the paper's plain mean over all classes has a value.
    assert payload["mean_all_classes"]["queries"] == 12
    assert payload["mean"]["queries"] == 0 and payload["mean"]["ce"] is None
    assert [r["informative"] for r in payload["per_class"].values()] == [False, False]
    res = runner.invoke(cli, ["context-error", str(pred), "--json", "-", "--no-cache", "--all-classes"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["mean"] == payload["mean_all_classes"]
    assert list((tmp / "c").rglob("*.desc"))  # descriptors were cached
    # --min-area above every instance leaves no query: nulls, still exit 0
    res = runner.invoke(cli, ["context-error", str(pred), "--json", "-", "--no-cache", "--min-area", "1000"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["mean"]["ce"] is None


def test_gallery(ds, capsys):
    tmp, gt_json, pred = ds
    assert main(["context-error", str(pred), "--k", "1", "--json", "-", "--no-cache"]) == 0
    alone = json.loads(capsys.readouterr().out)
    # A gallery that is a copy of the queries: each query finds itself (CE 0), and
    # the random bound now averages over all 6 instances, itself included.
    assert main(["context-error", str(pred), "--gallery", str(pred), "--k", "1", "--json", "-", "--no-cache"]) == 0
    res = json.loads(capsys.readouterr().out)
    for c in ("2", "3"):
        assert res["per_class"][c]["ce"] == pytest.approx(0.0, abs=1e-12)
        assert res["per_class"][c]["oracle"] == pytest.approx(0.0, abs=1e-12)
        assert res["per_class"][c]["random"] == pytest.approx(alone["per_class"][c]["random"] * 5 / 6)


def test_data_errors_exit_1_and_write_nothing(ds, capsys):
    tmp, gt_json, pred = ds
    out = tmp / "ce.json"
    with open(pred / "embeddings" / "img0.npz", "wb") as f:
        np.savez(f, segment_ids=np.array([2, 77]), embeddings=np.ones((2, 4), np.float32))
    assert main(["context-error", str(pred), "--gt", str(gt_json), "--json", str(out), "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert "img0.npz" in err and "segment 77" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".ce.json")]


def test_usage_errors_exit_2(ds, capsys):
    tmp, gt_json, pred = ds
    (pred / "manifest.json").write_text(json.dumps({"format": "pss-bench-predictions", "version": 1, "model": "m",
                                                     "embeddings": "gt-segments"}))
    assert main(["context-error", str(pred)]) == 2
    assert "--gt" in capsys.readouterr().err
    assert main(["context-error", str(pred), "--gt", str(gt_json), "--k", "0"]) == 2
    assert main(["context-error", str(pred), "--gt", str(gt_json), "--no-cache", "--cache-dir", str(tmp)]) == 2
    assert main(["context-error", str(pred), "--gt", str(gt_json), "--gallery-gt", str(gt_json)]) == 2
    assert main(["context-error", str(tmp / "nope"), "--gt", str(gt_json)]) == 2


def test_help_lists_the_command():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0 and "context-error" in res.output


def test_wide_table_is_printed_at_its_natural_width(tmp_path, capsys, monkeypatch):
    """Issue 13 item 16: with COCO's 80 thing classes the table was squeezed into the console to empty columns."""
    monkeypatch.setenv("COLUMNS", "80")
    cats = [{"id": 1, "name": "road", "isthing": 0}] + [
        {"id": 10 + j, "name": f"thing-class-{j:02d}", "isthing": 1} for j in range(80)]
    rng = np.random.default_rng(1)
    images = {}
    for n in range(8):
        ids = np.ones((12, 16), np.uint32)
        ids[: 1 + n % 3, :] = 0
        ids[4:7, 2 + n : 5 + n] = 2
        images[f"img{n}"] = (ids, [{"id": 1, "category_id": 1, "iscrowd": 0},
                                   {"id": 2, "category_id": 10, "iscrowd": 0}])
    gt_json, _ = write_tiny_gt(tmp_path, images, cats)
    pred = write_embeddings(tmp_path / "pred", {k: ([2], rng.normal(size=(1, 4))) for k in images},
                            gt_json=str(gt_json))
    assert main(["context-error", str(pred), "--k", "3", "--json", str(tmp_path / "r.json"), "--no-cache"]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "r.json").read_text())
    assert max(len(line) for line in out.splitlines()) > 80  # wider than the console, not squeezed
    for c in cats[1:]:
        assert c["name"] in out
    ce = res["per_class"]["10"]["ce"]
    assert f"{ce:.3f}" in out
    assert f"{res['mean']['ce']:.3f}" in out
