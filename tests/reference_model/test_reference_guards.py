"""Hostile configs, checkpoints and runs of the reference model: one line each, nothing half-done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from child_process import child_env
from model_helpers import CATS, tiny_cfg, toy_items
from pss_bench.cli import main
from pss_bench.errors import PssBenchError
from pss_bench.models.config import ConfigError, load_config
from pss_bench.models.checkpoint import CheckpointError, load_checkpoint
from pss_bench.models.train import CHECKPOINT_NAME, FINAL_NAME, train

BUNDLED = Path(__file__).parents[2] / "pss_bench" / "checkpoints" / "pss_synthstreets_tiny.pt"


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    from pss_bench.cli import options

    monkeypatch.setitem(options._state, "debug", False)


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("override, match", [
    ("inference.grid=[0,0]", r"inference\.grid\[0\]: must be at least 1, found 0"),
    ("kmeans.grid=[-2,4]", r"kmeans\.grid\[0\]: must be at least 1, found -2"),
    ("kmeans.grid=[4]", r"kmeans\.grid: expected 2 values"),
    ("train.lr=-1", r"train\.lr: must be greater than 0, found -1"),
    ("train.lr=.nan", r"train\.lr: must be a finite number"),
    ("data.batch_size=0", r"data\.batch_size: must be at least 1, found 0"),
    ("train.iterations=0", r"train\.iterations: must be at least 1, found 0"),
    ("model.embed_dim=0", r"model\.embed_dim: must be at least 1"),
    ("data.scale_range=[2.0,1.0]", r"data\.scale_range: min 2\.0 is larger than max 1\.0"),
    ("train.seed=100000000000000000000000", r"train\.seed: .* out of range"),
    ("inference.grid=[100000,100000]", r"inference\.grid\[0\]: must be at most 256, found 100000"),
    ("inference.seed_nms_kernel=100000000000", r"inference\.seed_nms_kernel: must be at most 255"),
])
def test_config_values_out_of_range_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_config("synthstreets_tiny", [override])
    assert "\n" not in str(info.value)


def test_shipped_configs_are_valid():
    from pss_bench.models.config import shipped_configs

    for name in shipped_configs():
        load_config(name)


@pytest.mark.parametrize("override", ["train.iterations=0", "data.batch_size=0", "train.lr=-1", "inference.grid=[0,0]"])
def test_train_cli_refuses_bad_values_before_writing(override, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "run"
    assert main(["train-reference", "--config", "synthstreets_tiny", "--data", str(data), "--out", str(out), override]) == 1
    err = capsys.readouterr().err
    assert override.split("=")[0] in err and "Traceback" not in err
    assert not out.exists()


# --------------------------------------------------------------------------- checkpoints


def _bundled_payload():
    return torch.load(BUNDLED, map_location="cpu", weights_only=True)


def _save(payload, path: Path) -> Path:
    """A deliberate breakage, checksummed anew where the original carried a checksum: the checks behind it must refuse it."""
    from pss_bench.models.checkpoint import with_checksum

    torch.save(with_checksum(payload) if "checksum" in payload else payload, path)
    return path


def _drop(key):
    def f(p):
        del p[key]
    return f


def _set(key, value):
    def f(p):
        p[key] = value
    return f


def _cat(i, **changes):
    def f(p):
        c = dict(p["categories"][i])
        for k, v in changes.items():
            if v is None:
                c.pop(k)
            else:
                c[k] = v
        p["categories"][i] = c
    return f


def _cfg(section, key, value):
    def f(p):
        p["config"][section][key] = value
    return f


def _nan(p):
    k = next(k for k, v in p["state_dict"].items() if v.is_floating_point())
    p["state_dict"][k] = p["state_dict"][k].clone().fill_(float("nan"))


@pytest.mark.parametrize("breakage, match", [
    (_drop("categories"), r"no 'categories'"),
    (_set("categories", "road,car"), r"'categories' must be a non-empty list"),
    (_set("categories", {"id": 7}), r"'categories' must be a non-empty list"),
    (_cat(0, isthing=None), r"category 7: 'isthing' must be 0 or 1, found None"),
    (_cat(0, id="7"), r"categories\[0\] has no integer 'id'"),
    (_cat(0, name=None), r"category 7 has no string 'name'"),
    (_set("state_dict", [1, 2]), r"'state_dict' must be a dict of tensors, found list"),
    (_set("state_dict", {"w": 3}), r"'state_dict' entry 'w' is not a named tensor"),
    (_set("model", "resnet"), r"unknown architecture 'resnet'"),
    (_cfg("kmeans", "grid", [-1, 4]), r"its config is not valid: kmeans\.grid\[0\]: must be at least 1"),
    (_cfg("model", "fpn_channels", 2**18), r"needs .* GiB for its weights alone, more than the .* GiB of memory"),
    (_cfg("model", "head_channels", 33), r"cannot be built from this config"),
    (_nan, r"weights '.*' hold NaN or infinite values \(a corrupted checkpoint\)"),
])
def test_malformed_checkpoints_are_one_line_checkpoint_errors(breakage, match, tmp_path):
    payload = _bundled_payload()
    breakage(payload)
    path = _save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg


def test_predict_with_a_nan_checkpoint_names_the_checkpoint(tmp_path, capsys):
    from pss_bench.data.synthstreets import generate

    data = tmp_path / "synth"
    generate(data, train=0, val=1, seed=0, height=64, width=128)
    payload = _bundled_payload()
    _nan(payload)
    ckpt = _save(payload, tmp_path / "nan.pt")
    assert main(["predict", str(ckpt), "--data", str(data), "--out", str(tmp_path / "pred")]) == 1
    err = capsys.readouterr().err
    assert "nan.pt" in err and "NaN" in err and "Traceback" not in err
    assert not (tmp_path / "pred").exists()


def test_predict_with_weights_that_overflow_names_the_checkpoint(tmp_path, capsys):
    """Finite weights whose outputs are not (scaled by 1e30): the checkpoint is blamed, one line, nothing written."""
    from pss_bench.data.synthstreets import generate

    data = tmp_path / "synth"
    generate(data, train=0, val=1, seed=0, height=64, width=128)
    payload = _bundled_payload()
    for k, v in payload["state_dict"].items():
        if k.startswith("embed_head") and v.ndim == 4:
            payload["state_dict"][k] = v * 1e30
    ckpt = _save(payload, tmp_path / "huge.pt")
    assert main(["predict", str(ckpt), "--data", str(data), "--out", str(tmp_path / "pred")]) == 1
    err = capsys.readouterr().err
    assert f"{ckpt}: the model outputs NaN or infinite values" in err.replace("\n", "") and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.pt", "synth"]  # no prediction, no staging left


def test_predict_on_a_data_root_of_the_wrong_layout_fails(tmp_path, capsys):
    wrong = tmp_path / "photos"
    wrong.mkdir()
    (wrong / "a.jpg").write_bytes(b"x")
    assert main(["predict", str(BUNDLED), "--data", str(wrong), "--out", str(tmp_path / "pred")]) == 1
    err = capsys.readouterr().err
    assert str(wrong) in err and "Traceback" not in err
    assert not (tmp_path / "pred").exists()


def test_train_on_a_data_root_of_the_wrong_layout_fails(tmp_path, capsys):
    wrong = tmp_path / "photos"
    wrong.mkdir()
    out = tmp_path / "run"
    assert main(["train-reference", "--config", "synthstreets_tiny", "--data", str(wrong), "--out", str(out),
                 "train.iterations=1"]) == 1
    err = capsys.readouterr().err
    assert str(wrong) in err and "Traceback" not in err
    assert not out.exists()


def test_train_cli_refuses_a_model_too_large_for_memory(tmp_path, capsys):
    from pss_bench.data.synthstreets import generate

    generate(tmp_path / "synth", train=1, val=0, seed=0, height=64, width=128)
    out = tmp_path / "run"
    assert main(["train-reference", "--config", "synthstreets_tiny", "--data", str(tmp_path / "synth"), "--out", str(out),
                 "model.fpn_channels=300000", "train.val_every=0"]) == 1
    err = capsys.readouterr().err
    assert "GiB for its weights alone" in err and "Traceback" not in err
    assert not out.exists()


# --------------------------------------------------------------------------- --resume


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory):
    """A run stopped after iteration 4 (checkpoint at 3), and the finished run's model_final.pt."""
    root = tmp_path_factory.mktemp("resume")
    items = toy_items(4)
    train(tiny_cfg(), root / "cut", train_dataset=items, categories=CATS, stop_at=4)
    train(tiny_cfg(), root / "full", train_dataset=items, categories=CATS)
    return root, items


