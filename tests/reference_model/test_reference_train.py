"""Training of the reference model: exact resume, DDP equivalence, one run end to end."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from model_helpers import CATS, UPSNET_SMALL, tiny_cfg, toy_items
from pss_bench.models.config import load_config
from pss_bench.models.checkpoint import load_checkpoint
from pss_bench.models.train import FINAL_NAME, build_optimizer, learning_rate, set_learning_rate, train


def _weights(path):
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload["state_dict"]


def test_learning_rate_poly_with_warmup():
    cfg = tiny_cfg("train.iterations=100", "train.warmup_iterations=10", "train.lr=1.0")
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 10) == pytest.approx((1 - 0.1) ** 0.9)
    assert learning_rate(cfg, 100) == 0.0


def test_kill_and_resume_gives_same_weights(tmp_path):
    items = toy_items(5)
    full = tmp_path / "full"
    train(tiny_cfg(), full, train_dataset=items, categories=CATS)
    cut = tmp_path / "cut"
    train(tiny_cfg(), cut, train_dataset=items, categories=CATS, stop_at=4)  # "killed" after step 4
    assert not (cut / FINAL_NAME).exists()
    assert torch.load(cut / "checkpoint_last.pt", weights_only=True)["iteration"] == 3
    train(tiny_cfg(), cut, train_dataset=items, categories=CATS, resume=True)
    a, b = _weights(full / FINAL_NAME), _weights(cut / FINAL_NAME)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The log holds each iteration once, in order.
    import json

    iters = [json.loads(line)["iteration"] for line in (cut / "log.jsonl").read_text().splitlines()]
    assert iters == [1, 2, 3, 4, 5, 6]
    # The final checkpoint loads as a model.
    model, cfg, cats, _ = load_checkpoint(cut / FINAL_NAME)
    assert cats == CATS and not model.training


def test_resume_without_checkpoint_is_an_error(tmp_path):
    from pss_bench.errors import PssBenchError

    with pytest.raises(PssBenchError, match="no checkpoint to resume from"):
        train(tiny_cfg(), tmp_path / "r", train_dataset=toy_items(2), categories=CATS, resume=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_cfg(arch):
    # after the toy-size overrides: one image per rank
    extra = [*UPSNET_SMALL, "upsnet.roi_batch_size=16"] if arch == "upsnet" else ["loss.max_pixels=256"]
    return tiny_cfg(*extra, "data.batch_size=1", "train.iterations=1", "train.checkpoint_every=1",
                    "loss.memory_iterations=0")


def _ddp_worker(rank, world, port, out, items, threads, cfg, stop_at=None, resume=False):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    # k-means assignments are discrete: the same float rounding (thread count) as the reference matters.
    torch.set_num_threads(threads)
    import torch.distributed as dist

    try:
        train(cfg, out, train_dataset=items, categories=CATS, stop_at=stop_at, resume=resume)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize("arch", ["pss", "upsnet"])
def test_two_process_gloo_ddp_step_equals_single_process(tmp_path, arch):
    """Two gloo ranks with one image each == one process averaging the two per-rank gradients.

    Each rank's random draws (PSS's pixel subsampling, the RPN / RoI samplers)
    come from its own step seed, which the reference reproduces.
    """
    import torch.multiprocessing as mp

    from pss_bench.data.transforms import TrainTransform
    from pss_bench.models.data import AugmentedItems, ResumableBatchSampler, collate
    from pss_bench.models.registry import create_model
    from pss_bench.models.train import step_seed, training_module

    items = toy_items(4)
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), out, items, torch.get_num_threads(), _ddp_cfg(arch)), nprocs=2,
             join=True)
    ddp_w = _weights(out / FINAL_NAME)

    cfg = _ddp_cfg(arch)
    cfg.model.num_classes = len(CATS)
    torch.manual_seed(cfg.train.seed)
    net = create_model(arch, cfg.model, categories=CATS, cfg_all=cfg)
    module = training_module(net, cfg, CATS)
    opt = build_optimizer(module, cfg)
    data = AugmentedItems(items, TrainTransform(cfg.data.crop_size, cfg.data.scale_range, cfg.data.flip), cfg.train.seed)
    samplers = [ResumableBatchSampler(len(items), 1, cfg.train.seed, r, 2) for r in range(2)]
    for it in range(cfg.train.iterations):
        set_learning_rate(opt, learning_rate(cfg, it))
        opt.zero_grad()
        for r, s in enumerate(samplers):
            torch.manual_seed(step_seed(cfg.train.seed, r, it + 1))
            losses, _ = module(collate([data[k] for k in s.batch_at(it)]))
            (losses["total"] / 2).backward()
        if cfg.train.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.train.clip_grad_norm)
        opt.step()
    ref = net.state_dict()
    for k in ref:
        assert torch.allclose(ref[k], ddp_w[k], atol=1e-5, rtol=1e-4), k
    # And the step did something.
    torch.manual_seed(cfg.train.seed)
    init = create_model(arch, cfg.model, categories=CATS, cfg_all=cfg).state_dict()
    assert any(not torch.allclose(init[k], ddp_w[k]) for k in init if init[k].is_floating_point())


@pytest.mark.slow
def test_a_ddp_run_with_a_prototype_memory_resumes_exactly(tmp_path):
    """Two gloo ranks, each with its own prototype memory: killed at 3 (checkpoint at 2), resumed, equal to a full run.

    Before each rank's memory was saved (``rank_states``), every rank restored rank 0's.
    """
    import torch.multiprocessing as mp

    items = toy_items(6)
    threads = torch.get_num_threads()
    cfg = tiny_cfg("data.batch_size=1", "train.iterations=5", "train.checkpoint_every=2", "loss.memory_iterations=2",
                   "loss.max_pixels=256")
    cut, full = tmp_path / "cut", tmp_path / "full"
    mp.spawn(_ddp_worker, args=(2, _free_port(), cut, items, threads, cfg, 3, False), nprocs=2, join=True)
    saved = torch.load(cut / "checkpoint_last.pt", weights_only=True)
    assert saved["iteration"] == 2 and len(saved["rank_states"]) == 2
    mem = [s["memory"]["items"] for s in saved["rank_states"]]
    assert mem[0] and not all(torch.equal(a, b) for a, b in zip(mem[0][0], mem[1][0]))  # the ranks' memories differ
    mp.spawn(_ddp_worker, args=(2, _free_port(), cut, items, threads, cfg, None, True), nprocs=2, join=True)
    mp.spawn(_ddp_worker, args=(2, _free_port(), full, items, threads, cfg, None, False), nprocs=2, join=True)
    a, b = _weights(full / FINAL_NAME), _weights(cut / FINAL_NAME)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert "rank_states" not in torch.load(cut / FINAL_NAME, weights_only=True)


def test_train_with_validation_logs_pq(tmp_path):
    items = toy_items(4)
    rec = train(tiny_cfg("train.iterations=2", "train.val_every=2"), tmp_path / "v", train_dataset=items,
                val_dataset=toy_items(2, seed=9), categories=CATS)
    assert 0.0 <= rec["val_pq"] <= 1.0
    assert "val" in (tmp_path / "v" / "log.jsonl").read_text()


def test_a_non_finite_loss_stops_before_backward_with_a_clear_message(tmp_path):
    from pss_bench.errors import PssBenchError

    items = toy_items(2)
    for it in items:
        it["image"][:] = float("nan")
    cfg = tiny_cfg("train.checkpoint_every=1")
    with pytest.raises(PssBenchError, match=r"iteration 1: loss '(segsort|classifier|seed)' is nan at learning rate [0-9.e-]+ .*lower train.lr"):
        train(cfg, tmp_path / "nan", train_dataset=items, categories=CATS)
    assert not (tmp_path / "nan" / "checkpoint_last.pt").exists()  # nothing was stepped, nothing saved


def test_gradient_clipping_bounds_the_update_and_is_logged(tmp_path):
    import json

    cfg = tiny_cfg("train.iterations=1", "train.checkpoint_every=1", "train.clip_grad_norm=0.001", "train.lr=1.0",
                   "train.warmup_iterations=0", "train.weight_decay=0.0", "train.momentum=0.0")
    cfg.model.num_classes = len(CATS)
    torch.manual_seed(cfg.train.seed)
    from pss_bench.models.registry import create_model

    init = create_model("pss", cfg.model).state_dict()
    train(cfg, tmp_path / "clip", train_dataset=toy_items(2), categories=CATS)
    after = _weights(tmp_path / "clip" / "checkpoint_last.pt")
    step = torch.sqrt(sum(((after[k] - init[k]).float() ** 2).sum() for k in init if init[k].is_floating_point()))
    # classifier parameters move with lr * classifier_lr_mult, the rest with lr: |update| <= lr * mult * clip
    assert 0 < float(step) <= cfg.train.classifier_lr_mult * 0.001 * 1.0001
    rec = json.loads((tmp_path / "clip" / "log.jsonl").read_text().splitlines()[0])
    assert rec["grad_norm"] > 0.001  # the norm before clipping


def test_classifier_gets_its_own_learning_rate():
    cfg = tiny_cfg("train.classifier_lr_mult=7.0", "train.lr=0.1")
    cfg.model.num_classes = len(CATS)
    from pss_bench.models.registry import create_model

    net = create_model("pss", cfg.model)
    opt = build_optimizer(net, cfg)
    set_learning_rate(opt, 0.1)
    cls_params = {id(p) for p in net.classifier.parameters()}
    for g in opt.param_groups:
        is_cls = all(id(p) in cls_params for p in g["params"])
        assert is_cls or not any(id(p) in cls_params for p in g["params"])
        assert g["lr"] == pytest.approx(0.7 if is_cls else 0.1)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))


@pytest.mark.slow
def test_the_shipped_tiny_config_trains_200_iterations_after_a_5_iteration_warm_up(tmp_path):
    """The fast warm-up that diverged to NaN within 20 iterations on an H200 (clipping on, as shipped)."""
    import json
    import math

    from pss_bench.data.synthstreets import generate
    from pss_bench.models.data import build_dataset

    generate(tmp_path / "synth", train=8, val=0, seed=0)
    ds, cats = build_dataset("synthstreets", tmp_path / "synth", "train")
    items = [ds[i] for i in range(len(ds))]
    cfg = load_config("synthstreets_tiny", ["train.warmup_iterations=5", "train.iterations=200", "train.val_every=0",
                                            "train.checkpoint_every=200", "train.log_every=10"])
    assert cfg.train.clip_grad_norm > 0
    train(cfg, tmp_path / "run", train_dataset=items, categories=cats)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log][-1] == 200
    assert all(math.isfinite(v) for r in log for k, v in r.items() if k.startswith("loss_") or k == "grad_norm")
    assert sum(r["loss_total"] for r in log[-5:]) / 5 < log[0]["loss_total"]
    _, _, _, payload = load_checkpoint(tmp_path / "run" / FINAL_NAME)
    assert all(torch.isfinite(v).all() for v in payload["state_dict"].values() if v.is_floating_point())
