"""The real-data tests run on a fresh clone with no variable set (``../shared/data`` is the default)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from child_process import child_env
from sample_data_root import REPO_ROOT, sample_root


def test_default_is_shared_data_beside_the_repository(tmp_path):
    repo = tmp_path / "pss-bench"
    repo.mkdir()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    root, reason = sample_root({}, repo)
    assert root == (tmp_path / "shared" / "data").resolve() and reason == ""


def test_missing_default_gives_the_reason(tmp_path):
    root, reason = sample_root({}, tmp_path / "pss-bench")
    assert root is None
    assert "PSS_BENCH_SAMPLE_DATA is not set" in reason and str(tmp_path / "shared" / "data") in reason


def test_variable_wins_and_a_missing_folder_is_named(tmp_path):
    (tmp_path / "mine").mkdir()
    assert sample_root({"PSS_BENCH_SAMPLE_DATA": str(tmp_path / "mine")}, tmp_path)[0] == (tmp_path / "mine").resolve()
    root, reason = sample_root({"PSS_BENCH_SAMPLE_DATA": str(tmp_path / "nope")}, tmp_path)
    assert root is None and "nope: no such folder" in reason


@pytest.mark.skipif(not (REPO_ROOT / ".." / "shared" / "data").is_dir(), reason="no ../shared/data beside this checkout")
def test_real_data_test_runs_without_the_variable():
    env = {k: v for k, v in child_env().items() if k not in ("PSS_BENCH_SAMPLE_DATA", "CI")}
    test = "tests/data/test_data_prepare.py::test_prepare_voc_missing_split_exit_1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", test],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout
