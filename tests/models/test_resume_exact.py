"""``--resume`` is exact: a run killed between checkpoints and resumed ends with the same weights and log.

What made it inexact before (issue 26): the trainer restored the global torch
RNG state and then ``iter(loader)`` took a draw from that same generator, which
shifted the stream that PSS's pixel subsampling (``loss.max_pixels``) and
torchvision's RPN / RoI samplers read. Every step now seeds its own draws from
``(seed, rank, iteration)``; these tests force the random consumers to draw
(``loss.max_pixels`` below the labelled pixels of a batch) and fail on the old
trainer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from child_process import child_env
from model_helpers import CATS, UPSNET_SMALL, tiny_cfg, toy_items
from pss_bench.models.checkpoint import CheckpointError, load_checkpoint, tensor_checksum
from pss_bench.models.config import load_config
from pss_bench.models.train import CHECKPOINT_NAME, FINAL_NAME, step_seed, train

UPSNET_SCHEDULE = ["train.iterations=6", "train.checkpoint_every=3", "train.log_every=1", "train.val_every=0",
                   "train.warmup_iterations=2", "upsnet.roi_batch_size=16"]


def _cfg(arch: str):
    if arch == "pss":
        # 2 crops of 32x64 at output stride 2: ~1,000 labelled pixels, of which 256 are drawn each step.
        return tiny_cfg("loss.max_pixels=256", "loss.memory_iterations=1")
    return load_config("synthstreets_tiny", [*UPSNET_SMALL, *UPSNET_SCHEDULE])


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _losses(run: Path) -> list[dict]:
    """The log without its timings: iteration, learning rate, every loss and the gradient norm."""
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in recs]


def _assert_same_run(full: Path, resumed: Path) -> None:
    a, b = _state(full / FINAL_NAME), _state(resumed / FINAL_NAME)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[0]}: max |diff| {float((a[differ[0]] - b[differ[0]]).abs().max())}"
    assert _losses(full) == _losses(resumed)


@pytest.mark.parametrize("arch", ["pss", "upsnet"])
def test_a_kill_between_checkpoints_resumes_to_the_same_weights_and_log(tmp_path, arch):
    items = toy_items(5)
    cut = tmp_path / "cut"
    train(_cfg(arch), cut, train_dataset=items, categories=CATS, stop_at=5)  # killed after step 5; checkpoint at 3
    assert torch.load(cut / CHECKPOINT_NAME, weights_only=True)["iteration"] == 3
    torch.manual_seed(12345)  # whatever the process drew before must not matter
    train(_cfg(arch), cut, train_dataset=items, categories=CATS, resume=True)
    full = tmp_path / "full"
    train(_cfg(arch), full, train_dataset=items, categories=CATS)
    _assert_same_run(full, cut)


def test_pixel_subsampling_is_active_in_the_resume_test():
    """The PSS case above guards the pixel draws only if they happen: the loss must depend on them."""
    from pss_bench.data.transforms import TrainTransform
    from pss_bench.models.data import AugmentedItems, collate
    from pss_bench.models.registry import create_model
    from pss_bench.reference_model.model import PSSTrainingModule

    cfg = _cfg("pss")
    cfg.model.num_classes = len(CATS)
    torch.manual_seed(0)
    net = create_model("pss", cfg.model)
    module = PSSTrainingModule(net, cfg, torch.tensor([c.isthing for c in CATS]))
    data = AugmentedItems(toy_items(2), TrainTransform(cfg.data.crop_size, cfg.data.scale_range, cfg.data.flip), 0)
    batch = collate([data[(0, 0)], data[(0, 1)]])
    values = []
    for s in (step_seed(0, 0, 1), step_seed(0, 0, 2), step_seed(0, 0, 1)):
        torch.manual_seed(s)
        values.append(float(module(batch)[0]["segsort"].detach()))
    assert values[0] != values[1] and values[0] == values[2]


def test_step_seeds_differ_by_seed_rank_and_step():
    seeds = {step_seed(s, r, it) for s in range(3) for r in range(4) for it in range(1, 200)}
    assert len(seeds) == 3 * 4 * 199
    assert all(0 <= s < 2**63 for s in seeds)


# --------------------------------------------------------------------------- corrupted checkpoints


def _flip_tensor_bytes(path: Path, value: int = 0x7F, count: int = 8) -> None:
    """Overwrites ``count`` bytes in the middle of the largest tensor record of a torch zip file."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        name_len = int.from_bytes(header[26:28], "little")
        extra_len = int.from_bytes(header[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(start)
        old = f.read(count)
        assert old != bytes([value]) * count
        f.seek(start)
        f.write(bytes([value]) * count)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(tiny_cfg(), run, train_dataset=toy_items(3), categories=CATS)
    return run


def test_checkpoints_carry_the_checksum_of_their_tensors(finished_run):
    for name in (CHECKPOINT_NAME, FINAL_NAME):
        payload = torch.load(finished_run / name, map_location="cpu", weights_only=True)
        assert payload["checksum"] == tensor_checksum(payload)
    load_checkpoint(finished_run / FINAL_NAME)  # verifies


@pytest.mark.parametrize("name", [CHECKPOINT_NAME, FINAL_NAME])
def test_a_checkpoint_with_flipped_bytes_is_refused_at_load(finished_run, tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes((finished_run / name).read_bytes())
    _flip_tensor_bytes(bad)
    payload = torch.load(bad, map_location="cpu", weights_only=True)  # torch itself reads it without complaint
    assert all(torch.isfinite(v).all() for v in payload["state_dict"].values() if v.is_floating_point())
    with pytest.raises(CheckpointError, match="do not match the checkpoint's checksum") as info:
        load_checkpoint(bad)
    assert str(info.value).startswith(str(bad)) and "\n" not in str(info.value)


def test_resume_from_a_checkpoint_with_flipped_bytes_is_refused(finished_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / FINAL_NAME).unlink()
    _flip_tensor_bytes(run / CHECKPOINT_NAME)
    with pytest.raises(CheckpointError, match="checksum"):
        train(tiny_cfg("train.iterations=8"), run, train_dataset=toy_items(3), categories=CATS, resume=True)


def test_the_checksum_covers_names_shapes_and_dtypes():
    base = {"state_dict": {"a": torch.zeros(4), "b": torch.ones(2, 2)}, "iteration": 3}
    ref = tensor_checksum(base)
    assert tensor_checksum({**base, "checksum": "sha256:x"}) == ref  # the key itself is left out
    assert tensor_checksum({"state_dict": {"b": torch.ones(2, 2), "a": torch.zeros(4)}, "iteration": 3}) == ref
    for other in ({"a": torch.zeros(4), "c": torch.ones(2, 2)}, {"a": torch.zeros(2, 2), "b": torch.ones(2, 2)},
                  {"a": torch.zeros(4, dtype=torch.float64)[:4].float().double(), "b": torch.ones(2, 2)},
                  {"a": torch.zeros(4), "b": torch.ones(4)}):
        assert tensor_checksum({**base, "state_dict": other}) != ref


# --------------------------------------------------------------------------- the shipped config, killed for real


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    from pss_bench.models.config import load_config
    from pss_bench.models.train import train
    overrides = {overrides!r}
    kill_at = {kill_at!r}

    def progress(step, total, record):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train(load_config("synthstreets_tiny", overrides), {run!r}, data_root={data!r}, resume={resume!r},
          progress=progress)
""")


def _run_child(tmp_path: Path, name: str, **fmt) -> subprocess.CompletedProcess:
    script = tmp_path / f"{name}.py"
    script.write_text(KILLER.format(tests=str(Path(__file__).parents[1]), **fmt))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=child_env())


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["pss", "upsnet"])
def test_the_shipped_config_killed_between_checkpoints_resumes_exactly(tmp_path, arch):
    """The shipped ``synthstreets_tiny`` (whole 256x512 frames, batch 4, its pixel subsampling), SIGKILLed at 3 of 6.

    Only the schedule's bookkeeping is overridden; PSS's batch has ~130k
    labelled stride-2 pixels of which ``loss.max_pixels`` (16,384) are drawn.
    """
    from pss_bench.data.synthstreets import generate

    data = tmp_path / "synth"
    generate(data, train=6, val=0, seed=3, height=256, width=512)
    overrides = ["train.iterations=6", "train.checkpoint_every=2", "train.val_every=0", "train.log_every=1"]
    if arch == "upsnet":
        overrides.insert(0, "model.arch=upsnet")
    cfg = load_config("synthstreets_tiny", overrides)
    assert cfg.data.crop_size == [256, 512] and cfg.data.batch_size == 4
    cut, full = tmp_path / "cut", tmp_path / "full"
    proc = _run_child(tmp_path, "killed", overrides=overrides, kill_at=3, run=str(cut), data=str(data), resume=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert torch.load(cut / CHECKPOINT_NAME, weights_only=True)["iteration"] == 2
    proc = _run_child(tmp_path, "resumed", overrides=overrides, kill_at=None, run=str(cut), data=str(data), resume=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _run_child(tmp_path, "full", overrides=overrides, kill_at=None, run=str(full), data=str(data), resume=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_same_run(full, cut)


# --------------------------------------------------------------------------- deterministic CPU kernels


def test_training_on_the_cpu_sums_duplicate_indices_in_a_fixed_order():
    """``x[index]``'s backward sums duplicate indices; torch's threaded CPU kernel does it with atomic adds.

    Outside :func:`deterministic_on_cpu` 19 of 20 repeats here differed from
    the first on 2 threads (the CI failure of 2026-12-07: two UPSNet-style runs
    ended 1 ulp apart in 40-89 tensors on a busy machine).
    """
    from pss_bench.models.train import deterministic_on_cpu

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(8, 64, 128, generator=gen, requires_grad=True)
        g = torch.randn(8, 64, 128, generator=gen)
        idx = torch.tensor([1, 1, 1, 1, 3, 3, 3, 1])
        grads = []
        with deterministic_on_cpu("cpu"):
            for _ in range(20):
                x.grad = None
                x[idx].backward(g)
                grads.append(x.grad.clone())
        assert all(torch.equal(grads[0], gr) for gr in grads)
    finally:
        torch.set_num_threads(threads)


def test_train_switches_deterministic_kernels_on_for_the_cpu_only_and_restores_them(monkeypatch):
    from pss_bench.models import train as train_mod

    seen = []
    monkeypatch.setattr(train_mod, "_train", lambda *a, **k: seen.append(torch.are_deterministic_algorithms_enabled()))
    assert not torch.are_deterministic_algorithms_enabled()
    train_mod.train(tiny_cfg(), "unused", device="cpu")
    train_mod.train(tiny_cfg(), "unused", device="cuda")  # _train is replaced: nothing runs on a GPU
    assert seen == [True, False]
    assert not torch.are_deterministic_algorithms_enabled()