def _copy_run(cut_run, tmp_path) -> Path:
    import shutil

    root, _ = cut_run
    run = tmp_path / "run"
    shutil.copytree(root / "cut", run)
    return run


def _edit_checkpoint(run: Path, fn) -> None:
    """A deliberate edit, checksummed anew: the checks behind the checksum must still refuse it."""
    from pss_bench.models.checkpoint import with_checksum

    p = torch.load(run / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    fn(p)
    torch.save(with_checksum(p), run / CHECKPOINT_NAME)


@pytest.mark.parametrize("edit, extra, match", [
    (_drop("optimizer"), (), r"cannot resume from it: no optimizer"),
    (_drop("iteration"), (), r"cannot resume from it: no iteration"),
    (_set("iteration", -3), (), r"'iteration' must be an integer"),
    (None, ("model.arch=upsnet",), r"the run trains a 'pss' model, the config asks for 'upsnet'"),
    (None, ("model.embed_dim=4",), r"config differs from the run's \(model\.embed_dim: 8 -> 4\)"),
    (None, ("train.lr=0.5",), r"config differs from the run's \(train\.lr: 0\.02 -> 0\.5\)"),
    (lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))), (), r"weights do not fit the config's model"),
])
def test_resume_refuses_what_it_cannot_continue(cut_run, tmp_path, edit, extra, match):
    run = _copy_run(cut_run, tmp_path)
    if edit is not None:
        _edit_checkpoint(run, edit)
    before = (run / "config.yaml").read_text()
    _, items = cut_run
    with pytest.raises(CheckpointError, match=match) as info:
        train(tiny_cfg(*extra), run, train_dataset=items, categories=CATS, resume=True)
    assert "\n" not in str(info.value)
    assert (run / "config.yaml").read_text() == before  # the run's config is not overwritten


