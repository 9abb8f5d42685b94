"""Model registry: what a model brings, found without naming it; ``create_model`` builds an architecture.

A model registers itself with :func:`register_model` (detectron2's
``META_ARCH_REGISTRY.register()``, timm's ``register_model``): its builder,
its training module and its prediction function. The registry knows no model
names: :func:`discover` imports every ``registration.py`` module inside the
``pss_bench`` package and every ``pss_bench.models`` entry point of other
installed packages, so a new model is one folder with a ``registration.py``.

:func:`create_model` never touches files; weights load separately
(:mod:`pss_bench.models.checkpoint`). Importing this module imports no torch.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pss_bench.errors import PssBenchError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pss_bench.models"


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model brings.

    Attributes:
        name: the ``model.arch`` value that selects it.
        build: ``build(model_cfg: ModelConfig, *, categories, cfg_all) -> nn.Module``:
            the architecture with random weights (``cfg_all`` the whole
            :class:`~pss_bench.models.config.Config`, ``None`` where unknown).
        training_module: ``training_module(net, cfg, categories) -> nn.Module``
            whose ``forward(batch)`` returns ``(losses, aux)``: a dict of scalar
            losses with ``total``, and anything its optional
            ``after_step(aux)`` takes after the optimiser step. Optional
            ``training_state() -> dict`` / ``load_training_state(payload)``
            put its own state into ``checkpoint_last.pt`` (see
            :mod:`pss_bench.models.train`).
        predict: ``predict(net, image, categories, cfg) -> (ids, segments_info,
            features, segment_embeddings)`` of one ``(3, H, W)`` image (see
            :func:`pss_bench.models.predict.predict_panoptic`).
        display_name: the ``model`` a prediction directory's manifest names.
        inference_sections: config sections ``pss-bench predict`` may override.
        inference_keys: single ``section.key`` settings ``pss-bench predict``
            may override, of a section that also holds architecture or training
            settings (which predict refuses: the weights were trained with them).
    """

    name: str
    build: Callable
    training_module: Callable
    predict: Callable
    display_name: str = ""
    inference_sections: tuple[str, ...] = field(default_factory=tuple)
    inference_keys: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelSpec] = {}
_DEFAULTS: set[str] = set()
_discovered = False


def register_model(name: str, *, training_module: Callable, predict: Callable, display_name: str = "",
                   inference_sections: tuple[str, ...] = (), inference_keys: tuple[str, ...] = (),
                   default: bool = False):
    """Decorator registering the builder of the model ``name`` (see :class:`ModelSpec`).

    Registering a name again replaces it (a reloaded module).

    Args:
        default: this is the model of configs and checkpoints that name none
            (``model.arch`` empty or absent, as in files written before the
            registry); at most one registered model may say so.
    """

    def deco(build: Callable) -> Callable:
        _REGISTRY[name] = ModelSpec(name, build, training_module, predict, display_name or name,
                                    tuple(inference_sections), tuple(inference_keys))
        if default:
            _DEFAULTS.add(name)
        else:
            _DEFAULTS.discard(name)
        return build

    return deco


def unregister_model(name: str) -> None:
    """Removes a registered model (tests that register a toy model clean up with it)."""
    _REGISTRY.pop(name, None)
    _DEFAULTS.discard(name)


def default_model() -> str:
    """The name of the model registered with ``default=True``: what a config without ``model.arch`` builds.

    Raises:
        PssBenchError: no registered model, or more than one, is the default.
    """
    discover()
    if len(_DEFAULTS) != 1:
        which = f"{len(_DEFAULTS)} ({', '.join(sorted(_DEFAULTS))})" if _DEFAULTS else "none"
        raise PssBenchError(f"the config names no model (model.arch) and {which} of the registered models "
                            f"({', '.join(list_models())}) is the default: set model.arch")
    return next(iter(_DEFAULTS))


def discover() -> None:
    """Imports every model registration once: ``pss_bench/**/registration.py`` and ``pss_bench.models`` entry points."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    root = Path(__file__).resolve().parent.parent
    for path in sorted(root.rglob("registration.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        importlib.import_module(".".join(rel.parts))
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the built-in models
            log.warning("model plugin %s (%s) could not be loaded: %s", ep.name, ep.value, exc)


def inference_overrides() -> tuple[list[str], list[str]]:
    """``(sections, keys)`` that ``pss-bench predict`` may override, over every registered model.

    A ``section.key=value`` override is an inference setting when its section
    is one of ``sections`` or its ``section.key`` is one of ``keys``.
    """
    discover()
    specs = [_REGISTRY[m] for m in sorted(_REGISTRY)]
    sections = list(dict.fromkeys(s for spec in specs for s in spec.inference_sections))
    keys = list(dict.fromkeys(k for spec in specs for k in spec.inference_keys))
    return sections, keys


def list_models() -> list[str]:
    """The registered model names."""
    discover()
    return sorted(_REGISTRY)


def is_registered(name: str) -> bool:
    discover()
    return name in _REGISTRY


def get_model(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``.

    Raises:
        PssBenchError: no model of that name is registered.
    """
    discover()
    if name not in _REGISTRY:
        raise PssBenchError(f"unknown model {name!r} (known: {', '.join(list_models())})")
    return _REGISTRY[name]


def _available_memory() -> int | None:
    """Bytes of memory this process could still get (MemAvailable), or ``None`` where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def model_bytes(name: str, cfg, **context) -> int | None:
    """Bytes of the parameters and buffers of ``name`` built from ``cfg``, counted without allocating.

    The model is built on torch's ``meta`` device. Returns ``None`` when the
    architecture cannot be built there.
    """
    import torch

    build = get_model(name).build
    try:
        with torch.device("meta"):
            net = build(cfg, **context)
    except Exception:  # an architecture that needs real tensors while building
        return None
    return sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))


def create_model(name: str, cfg, **context):
    """Builds the architecture ``name`` from its ``ModelConfig`` with random weights.

    Before allocating anything, the size of its weights is counted on the
    ``meta`` device and compared with the memory available.

    Args:
        context: ``categories`` (the dataset's list) and ``cfg_all`` (the
            whole config) for architectures that need them.

    Raises:
        PssBenchError: unknown model name, a config the architecture cannot
            be built from, or a model larger than the available memory.
    """
    build = get_model(name).build
    size, avail = model_bytes(name, cfg, **context), _available_memory()
    if size is not None and avail is not None and size > avail:
        raise PssBenchError(
            f"model {name!r} of this config needs {size / 2**30:.1f} GiB for its weights alone, more than the "
            f"{avail / 2**30:.1f} GiB of memory available (see its model.* settings)"
        )
    try:
        return build(cfg, **context)
    except MemoryError:
        raise PssBenchError(f"model {name!r} of this config does not fit in memory (see its model.* settings)") from None
    except (ValueError, RuntimeError) as exc:  # a size or name torch / torchvision refuse
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PssBenchError(f"model {name!r} cannot be built from this config ({type(exc).__name__}: {msg})") from None


__all__ = ["ModelSpec", "register_model", "unregister_model", "discover", "list_models", "get_model", "default_model",
           "create_model", "model_bytes", "inference_overrides"]
