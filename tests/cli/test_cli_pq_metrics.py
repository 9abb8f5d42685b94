"""``pss-bench pq --metrics``: one block per metric, the issue's JSON layout, usage errors."""

from __future__ import annotations

import json

import pytest

from prediction_helpers import perturbed_prediction
from pss_bench.cli import main
from pss_bench.evaluation.pq import evaluate_pq


@pytest.fixture()
def cs_pred(cityscapes_val_gt, tmp_path):
    gt_json, gt_dir = cityscapes_val_gt
    pred_json, pred_dir = perturbed_prediction(gt_json, gt_dir, tmp_path / "pred", 3, "mix")
    return gt_json, gt_dir, pred_json, pred_dir


def _args(cs_pred, *extra):
    gt_json, gt_dir, pred_json, pred_dir = cs_pred
    return ["pq", str(pred_json), "--gt", str(gt_json), "--gt-dir", str(gt_dir), "--pred-dir", str(pred_dir),
            "--workers", "1", *extra]


def test_all_metrics_json_layout_and_values(cs_pred, capsys):
    gt_json, gt_dir, pred_json, pred_dir = cs_pred
    assert main(_args(cs_pred, "--metrics", "all", "--json", "-")) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"All", "Things", "Stuff", "per_class", "bootstrap", "boundary_pq", "pq_dagger", "pc",
                        "pq_area"}
    b = res["boundary_pq"]
    assert set(b) == {"All", "Things", "Stuff", "per_class", "dilation_ratio"} and b["dilation_ratio"] == 0.02
    assert set(b["All"]) == {"pq", "sq", "rq", "n"}
    assert all(set(v) == {"pq", "sq", "rq", "tp", "fp", "fn", "iou"} for v in b["per_class"].values())
    d = res["pq_dagger"]
    assert set(d) == {"All", "Things", "Stuff", "per_class"} and set(d["All"]) == {"pq", "n"}
    assert all(set(v) == {"pq"} for v in d["per_class"].values())
    assert set(res["pc"]) == {"All", "per_class", "normalize_by_image_size"} and set(res["pc"]["All"]) == {"pc"}
    assert res["pc"]["normalize_by_image_size"] is True
    a = res["pq_area"]
    assert set(a) == {"small", "medium", "large", "ranges"} and a["ranges"] == [[0, 1024], [1024, 9216], [9216, None]]
    assert set(a["small"]) == {"All", "Things", "Stuff", "per_class"}
    want = evaluate_pq(pred_json, gt_json, gt_dir=gt_dir, pred_dir=pred_dir, metrics="all", use_cache=False)
    assert {k: v for k, v in res.items() if k != "bootstrap"} == json.loads(json.dumps(want.to_dict()))


def test_table_blocks_and_options(cs_pred, capsys):
    assert main(_args(cs_pred, "--metrics", "boundary-pq,pc", "--dilation-ratio", "0.05", "--no-pc-normalize")) == 0
    out = capsys.readouterr().out
    assert "Boundary PQ (dilation ratio 0.05)" in out and "Parsing Covering" in out
    assert "PQ†" not in out and "object size" not in out and "areas in pixels" in out
    assert main(_args(cs_pred, "--metrics", "pq-dagger,pq-area,pq", "--json", "-")) == 0
    res = json.loads(capsys.readouterr().out)
    assert "pq_dagger" in res and "pq_area" in res and "boundary_pq" not in res and "pc" not in res


@pytest.mark.parametrize("extra,message", [
    (("--metrics", "pq,boundary"), "unknown metric 'boundary'"),
    (("--dilation-ratio", "0"), "dilation-ratio"),
])
def test_usage_errors_exit_2(cs_pred, capsys, extra, message):
    assert main(_args(cs_pred, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bootstrap_gives_the_further_metrics_intervals_beside_their_numbers(cs_pred, capsys):
    """``--bootstrap`` resamples every asked metric: a "bootstrap" beside each one's numbers, no note on stderr."""
    assert main(_args(cs_pred, "--metrics", "boundary-pq", "--bootstrap", "20", "--json", "-")) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert res["bootstrap"] is not None
    b = res["boundary_pq"]["bootstrap"]
    assert b["settings"]["resamples"] == 20 and b["differences"] == [None]
    iv = b["models"][0]["rows"]["All"]["pq"]
    assert iv["estimate"] == pytest.approx(res["boundary_pq"]["All"]["pq"], abs=1e-12)
    assert iv["low"] <= iv["estimate"] <= iv["high"]
    assert "compare" not in captured.err and "intervals only" not in captured.err
    assert main(_args(cs_pred, "--metrics", "boundary-pq", "--json", "-")) == 0
    assert "bootstrap" not in json.loads(capsys.readouterr().out)["boundary_pq"]  # only when asked
