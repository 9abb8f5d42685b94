"""Training and in-memory validation of any registered model (PSS, the UPSNet-style baseline, ...).

:func:`train` runs single-process or under ``torchrun`` (DistributedDataParallel,
NCCL on CUDA, gloo on CPU). It writes into the run folder::

    RUN/config.yaml           the resolved config
    RUN/log.jsonl             one JSON line per logged iteration / validation
    RUN/checkpoint_last.pt    written atomically every ``train.checkpoint_every``
    RUN/model_final.pt        the final weights, config and categories (no optimizer state)

``resume=True`` restores the model, optimizer, iteration (the learning rate is
a pure function of it) and the training module's own state. No random state
needs restoring: data order and augmentation are functions of ``(seed, epoch,
index)``, and every step starts by seeding torch's global generators (CPU and
CUDA) from ``(seed, rank, iteration)`` (:func:`step_seed`), so whatever a step
draws (PSS's pixel subsampling, torchvision's RPN/RoI samplers, dropout) does
not depend on what was drawn before it, in this process or another. A resumed
run therefore sees the batches and draws an uninterrupted one would have seen;
under DDP each rank's own state (PSS's prototype memory) is saved as
``rank_states`` and restored on that rank. Nothing is printed: progress goes
to the ``progress`` callback, messages to ``logging``.

The trainer knows no architecture: the registered model's training module
(:class:`~pss_bench.models.registry.ModelSpec`) returns ``(losses, aux)`` from
``forward(batch)``; the trainer calls its optional ``after_step(aux)`` after
each optimiser step, and saves its optional ``training_state()`` (PSS: the
prototype memory) into ``checkpoint_last.pt``, restored on ``--resume`` by its
``load_training_state(payload)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from pss_bench.errors import PssBenchError
from pss_bench.io.atomic import append_line, clean_stale
from pss_bench.data.transforms import TrainTransform
from pss_bench.models.checkpoint import load_pretrained_backbone, save_checkpoint_payload, torch_load
from pss_bench.models.config import Config
from pss_bench.models.data import (
    AugmentedItems,
    ResumableBatchSampler,
    build_dataset,
    collate,
    segments_from_item,
)
from pss_bench.models.predict import predict_panoptic
from pss_bench.models.registry import create_model, get_model
from pss_bench.structures import Category

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint_last.pt"
FINAL_NAME = "model_final.pt"
# What only --resume needs; model_final.pt leaves it out, with the training module's own state
# ("rng": global RNG states that checkpoints held before steps were seeded from their iteration).
RESUME_ONLY_KEYS = ("optimizer", "rng", "rank_states")


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of training step ``step`` (1-based) on ``rank``: a hash of the three, in ``[0, 2**63)``.

    Seeding every step from its own number is what makes ``--resume`` exact
    without saving generator states: a draw of one step can never shift the
    draws of a later one (a ``DataLoader``'s ``iter()`` takes one from the
    global generator, for example).
    """
    import hashlib

    digest = hashlib.blake2b(f"pss-bench step {seed} {rank} {step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def training_module(net: nn.Module, cfg: Config, categories: Sequence[Category]) -> nn.Module:
    """Network + losses of the registered model ``cfg.model.arch`` (what DDP wraps)."""
    return get_model(cfg.model.arch).training_module(net, cfg, categories)


def learning_rate(cfg: Config, it: int) -> float:
    """Poly schedule with linear warm-up: a pure function of the iteration."""
    t = cfg.train
    lr = t.lr * (1.0 - min(it, t.iterations) / t.iterations) ** t.poly_power
    if it < t.warmup_iterations:
        alpha = it / t.warmup_iterations
        lr *= t.warmup_factor * (1 - alpha) + alpha
    return lr


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.SGD:
    """SGD with momentum; no weight decay on norm parameters and biases.

    Parameters of a submodule named ``classifier`` (PSS's segment classifier)
    get ``train.classifier_lr_mult`` times the learning rate; every group
    keeps its multiplier in ``lr_mult`` (see :func:`set_learning_rate`).
    """
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_cls = ".classifier." in f".{name}"
        groups.setdefault((is_cls, p.ndim <= 1), []).append(p)
    param_groups = []
    for (is_cls, no_decay), params in sorted(groups.items()):
        param_groups.append({
            "params": params,
            "weight_decay": 0.0 if no_decay else cfg.train.weight_decay,
            "lr_mult": cfg.train.classifier_lr_mult if is_cls else 1.0,
        })
    return torch.optim.SGD(param_groups, lr=cfg.train.lr, momentum=cfg.train.momentum)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Sets every group's learning rate to ``lr`` times its ``lr_mult``."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


def dist_info() -> tuple[int, int, int]:
    """``(rank, world size, local rank)`` of this process; ``(0, 1, 0)`` outside ``torch.distributed``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def init_distributed(device: str) -> bool:
    """Joins the ``torchrun`` process group when ``WORLD_SIZE > 1``; returns whether distributed."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return True


def _move(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


@torch.no_grad()
def evaluate(net, dataset, categories: Sequence[Category], cfg: Config, device, max_images: int = 0):
    """In-memory PQ of ``net`` on ``dataset`` (sharded over ranks, statistics summed).

    Returns:
        :class:`~pss_bench.metrics.pq.PQResult`.
    """
    from pss_bench.metrics.pq import PanopticQuality

    rank, world, _ = dist_info()
    was_training = net.training
    net.eval()
    metric = PanopticQuality(categories)
    n = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    for i in range(rank, n, world):
        item = dataset[i]
        ids, info, _, _ = predict_panoptic(net, item["image"].to(device), categories, cfg)
        gt = segments_from_item(item["panoptic"], item["semantic"], item["crowd"], categories)
        metric.update(item["panoptic"].numpy(), gt, ids.cpu().numpy(), info, image_id=item["image_id"])
    if world > 1:
        metric.all_reduce()
    net.train(was_training)
    return metric.compute()


def _save_atomic(payload: dict, path: Path) -> None:
    """Writes ``payload`` with the checksum of its tensors (:func:`~pss_bench.models.checkpoint.with_checksum`)."""
    from pss_bench.io.atomic import atomic_path
    from pss_bench.models.checkpoint import with_checksum

    payload = with_checksum(payload)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # through a Python file, a full disk raises ENOSPC (not an opaque RuntimeError)
            torch.save(payload, f)


def _rewrite_log(path: Path, upto: int) -> None:
    """Drops log lines past iteration ``upto`` (written after the checkpoint we resume from)."""
    from pss_bench.io.safe_read import read_bytes

    if not path.exists():
        return
    kept = []
    # A damaged line (not JSON, not UTF-8, nested absurdly deep) is dropped like a torn last line.
    for line in read_bytes(path, what="training log").decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        it = rec.get("iteration", 0) if isinstance(rec, dict) else None
        if isinstance(it, int) and not isinstance(it, bool) and it <= upto:
            kept.append(line)
    from pss_bench.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("".join(k + "\n" for k in kept))


@contextlib.contextmanager
def deterministic_on_cpu(device: str):
    """Deterministic kernels while training on the CPU (``torch.use_deterministic_algorithms``); restored after.

    With more than one thread, torch's CPU ``index_put_(accumulate=True)`` (the
    backward of ``x[index]``, whose duplicate indices it sums) adds with atomic
    float additions whose order follows the thread schedule: on a busy machine
    two identical UPSNet-style runs ended 1 ulp apart in 89 tensors, and a
    resumed run differed from an uninterrupted one (CI, 2026-12-07). The
    deterministic kernels add in index order; PSS's numbers do not change
    (it sums no duplicate indices), the UPSNet-style baseline's change in the
    last bits. On CUDA nothing is switched (see ``docs/reference_model.md``).
    """
    if not str(device).startswith("cpu"):
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def train(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    device: str = "cpu",
    resume: bool = False,
    pretrained: str | os.PathLike | None = None,
    train_dataset=None,
    val_dataset=None,
    categories: Sequence[Category] | None = None,
    stop_at: int | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Trains the registered model ``cfg.model.arch``.

    Args:
        cfg: the config (``cfg.model.num_classes`` is set from the categories).
        out_dir: the run folder (created).
        data_root: dataset root for :func:`~pss_bench.models.data.build_dataset`
            (unless ``train_dataset`` / ``categories`` are given).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun: ``cuda:LOCAL_RANK``).
        resume: continue from ``out_dir/checkpoint_last.pt``.
        pretrained: local torchvision ImageNet weights of the backbone.
        train_dataset, val_dataset, categories: in-memory datasets of
            un-augmented training items (tests), instead of ``data_root``.
        stop_at: stop after this iteration as if killed (tests, time limits).
        progress: called as ``progress(iteration, total, record)`` after each step.

    On the CPU the run uses deterministic kernels (:func:`deterministic_on_cpu`),
    so that two runs, and a run and its resumed copy, agree bit for bit.

    Returns:
        The last log record (``iteration``, losses, ``lr``, ...).

    Raises:
        PssBenchError: missing data, checkpoint or pretrained weights.
    """
    with deterministic_on_cpu(device):
        return _train(cfg, out_dir, data_root=data_root, device=device, resume=resume, pretrained=pretrained,
                      train_dataset=train_dataset, val_dataset=val_dataset, categories=categories,
                      stop_at=stop_at, progress=progress)


def _train(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    device: str = "cpu",
    resume: bool = False,
    pretrained: str | os.PathLike | None = None,
    train_dataset=None,
    val_dataset=None,
    categories: Sequence[Category] | None = None,
    stop_at: int | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """The body of :func:`train`."""
    import torch.distributed as dist

    distributed = init_distributed(device)
    rank, world, local_rank = dist_info()
    if distributed and device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PssBenchError("--device cuda: CUDA is not available on this machine")
    dev = torch.device(device)
    out = Path(out_dir)

    if train_dataset is None:
        if data_root is None:
            raise PssBenchError("no training data: give --data ROOT")
        train_dataset, categories = build_dataset(cfg.data.dataset, data_root, cfg.data.train_split)
        if cfg.train.val_every > 0 and val_dataset is None:
            try:
                val_dataset, _ = build_dataset(cfg.data.dataset, data_root, cfg.data.val_split)
            except PssBenchError as exc:
                log.warning("no validation data, validation disabled: %s", exc)
    if categories is None:
        raise PssBenchError("no category list for the training data")
    categories = list(categories)
    cfg.model.num_classes = len(categories)
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    net = create_model(cfg.model.arch, cfg.model, categories=categories, cfg_all=cfg)
    if pretrained is not None:
        load_pretrained_backbone(net, pretrained, cfg.model.backbone)
    module = training_module(net, cfg, categories).to(dev)
    optimizer = build_optimizer(module, cfg)
    start = 0
    ckpt_path = out / CHECKPOINT_NAME
    if resume:
        if not ckpt_path.is_file():
            raise PssBenchError(f"{ckpt_path}: --resume given but there is no checkpoint to resume from")
        from pss_bench.models.checkpoint import read_resume_checkpoint, restore_training_state

        payload = read_resume_checkpoint(ckpt_path, cfg)
        restore_training_state(payload, ckpt_path, net, optimizer, module, rank=rank)
        start = int(payload["iteration"])
        log.info("resumed from %s at iteration %d", ckpt_path, start)
    if rank == 0:
        import yaml

        from pss_bench.io.atomic import atomic_path

        # Created only now: data, model and checkpoint are checked, a refused run leaves no folder behind.
        created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
        out.mkdir(parents=True, exist_ok=True)
        try:
            for name in (CHECKPOINT_NAME, FINAL_NAME, "config.yaml", "log.jsonl"):
                clean_stale(out / name)  # temporaries of a killed run

            with atomic_path(out / "config.yaml") as tmp:
                tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            if resume:
                _rewrite_log(out / "log.jsonl", start)
            elif (out / "log.jsonl").exists():
                (out / "log.jsonl").unlink()
        except BaseException:
            # A failed start (a full disk writing config.yaml) leaves none of the folders it made.
            for p in created:
                with contextlib.suppress(OSError):
                    p.rmdir()  # empty ones only: anything else is not ours to remove
            raise

    def own_state() -> dict:
        return module.training_state() if hasattr(module, "training_state") else {}

    ddp = module
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)

    transform = TrainTransform(cfg.data.crop_size, cfg.data.scale_range, cfg.data.flip)
    items = AugmentedItems(train_dataset, transform, cfg.train.seed)
    sampler = ResumableBatchSampler(len(items), cfg.data.batch_size, cfg.train.seed, rank, world, start)
    loader = torch.utils.data.DataLoader(
        items, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.data.num_workers,
        pin_memory=dev.type == "cuda", persistent_workers=cfg.data.num_workers > 0,
    )
    total = cfg.train.iterations
    end = total if stop_at is None else min(total, stop_at)
    record: dict = {"iteration": start}
    t_last, it_last = time.perf_counter(), start
    module.train()
    data_iter = iter(loader)
    for it in range(start, end):
        batch = _move(next(data_iter), dev)
        lr = learning_rate(cfg, it)
        set_learning_rate(optimizer, lr)
        step = it + 1
        torch.manual_seed(step_seed(cfg.train.seed, rank, step))  # CPU and every CUDA device
        losses, aux = ddp(batch)
        # One host sync for all loss values: the guard runs before backward,
        # so a non-finite loss never reaches the weights (or, on a GPU, a
        # gather/scatter with indices derived from NaNs).
        loss_vals = dict(zip(losses, torch.stack([v.detach().float() for v in losses.values()]).tolist()))
        bad = [k for k, v in loss_vals.items() if k != "total" and not math.isfinite(v)]
        bad = bad or [k for k, v in loss_vals.items() if not math.isfinite(v)]
        if bad:
            raise PssBenchError(
                f"iteration {step}: loss {bad[0]!r} is {loss_vals[bad[0]]} at learning rate {lr:.4g} "
                f"(all losses: {', '.join(f'{k}={v:.4g}' for k, v in loss_vals.items())}); "
                "lower train.lr, lengthen train.warmup_iterations or set train.clip_grad_norm"
            )
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        grad_norm = None
        if cfg.train.clip_grad_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.train.clip_grad_norm))
            if not math.isfinite(grad_norm):
                raise PssBenchError(
                    f"iteration {step}: the gradient norm is {grad_norm} at learning rate {lr:.4g} "
                    f"(losses: {', '.join(f'{k}={v:.4g}' for k, v in loss_vals.items())}); the weights were not updated"
                )
        optimizer.step()
        if hasattr(module, "after_step"):
            module.after_step(aux)
        record = {"iteration": step, "lr": lr, **{f"loss_{k}": v for k, v in loss_vals.items()}}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        if cfg.train.log_every > 0 and (step % cfg.train.log_every == 0 or step == end):
            if distributed:  # log the mean over ranks
                keys = sorted(loss_vals)
                t = torch.tensor([loss_vals[k] for k in keys], dtype=torch.float64,
                                 device=dev if dev.type == "cuda" else "cpu")
                dist.all_reduce(t)
                record.update({f"loss_{k}": float(v) / world for k, v in zip(keys, t.tolist())})
            now = time.perf_counter()
            record["images_per_s"] = (step - it_last) * cfg.data.batch_size * world / max(now - t_last, 1e-9)
            t_last, it_last = now, step
            if rank == 0:
                append_line(out / "log.jsonl", json.dumps(record))
        if cfg.train.checkpoint_every > 0 and (step % cfg.train.checkpoint_every == 0 or step == total):
            states = own_state()
            if distributed and states:  # each rank's own state (PSS: its prototype memory), restored per rank
                gathered: list = [None] * world
                dist.all_gather_object(gathered, states)
                states = {**states, "rank_states": gathered}
            if rank == 0:
                payload = save_checkpoint_payload(
                    net, cfg, categories, iteration=step, optimizer=optimizer.state_dict(), **states,
                )
                _save_atomic(payload, ckpt_path)
        if val_dataset is not None and cfg.train.val_every > 0 and (step % cfg.train.val_every == 0 or step == total):
            res = evaluate(net, val_dataset, categories, cfg, dev, cfg.data.val_max_images)
            rec = {"iteration": step, "val": {k: (v.to_dict() if v is not None else None) for k, v in
                                               (("all", res.all), ("things", res.things), ("stuff", res.stuff))}}
            record["val_pq"] = res.all.pq if res.all is not None else None
            if rank == 0:
                append_line(out / "log.jsonl", json.dumps(rec))
        if progress is not None:
            progress(step, total, record)
    if rank == 0 and end == total and ckpt_path.exists():
        # The shipped model: weights, config and categories, without the
        # optimizer state, RNG states and the module's own state that only --resume needs.
        payload = torch_load(ckpt_path)
        drop = {*RESUME_ONLY_KEYS, *own_state()}
        _save_atomic({k: v for k, v in payload.items() if k not in drop}, out / FINAL_NAME)
    return record