def test_resume_from_model_final_is_refused(cut_run, tmp_path):
    root, items = cut_run
    run = _copy_run(cut_run, tmp_path)
    (run / CHECKPOINT_NAME).write_bytes((root / "full" / FINAL_NAME).read_bytes())
    with pytest.raises(CheckpointError, match=r"model_final\.pt holds weights only"):
        train(tiny_cfg(), run, train_dataset=items, categories=CATS, resume=True)


def test_resume_may_change_bookkeeping(cut_run, tmp_path):
    run = _copy_run(cut_run, tmp_path)
    _, items = cut_run
    train(tiny_cfg("train.log_every=2", "data.num_workers=0"), run, train_dataset=items, categories=CATS, resume=True)
    assert (run / FINAL_NAME).is_file()


# --------------------------------------------------------------------------- kills and full disks in training


def test_checkpoint_temp_of_a_killed_run_is_removed_by_resume(cut_run, tmp_path):
    run = _copy_run(cut_run, tmp_path)
    script = tmp_path / "victim.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        import torch
        from model_helpers import CATS, tiny_cfg, toy_items
        from pss_bench.models.train import train
        real = torch.save
        def save(obj, f, *a, **k):
            f.write(b"PK half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = save
        train(tiny_cfg("train.checkpoint_every=1"), {str(run)!r}, train_dataset=toy_items(4), categories=CATS,
              resume=True)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=child_env())
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{CHECKPOINT_NAME}.")
    _, items = cut_run
    train(tiny_cfg(), run, train_dataset=items, categories=CATS, resume=True, stop_at=3)  # stops before any write
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


def test_full_disk_while_saving_a_checkpoint(tmp_path, monkeypatch):
    import errno

    from pss_bench.errors import DiskFullError

    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    with pytest.raises(DiskFullError, match=f"^disk full while writing {run / CHECKPOINT_NAME}$"):
        train(tiny_cfg("train.checkpoint_every=1"), run, train_dataset=toy_items(2), categories=CATS)
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []
    assert not (run / CHECKPOINT_NAME).exists()
