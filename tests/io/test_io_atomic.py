"""The atomic writer: permissions, full disks, leftovers of killed runs, interrupted replacements."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from child_process import child_env
from pss_bench.io import atomic
from pss_bench.io.atomic import write_json_atomic
from pss_bench.io.prediction import PredictionWriter


@pytest.fixture
def umask():
    """Sets the process umask for one test, restoring it afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


# --------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_files_respect_the_umask(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    write_json_atomic(tmp_path / "out.json", {"a": 1})
    assert _mode(tmp_path / "out.json") == _mode(plain) == 0o666 & ~mask


def test_prediction_directory_respects_the_umask(tmp_path, umask):
    umask(0o022)
    with PredictionWriter(tmp_path / "pred", "m") as w:
        w.add_panoptic("a", "a.png", np.ones((4, 4), np.int64), [{"id": 1, "category_id": 1}])
        w.add_embeddings("a", np.array([1]), np.ones((1, 2), np.float32))
        w.commit()
    pred = tmp_path / "pred"
    assert _mode(pred) == 0o755
    for p in pred.rglob("*"):
        assert _mode(p) == (0o755 if p.is_dir() else 0o644), p


# --------------------------------------------------------------------------- full disk


class _FullFile:
    """A writable file that fails like a full disk after ``room`` bytes."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _full_open(room: int = 3):
    real_open = open

    def fake(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return _FullFile(f, room) if any(c in mode for c in "wa") else f

    return fake


def test_full_disk_is_one_error_naming_the_target_and_leaves_nothing(tmp_path, monkeypatch):
    from pss_bench.errors import PssBenchError

    monkeypatch.setattr("builtins.open", _full_open())
    target = tmp_path / "out.json"
    with pytest.raises(PssBenchError) as info:
        write_json_atomic(target, {"a": "x" * 100})
    assert str(info.value) == f"disk full while writing {target}"
    assert isinstance(info.value, OSError)  # callers that tolerate a failed optional write still catch it
    assert list(tmp_path.iterdir()) == []


def test_full_disk_in_a_prediction_directory_names_the_directory(tmp_path, monkeypatch):
    from pss_bench.errors import PssBenchError

    with pytest.raises(PssBenchError, match=f"^disk full while writing {tmp_path / 'pred'}$"):
        with PredictionWriter(tmp_path / "pred", "m") as w:
            w.add_embeddings("a", np.array([1]), np.ones((1, 2), np.float32))
            monkeypatch.setattr("builtins.open", _full_open())
            w.add_embeddings("b", np.array([1]), np.ones((1, 2), np.float32))
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_appending_a_line_leaves_no_partial_line(tmp_path):
    from pss_bench.errors import DiskFullError
    from pss_bench.io.atomic import append_line

    log = tmp_path / "log.jsonl"
    append_line(log, '{"iteration": 1}')

    real_open = open

    def fake(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)

        class Half:
            def __getattr__(self, name):
                return getattr(f, name)

            def write(self, data):
                f.write(data[:5])
                f.flush()
                raise OSError(errno.ENOSPC, "No space left on device")

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

        return Half()

    import builtins

    orig = builtins.open
    builtins.open = fake
    try:
        with pytest.raises(DiskFullError, match="disk full while writing .*log.jsonl"):
            append_line(log, '{"iteration": 2}')
    finally:
        builtins.open = orig
    assert log.read_text() == '{"iteration": 1}\n'


def test_cli_turns_an_unconverted_full_disk_into_one_line(monkeypatch, capsys, tmp_path):
    """Any ENOSPC reaching the command line is one line, exit 1 (defence in depth)."""
    from pss_bench import cli

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.png"))

    monkeypatch.setattr("pss_bench.cli.make_synthetic.command.callback", boom)
    assert cli.main(["make-synthetic", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "disk full while writing" in err and "x.png" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_turns_running_out_of_memory_into_one_line(monkeypatch, capsys, tmp_path):
    from pss_bench import cli

    def boom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr("pss_bench.cli.make_synthetic.command.callback", boom)
    assert cli.main(["make-synthetic", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: out of memory: the inputs or settings ask for more than this machine has"


# --------------------------------------------------------------------------- leftovers of killed runs


def _run_and_kill(code: str, tmp_path: Path) -> None:
    """Runs ``code`` in a fresh interpreter, which SIGKILLs itself where the code says ``die()``."""
    script = tmp_path / "victim.py"
    script.write_text(
        "import os, signal\n"
        "def die():\n    os.kill(os.getpid(), signal.SIGKILL)\n" + textwrap.dedent(code)
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=child_env())
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_temp_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    out = tmp_path / "out.json"
    _run_and_kill(f"""
        from pss_bench.io.atomic import atomic_path
        with atomic_path({str(out)!r}) as tmp:
            tmp.write_text("half")
            die()
    """, tmp_path)
    assert len(_hidden(tmp_path)) == 1  # the leftover
    write_json_atomic(out, {"a": 1})
    assert _hidden(tmp_path) == []
    assert json.loads(out.read_text()) == {"a": 1}


def test_a_write_in_progress_is_not_mistaken_for_a_leftover(tmp_path):
    out = tmp_path / "out.json"
    with atomic.atomic_path(out) as tmp:
        tmp.write_text("{}")
        write_json_atomic(out, {"other": 1})  # a second writer of the same target, same live process
        assert tmp.exists()
    assert json.loads(out.read_text()) == {}


def test_staging_folder_of_a_killed_prediction_writer_is_removed(tmp_path):
    pred = tmp_path / "pred"
    _run_and_kill(f"""
        import numpy as np
        from pss_bench.io.prediction import PredictionWriter
        w = PredictionWriter({str(pred)!r}, "m")
        w.add_embeddings("a", np.array([1]), np.ones((1, 2), np.float32))
        die()
    """, tmp_path)
    assert len(_hidden(tmp_path)) == 1
    with PredictionWriter(pred, "m") as w:
        w.commit()
    assert _hidden(tmp_path) == [] and (pred / "manifest.json").is_file()


def test_interrupted_replacement_of_a_prediction_directory_is_repaired(tmp_path):
    """A kill between 'old out of the way' and 'new into place' must not lose the directory."""
    pred = tmp_path / "pred"
    with PredictionWriter(pred, "old") as w:
        w.commit()
    _run_and_kill(f"""
        import os
        from pss_bench.io import atomic
        from pss_bench.io.prediction import PredictionWriter
        atomic._exchange = lambda a, b: False  # a file system without an atomic exchange
        real, calls = os.replace, []
        def replace(a, b):
            calls.append(a)
            if len(calls) == 3:  # manifest.json, panoptic.json, then the folder swap
                real(a, b)
                die()
            return real(a, b)
        os.replace = replace
        with PredictionWriter({str(pred)!r}, "new", overwrite=True) as w:
            w.commit()
    """, tmp_path)
    assert not pred.exists()  # the window the issue describes
    atomic.clean_stale(pred)  # what the next run does before writing there
    assert json.loads((pred / "manifest.json").read_text())["model"] == "old"
    assert _hidden(tmp_path) == []


def test_replacing_a_directory_keeps_no_old_copy(tmp_path):
    pred = tmp_path / "pred"
    for model in ("one", "two"):
        with PredictionWriter(pred, model, overwrite=True) as w:
            w.commit()
    assert json.loads((pred / "manifest.json").read_text())["model"] == "two"
    assert _hidden(tmp_path) == []


def test_staging_area_keeps_what_was_moved_out_and_removes_the_rest(tmp_path):
    target = tmp_path / "out"
    with atomic.staging_area(target) as stage:
        (stage / "keep").mkdir()
        (stage / "scratch.txt").write_text("x")
        atomic.publish_dir(stage / "keep", target)
        os.replace(stage / "scratch.txt", tmp_path / "moved.txt")
        (stage / "left.txt").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moved.txt", "out"]

    with pytest.raises(RuntimeError):
        with atomic.staging_area(target) as stage:
            (stage / "partial").write_text("z")
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moved.txt", "out"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_refused_prediction_writer_leaves_no_staging_folder(tmp_path, overwrite):
    out = tmp_path / "out"
    out.mkdir()
    (out / "theirs.txt").write_text("not a prediction directory")
    with pytest.raises(Exception, match="out"):
        PredictionWriter(out, "m", overwrite=overwrite)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]


def test_a_prediction_writer_commits_once_and_abort_after_commit_keeps_the_result(tmp_path):
    out = tmp_path / "out"
    with PredictionWriter(out, "m") as w:
        w.add_panoptic(1, "1.png", np.ones((2, 3), np.uint32), [{"id": 1, "category_id": 1}])
        assert w.commit() == out
    w.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "panoptic", "panoptic.json"]
