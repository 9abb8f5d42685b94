"""``compare --report`` and ``make-synthetic`` as writers: kills, full disks, leftovers, processes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from child_process import child_env
from pss_bench.io.panoptic import load_panoptic_json, read_id_png
from pss_bench.io.prediction import PredictionWriter


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """``(result, root)``: a CompareResult of one PQ-only model on a 2-frame SynthStreets val set."""
    from pss_bench.data.synthstreets import generate
    from pss_bench.evaluation.compare import compare_models

    root = tmp_path_factory.mktemp("rep")
    generate(root / "synth", train=0, val=2, seed=2, height=64, width=128)
    gt_json = root / "synth" / "gtFine" / "cityscapes_panoptic_val.json"
    gt = load_panoptic_json(gt_json, role="gt")
    raw = json.loads(gt_json.read_text())
    with PredictionWriter(root / "pred", "m", gt_json=str(gt_json)) as w:
        for ann, rann in zip(gt.annotations, raw["annotations"]):
            w.add_panoptic(ann.image_id, rann["file_name"], read_id_png(gt.png_path(ann)),
                           [{"id": s["id"], "category_id": s["category_id"]} for s in rann["segments_info"]])
        w.commit(categories=raw["categories"])
    result = compare_models([root / "pred"], gt_json, workers=1, use_cache=False)
    return result, root


def _victim(tmp_path: Path, root: Path, rep: Path, body: str) -> None:
    """Writes the report in a child that SIGKILLs itself where ``body`` calls ``die()``."""
    script = tmp_path / "victim.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from pss_bench.evaluation.compare import compare_models
        from pss_bench.report.document import write_report
        def die():
            os.kill(os.getpid(), signal.SIGKILL)
        root, rep = Path({str(root)!r}), Path({str(rep)!r})
        gt_json = root / "synth" / "gtFine" / "cityscapes_panoptic_val.json"
        result = compare_models([root / "pred"], gt_json, workers=1, use_cache=False)
    """) + textwrap.dedent(body))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=child_env())
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_kill_between_the_two_renames_keeps_the_report(compared, tmp_path):
    from pss_bench.report.document import check_report_target, write_report

    result, root = compared
    rep = tmp_path / "rep"
    write_report(result, rep)
    before = (rep / "results.json").read_text()
    _victim(tmp_path, root, rep, """
        from pss_bench.io import atomic
        atomic._exchange = lambda a, b: False  # a file system without an atomic exchange
        real = os.replace
        def replace(a, b):
            real(a, b)
            if Path(a) == rep:  # the old report moved out of the way, the new one not yet in
                die()
        os.replace = replace
        write_report(result, rep)
    """)
    assert not rep.exists()
    check_report_target(rep)  # what the next compare --report does first
    assert (rep / "results.json").read_text() == before
    assert _hidden(tmp_path) == []


def test_kill_while_staging_leaves_nothing_after_the_next_run(compared, tmp_path):
    from pss_bench.report.document import write_report

    result, root = compared
    rep = tmp_path / "rep"
    _victim(tmp_path, root, rep, """
        import pss_bench.report.document as rc
        rc.render = lambda *a, **k: die()
        write_report(result, rep)
    """)
    assert len(_hidden(tmp_path)) == 1 and not rep.exists()  # the killed run's staging folder
    write_report(result, rep)
    assert _hidden(tmp_path) == [] and (rep / "report.md").is_file()


def test_full_disk_while_writing_the_report(compared, tmp_path, monkeypatch):
    from pss_bench.errors import PssBenchError
    from pss_bench.report.document import write_report

    result, _ = compared
    rep = tmp_path / "rep"
    write_report(result, rep)
    before = (rep / "results.json").read_text()
    import io

    real_open = io.open

    def full(path, mode="r", *a, **k):
        if any(c in mode for c in "wax"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("io.open", full)
    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(PssBenchError, match=f"^disk full while writing {rep}$"):
        write_report(result, rep)
    monkeypatch.undo()
    assert (rep / "results.json").read_text() == before
    assert _hidden(tmp_path) == []


def test_make_synthetic_starts_no_more_processes_than_frames(tmp_path, monkeypatch):
    import concurrent.futures

    import pss_bench.data.synthstreets as ss

    started = []

    class Counting(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, max_workers=None, **kw):
            started.append(max_workers)
            super().__init__(max_workers=max_workers, **kw)

    monkeypatch.setattr(ss, "ProcessPoolExecutor", Counting)
    ss.generate(tmp_path / "s", train=2, val=1, seed=0, height=64, width=128, workers=32)
    assert started and max(started) <= 3
    ref = tmp_path / "ref"
    ss.generate(ref, train=2, val=1, seed=0, height=64, width=128, workers=1)
    for f in ref.rglob("*.png"):  # the worker count does not change the output
        assert np.array_equal(np.asarray(__import__("PIL.Image").Image.open(f)),
                              np.asarray(__import__("PIL.Image").Image.open(tmp_path / "s" / f.relative_to(ref))))


@pytest.mark.parametrize("args", [["--train", str(2**70)], ["--height", str(2**70)], ["--width", "100000"],
                                  ["--seed", str(2**70)]])
def test_make_synthetic_refuses_absurd_sizes(tmp_path, args, capsys):
    from pss_bench.cli import main

    assert main(["make-synthetic", str(tmp_path / "s"), *args]) == 2
    assert "is not in the range" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_absurd_sizes(tmp_path):
    from pss_bench.data.synthstreets import generate
    from pss_bench.errors import PssBenchError

    with pytest.raises(PssBenchError, match=r"at most 1000000 frames per split"):
        generate(tmp_path / "s", 2**70, 0)
    with pytest.raises(PssBenchError, match=r"too large \(at most 8192 a side\)"):
        generate(tmp_path / "s", 1, 0, height=2**70)
    assert list(tmp_path.iterdir()) == []


def test_report_and_dataset_respect_the_umask(compared, tmp_path):
    import stat

    from pss_bench.data.synthstreets import generate
    from pss_bench.report.document import write_report

    result, _ = compared
    old = os.umask(0o027)
    try:
        write_report(result, tmp_path / "rep")
        generate(tmp_path / "s", train=1, val=0, seed=0, height=64, width=128)
    finally:
        os.umask(old)
    for root in (tmp_path / "rep", tmp_path / "s"):
        for p in [root, *root.rglob("*")]:
            assert stat.S_IMODE(p.stat().st_mode) == (0o750 if p.is_dir() else 0o640), p
