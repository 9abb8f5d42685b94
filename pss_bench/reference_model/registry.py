"""Model registry: ``create_model`` builds an architecture; weights load separately.

Follows timm's factory split: :func:`create_model` never touches files;
:func:`load_checkpoint` and :func:`load_pretrained_backbone` read weights with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from pss_bench.errors import PssBenchError
from pss_bench.reference_model.config import ModelConfig

_REGISTRY: dict[str, Callable] = {}

PRETRAINED_HINT = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-cd907fc2.pth",
}


class CheckpointError(PssBenchError):
    """A checkpoint or weight file is missing or does not fit the model."""


def register_model(name: str):
    """Decorator registering a builder ``fn(model_cfg: ModelConfig, **context) -> nn.Module``.

    ``context`` holds ``categories`` (the dataset's list) and ``cfg`` (the whole
    :class:`PSSConfig`) for architectures that need them.
    """

    def deco(fn):
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, cfg: ModelConfig, **context):
    """Builds the architecture ``name`` with random weights.

    Raises:
        PssBenchError: unknown model name.
    """
    if name not in _REGISTRY:
        raise PssBenchError(f"unknown model {name!r} (known: {', '.join(list_models())})")
    return _REGISTRY[name](cfg, **context)


@register_model("pss")
def _build_pss(cfg: ModelConfig, **_):
    from pss_bench.reference_model.network import PSSNet

    return PSSNet(cfg)


@register_model("upsnet")
def _build_upsnet(cfg: ModelConfig, *, categories, cfg_all=None, **_):
    from pss_bench.baselines.upsnet.model import UPSNetStyle
    from pss_bench.reference_model.config import UPSNetConfig

    return UPSNetStyle(cfg, cfg_all.upsnet if cfg_all is not None else UPSNetConfig(), categories)


def _torch_load(path: Path):
    import torch

    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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
    state = _torch_load(Path(path))
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


def load_checkpoint(path: str | os.PathLike, *, device: str = "cpu"):
    """Rebuilds a model from a checkpoint written by training.

    Returns:
        ``(model, cfg, categories, payload)``: the model in eval mode on
        ``device``, its :class:`PSSConfig`, its list of
        :class:`~pss_bench.types.Category`, and the raw payload dict.

    Raises:
        CheckpointError: missing file, refused pickle, or weights that do not fit.
    """
    from pss_bench.reference_model.config import config_from_dict
    from pss_bench.types import Category

    path = Path(path)
    payload = _torch_load(path)
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise CheckpointError(f"{path}: not a pss-bench reference-model checkpoint (no state_dict/config)")
    config = payload["config"]
    if isinstance(config, dict) and isinstance(config.get("loss"), dict) and "seed_loss" not in config["loss"]:
        # written before the focal seed loss: the seed head regressed a heatmap
        config = {**config, "loss": {**config["loss"], "seed_loss": "mse"}}
    cfg = config_from_dict(config)
    categories = [Category(int(c["id"]), str(c["name"]), bool(c["isthing"])) for c in payload["categories"]]
    cfg.model.num_classes = len(categories)
    model = create_model(payload.get("model", "pss"), cfg.model, categories=categories, cfg_all=cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the config's model ({str(exc).splitlines()[0]})") from None
    model.to(device).eval()
    return model, cfg, categories, payload


__all__ = ["create_model", "register_model", "list_models", "load_checkpoint", "load_pretrained_backbone", "ModelConfig"]
