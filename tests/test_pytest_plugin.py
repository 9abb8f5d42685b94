"""The regression helpers and the pytest plugin: fail on a degraded prediction, pass on the baseline."""

from __future__ import annotations

import json

import numpy as np

from pq_oracle import write_dataset
from pss_bench.testing import RegressionError, compare_metrics

pytest_plugins = ["pytester"]

CATS = [{"id": 1, "name": "person", "isthing": 1}, {"id": 10, "name": "road", "isthing": 0}]


def _maps(shift: int):
    ids = np.full((16, 16), 10, np.int64)
    ids[4:12, 4:12] = 1001
    ids[0:3, 0:3] = 1002
    segs = [{"id": 10, "category_id": 10}, {"id": 1001, "category_id": 1}, {"id": 1002, "category_id": 1}]
    pred = np.roll(ids, shift, axis=1)
    pred[:, :shift] = 10
    present = set(np.unique(pred).tolist())
    return ids, segs, pred, [s for s in segs if s["id"] in present]


def _write(root, shift):
    ids, segs, pred, psegs = _maps(shift)
    gt_json, _ = write_dataset(root, "gt", [("a", ids, segs)], CATS, with_area=True)
    pred_json, _ = write_dataset(root, "pred", [("a", pred, psegs)], None, with_area=False)
    return gt_json, pred_json


TEST_FILE = """
from pss_bench.testing import assert_pq

def test_pq():
    assert_pq(r"{pred}", r"{gt}", baseline="baselines/model.json", tol=0.005)
"""


def test_plugin_creates_baseline_then_passes_then_fails_on_degradation(pytester):
    gt_json, pred_json = _write(pytester.path / "data", 0)
    pytester.makepyfile(test_model=TEST_FILE.format(pred=pred_json, gt=gt_json))
    env = {"PSS_BENCH_CACHE_DIR": str(pytester.path / "cache")}
    for k, v in env.items():
        pytester._monkeypatch.setenv(k, v)

    first = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*no baseline yet*--pss-bench-update*"])

    pytester.runpytest_subprocess("--pss-bench-update").assert_outcomes(passed=1)
    stored = json.loads((pytester.path / "baselines" / "model.json").read_text())
    assert stored["kind"] == "pq" and stored["metrics"]["All/pq"] == 1.0

    pytester.runpytest_subprocess().assert_outcomes(passed=1)

    # Degrade the prediction: shift the person instances.
    _write(pytester.path / "data", 5)
    bad = pytester.runpytest_subprocess()
    bad.assert_outcomes(failed=1)
    bad.stdout.fnmatch_lines(["*PQ dropped by more than 0.005*", "*All/pq*1.0000*", "*class 1 (person)/pq*"])


def test_compare_metrics_directions_and_missing_values():
    base = {"a": 0.5, "b": 0.5, "c": None, "d": 0.4}
    cur = {"a": 0.497, "b": 0.49, "c": 0.1, "d": None, "e": 0.2}
    worse = compare_metrics(cur, base, tol=0.005, higher_is_better=True)
    assert [w[0] for w in worse] == ["b", "d"]
    worse = compare_metrics({"a": 0.52}, {"a": 0.5}, tol=0.01, higher_is_better=False)
    assert worse == [("a", 0.5, 0.52)]
    assert issubclass(RegressionError, AssertionError)


def test_assert_pq_on_a_further_metric(tmp_path):
    import pytest

    from pss_bench.errors import PssBenchError
    from pss_bench.testing import assert_pq, configure

    gt_json, pred_json = _write(tmp_path / "good", 0)
    _, worse_json = _write(tmp_path / "worse", 1)
    try:
        configure(update=True, rootdir=tmp_path)
        full = assert_pq(pred_json, gt_json, baseline="b.json", metric="boundary-pq")
        assert full["boundary_pq"]["All"]["pq"] == 1.0
        stored = json.loads((tmp_path / "b.json").read_text())
        assert stored["kind"] == "boundary-pq" and stored["metrics"]["All/pq"] == 1.0
        configure(update=False, rootdir=tmp_path)
        assert_pq(pred_json, gt_json, baseline="b.json", metric="boundary-pq")
        try:
            assert_pq(worse_json, gt_json, baseline="b.json", metric="boundary-pq")
        except RegressionError as exc:
            assert "boundary-pq dropped" in str(exc) and "All/pq" in str(exc)
        else:
            raise AssertionError("a one-pixel shift must lower Boundary PQ")
        with pytest.raises(RegressionError, match="not a pss-bench pq baseline"):
            assert_pq(pred_json, gt_json, baseline="b.json")
        with pytest.raises(PssBenchError, match="unknown metric"):
            assert_pq(pred_json, gt_json, baseline="b.json", metric="bpq")
        configure(update=True, rootdir=tmp_path)
        for metric, key in (("pq-dagger", "All/pq"), ("pc", "All/pc"), ("pq-area", "small/All/pq")):
            assert_pq(pred_json, gt_json, baseline=f"{metric}.json", metric=metric)
            assert json.loads((tmp_path / f"{metric}.json").read_text())["metrics"][key] == 1.0
    finally:
        configure(update=False, rootdir=None)
