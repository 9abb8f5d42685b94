"""Checkpoints of any registered model: read, check, rebuild; ImageNet backbone weights.

Follows timm's split: :func:`~pss_bench.models.registry.create_model` builds
an architecture and never touches files; this module reads weights with
``torch.load(..., weights_only=True)``. A checkpoint is the dict
:func:`save_checkpoint_payload` writes: ``model`` (the registered name),
``state_dict``, ``config``, ``categories`` and, in a run's
``checkpoint_last.pt``, what ``--resume`` needs.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from pss_bench.errors import PssBenchError
from pss_bench.models.registry import create_model, is_registered, list_models

PRETRAINED_HINT = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-cd907fc2.pth",
}


class CheckpointError(PssBenchError):
    """A checkpoint or weight file is missing or does not fit the model."""


def torch_load(path: Path):
    """Reads a torch file with ``weights_only=True`` (regular files only).

    Raises:
        CheckpointError: a missing, special or unreadable file, or a refused pickle.
    """
    import torch

    from pss_bench.io.safe_read import open_regular

    try:
        with open_regular(path, None, CheckpointError) as f:  # regular files only: a FIFO would block
            return torch.load(f, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # unpickling refused or corrupt file
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch file ({exc.__class__.__name__}: {exc})") from None


def load_pretrained_backbone(model, path: str | os.PathLike | None, backbone: str) -> None:
    """Loads ImageNet weights of a torchvision ResNet into ``model.backbone.body``.

    Args:
        model: a network with a ``backbone.body`` (PSS or the UPSNet-style baseline).
        path: a local ``.pth`` file (torchvision's state dict).
        backbone: the backbone name, for the error message.

    Raises:
        CheckpointError: the file is missing (the message says what to
            download where) or its tensors do not fit.
    """
    if backbone not in PRETRAINED_HINT:
        raise CheckpointError(f"{path}: backbone {backbone!r} has no ImageNet weights; train it from scratch (no --pretrained)")
    url = PRETRAINED_HINT[backbone]
    if path is None or not Path(path).is_file():
        raise CheckpointError(
            f"{path}: pretrained {backbone} weights not found; download {url} "
            f"(torchvision {backbone} IMAGENET1K_V1) and pass its local path with --pretrained"
        )
    state = torch_load(Path(path))
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = model.backbone.body.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the {backbone} backbone ({str(exc).splitlines()[1].strip()})") from None
    # FrozenBatchNorm2d has no num_batches_tracked; GroupNorm has no running stats.
    bad = [k for k in unexpected if not k.endswith(("num_batches_tracked", "running_mean", "running_var"))]
    if bad or len(missing) == len(list(model.backbone.body.state_dict())):
        raise CheckpointError(f"{path}: not a torchvision {backbone} state dict (unexpected keys {bad[:5]})")


def save_checkpoint_payload(model, cfg, categories, **extra) -> dict:
    """The dict a checkpoint holds: weights, config and category table (plain types only)."""
    return {
        "model": cfg.model.arch,
        "state_dict": model.state_dict(),
        "config": cfg.to_dict(),
        "categories": [dataclasses.asdict(c) for c in categories],
        **extra,
    }


CHECKSUM_KEY = "checksum"


def tensor_checksum(payload: dict) -> str:
    """SHA-256 of every tensor of ``payload`` (names, dtypes, shapes and bytes), the checksum key left out.

    Dicts are visited in sorted key order and lists in order, so the digest
    does not depend on how the file was pickled. Plain values (config,
    categories, iteration) are not covered: a flipped byte there breaks the
    unpickling or the checks of :func:`read_checkpoint`; a flipped byte in a
    tensor is only caught here (most flipped float bytes are still finite).
    """
    import hashlib

    import torch

    h = hashlib.sha256()

    def visit(obj, where: str) -> None:
        if torch.is_tensor(obj):
            t = obj.detach().cpu().contiguous().reshape(-1)
            h.update(f"{where}|{t.dtype}|{tuple(obj.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, dict):
            for k in sorted(obj, key=repr):
                if not (where == "" and k == CHECKSUM_KEY):
                    visit(obj[k], f"{where}/{k!r}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                visit(v, f"{where}/{i}")

    visit(payload, "")
    return "sha256:" + h.hexdigest()


def with_checksum(payload: dict) -> dict:
    """``payload`` with ``checksum`` set to :func:`tensor_checksum` of the rest (a new dict)."""
    rest = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    return {**rest, CHECKSUM_KEY: tensor_checksum(rest)}


def verify_checksum(payload: dict, where: str) -> None:
    """Refuses a payload whose tensors do not match its ``checksum`` (one written before checksums passes).

    Raises:
        CheckpointError: the stored checksum is malformed or differs.
    """
    stored = payload.get(CHECKSUM_KEY)
    if stored is None:
        return
    if not isinstance(stored, str) or not stored.startswith("sha256:"):
        raise CheckpointError(f"{where}: 'checksum' must be a 'sha256:...' string, found {stored!r}")
    if tensor_checksum(payload) != stored:
        raise CheckpointError(
            f"{where}: the tensors do not match the checkpoint's checksum (the file is corrupted: "
            "a damaged copy or disk); use another copy, or resume from an earlier checkpoint"
        )


def _check_categories(raw, where: str) -> list:
    from pss_bench.structures import Category

    if not isinstance(raw, list) or not raw:
        raise CheckpointError(f"{where}: 'categories' must be a non-empty list of {{id, name, isthing}}, found {type(raw).__name__}")
    out, seen = [], set()
    for i, c in enumerate(raw):
        if not isinstance(c, dict):
            raise CheckpointError(f"{where}: categories[{i}] must be a dict {{id, name, isthing}}, found {type(c).__name__}")
        cid, name, isthing = c.get("id"), c.get("name"), c.get("isthing")
        if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid < 2**31:
            raise CheckpointError(f"{where}: categories[{i}] has no integer 'id' in [0, 2**31) (found {cid!r})")
        if cid in seen:
            raise CheckpointError(f"{where}: category id {cid} is listed twice")
        if not isinstance(name, str):
            raise CheckpointError(f"{where}: category {cid} has no string 'name' (found {type(name).__name__})")
        if isthing not in (0, 1, True, False) or isinstance(isthing, float):
            raise CheckpointError(f"{where}: category {cid}: 'isthing' must be 0 or 1, found {isthing!r}")
        seen.add(cid)
        out.append(Category(cid, name, bool(isthing)))
    return out


def _check_state_dict(state, where: str) -> None:
    import torch

    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: 'state_dict' must be a dict of tensors, found {type(state).__name__}")
    for k, v in state.items():
        if not isinstance(k, str) or not torch.is_tensor(v):
            raise CheckpointError(f"{where}: 'state_dict' entry {k!r} is not a named tensor (found {type(v).__name__})")
        if v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{where}: weights {k!r} hold NaN or infinite values (a corrupted checkpoint)")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, object, list]:
    """Reads and checks a checkpoint written by training, without building the model.

    Returns:
        ``(payload, cfg, categories)``: the raw dict, its :class:`~pss_bench.models.config.Config`
        (``model.num_classes`` set from the categories) and its list of
        :class:`~pss_bench.structures.Category`.

    Raises:
        CheckpointError: a missing or unreadable file, or a payload that is
            not a checkpoint: ``state_dict`` not a dict of finite tensors,
            ``categories`` missing or malformed, a config that is not valid,
            an unknown architecture. One line naming the file.
    """
    from pss_bench.models.config import ConfigError, config_from_dict

    path = Path(path)
    payload = torch_load(path)
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise CheckpointError(f"{path}: not a pss-bench reference-model checkpoint (no state_dict/config)")
    if "categories" not in payload:
        raise CheckpointError(f"{path}: no 'categories' (the dataset's category list the model was trained on)")
    verify_checksum(payload, str(path))
    arch = payload.get("model")
    if arch is None:  # written before the registry: its default model
        from pss_bench.models.registry import default_model

        arch = default_model()
    if not isinstance(arch, str) or not is_registered(arch):
        raise CheckpointError(f"{path}: unknown architecture {arch!r} (known: {', '.join(list_models())})")
    categories = _check_categories(payload["categories"], str(path))
    _check_state_dict(payload["state_dict"], str(path))
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"{path}: 'config' must be a dict, found {type(payload['config']).__name__}")
    config = payload["config"]
    if isinstance(config.get("loss"), dict) and "seed_loss" not in config["loss"]:
        # written before the focal seed loss existed: its seed head regressed a heatmap
        payload = {**payload, "config": {**config, "loss": {**config["loss"], "seed_loss": "mse"}}}
    try:
        cfg = config_from_dict(payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config is not valid: {exc}") from None
    if cfg.model.arch != arch:
        raise CheckpointError(f"{path}: written by a {arch!r} model but its config says model.arch={cfg.model.arch!r}")
    cfg.model.num_classes = len(categories)
    return payload, cfg, categories


def load_checkpoint(path: str | os.PathLike, *, device: str = "cpu"):
    """Rebuilds a model from a checkpoint written by training.

    Returns:
        ``(model, cfg, categories, payload)``: the model in eval mode on
        ``device``, its :class:`~pss_bench.models.config.Config`, its list of
        :class:`~pss_bench.structures.Category`, and the raw payload dict.

    Raises:
        CheckpointError: missing file, refused pickle, a malformed payload
            (see :func:`read_checkpoint`), a model too large for memory, or
            weights that do not fit.
    """
    path = Path(path)
    payload, cfg, categories = read_checkpoint(path)
    try:
        model = create_model(cfg.model.arch, cfg.model, categories=categories, cfg_all=cfg)
    except PssBenchError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _load_weights(model, payload["state_dict"], path)
    model.to(device).eval()
    return model, cfg, categories, payload


def _load_weights(model, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the config's model ({str(exc).splitlines()[0]})") from None


# Settings that may change between a run and its --resume: bookkeeping that does not change the weights.
RESUME_MAY_CHANGE = ("name", "train.log_every", "train.checkpoint_every", "train.val_every",
                     "data.num_workers", "data.val_max_images", "inference")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def read_resume_checkpoint(path: str | os.PathLike, cfg) -> dict:
    """Reads ``RUN/checkpoint_last.pt`` for ``--resume`` and checks that it can continue ``cfg``.

    Returns:
        The payload: ``state_dict``, ``optimizer``, ``memory`` (PSS), ``iteration``. No
        generator state: every training step seeds its own (:func:`~pss_bench.models.train.step_seed`).

    Raises:
        CheckpointError: not a checkpoint (see :func:`read_checkpoint`); no
            optimizer / iteration (``model_final.pt`` holds weights only);
            another architecture; or a config that differs from the run's in
            anything but bookkeeping (:data:`RESUME_MAY_CHANGE`), which would
            change the result and overwrite the run's ``config.yaml``.
    """
    path = Path(path)
    payload, saved, _ = read_checkpoint(path)
    missing = [k for k in ("optimizer", "iteration") if k not in payload]
    if missing:
        raise CheckpointError(
            f"{path}: cannot resume from it: no {', '.join(missing)} (a model_final.pt holds weights only; "
            "--resume continues from the checkpoint_last.pt training writes)"
        )
    it = payload["iteration"]
    if not isinstance(it, int) or isinstance(it, bool) or not 0 <= it <= cfg.train.iterations:
        raise CheckpointError(f"{path}: 'iteration' must be an integer in [0, train.iterations={cfg.train.iterations}], found {it!r}")
    if not isinstance(payload["optimizer"], dict):
        raise CheckpointError(f"{path}: 'optimizer' must be an optimizer state dict")
    if saved.model.arch != cfg.model.arch:
        raise CheckpointError(
            f"{path}: the run trains a {saved.model.arch!r} model, the config asks for {cfg.model.arch!r}; "
            "resume with the run's config or start a new run"
        )
    a, b = _flat(saved.to_dict()), _flat(cfg.to_dict())
    changed = [k for k in sorted(set(a) | set(b))
               if a.get(k) != b.get(k) and not any(k == p or k.startswith(p + ".") for p in RESUME_MAY_CHANGE)]
    if changed:
        diff = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:5])
        raise CheckpointError(
            f"{path}: the config differs from the run's ({diff}); --resume continues the same run, "
            "so resume with its config.yaml or start a new run in another folder"
        )
    return payload


def restore_training_state(payload: dict, path: str | os.PathLike, net, optimizer, module=None, rank: int = 0) -> None:
    """Loads the weights, the optimizer and the training module's own state of a checked resume payload.

    Args:
        module: the training module; if it has ``load_training_state(payload)``
            (PSS: its prototype memory), that is called too, with this rank's
            entry of ``payload["rank_states"]`` when a DDP run saved one per rank.
        rank: this process's rank.

    Raises:
        CheckpointError: a state that does not fit (one line naming ``path``).
    """
    path = Path(path)
    _load_weights(net, payload["state_dict"], path)
    try:
        optimizer.load_state_dict(payload["optimizer"])
        if hasattr(module, "load_training_state"):
            states = payload.get("rank_states")
            own = states[rank] if isinstance(states, list) and 0 <= rank < len(states) else payload
            if not isinstance(own, dict):
                raise TypeError(f"rank_states[{rank}] is a {type(own).__name__}, not a dict")
            module.load_training_state(own)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path}: optimizer or training state do not fit the model ({str(exc).splitlines()[0]})") from None


__all__ = ["CheckpointError", "tensor_checksum", "with_checksum", "verify_checksum", "load_checkpoint", "read_checkpoint", "load_pretrained_backbone", "save_checkpoint_payload",
           "read_resume_checkpoint", "restore_training_state", "torch_load"]
