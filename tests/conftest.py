"""Shared fixtures: the real sample data (``$PSS_BENCH_SAMPLE_DATA``) and GT built from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sample_data_root import sample_root


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The shared sample data folder (default ``../shared/data``); skipped when missing, an error under CI=true."""
    root, reason = sample_root()
    if root is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    return root


@pytest.fixture(scope="session")
def cityscapes_train_gt(sample_data, tmp_path_factory) -> tuple[Path, Path]:
    """``(json, png_dir)``: panoptic GT of the 8 real train frames, built by cityscapesscripts."""
    from pss_bench.data.cityscapes import build_panoptic_gt

    out = tmp_path_factory.mktemp("cs_gt")
    return build_panoptic_gt(sample_data / "cityscapes" / "gtFine", "train", out)


@pytest.fixture(scope="session")
def cityscapes_val_gt(sample_data, tmp_path_factory) -> tuple[Path, Path]:
    """``(json, png_dir)``: panoptic GT of the 256x128 real val frame."""
    from pss_bench.data.cityscapes import build_panoptic_gt

    out = tmp_path_factory.mktemp("cs_val_gt")
    return build_panoptic_gt(sample_data / "cityscapes" / "gtFine", "val", out)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's GT cache."""
    monkeypatch.setenv("PSS_BENCH_CACHE_DIR", str(tmp_path / "pss-cache"))


@pytest.fixture()
def no_hang():
    """Fails a test that blocks for two minutes (a FIFO opened for reading, say) instead of hanging the suite.

    SIGALRM interrupts a blocking ``open()`` in the main thread; worker threads
    are not interrupted, so a hang there still shows as a long test.
    """
    import signal

    def _timeout(signum, frame):
        raise TimeoutError("the test hung")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
