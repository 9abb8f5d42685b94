"""Configuration of any registered model: dataclasses loaded from YAML.

A config is a :class:`Config`: ``name``, the sections every architecture shares
(``model``, ``data``, ``train``) and the sections each registered model brings
(:func:`register_section`: PSS its ``kmeans``, ``loss`` and ``inference``, the
UPSNet-style baseline its ``upsnet``). Every config holds every registered
section, whatever its ``model.arch``, so one YAML file or checkpoint can name
settings of several architectures.

Shipped configs are ``<name>.yaml`` files in the folders models register
(:func:`register_config_dir`; PSS ships ``pss_bench/reference_model/configs/``);
:func:`load_config` takes a shipped name or a YAML path plus
``section.key=value`` overrides. Unknown keys and wrongly typed values raise
:class:`ConfigError` naming the key.

No training logic here, no files other than the YAML being read, and no model
names: sections come from the models that register them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pss_bench.errors import PssBenchError
from pss_bench.io.safe_read import parse_yaml_text, read_yaml_file
from pss_bench.text import short_repr

# Folders of shipped ``<name>.yaml`` configs, registered by the models that ship them.
_CONFIG_DIRS: list[Path] = []


class ConfigError(PssBenchError):
    """A config file or override is malformed."""


@dataclass
class ModelConfig:
    """The network (the settings every architecture reads).

    Attributes:
        arch: a registered model name (:func:`pss_bench.models.registry.list_models`:
            ``pss``, the reference model, or ``upsnet``, the UPSNet-style
            baseline), built on the backbone, FPN and head settings below.
            Empty: the registry's default model
            (:func:`~pss_bench.models.registry.default_model`), which a
            :class:`Config` fills in when it is made.
        backbone: ``resnet18`` | ``resnet34`` | ``resnet50`` | ``resnet101``, or
            ``resnet_tiny`` (ResNet-10 layout at half width, for CPU runs).
        norm: backbone normalisation: ``frozen_bn`` (detection style, for
            pretrained weights), ``bn`` or ``gn`` (GroupNorm, 32 groups).
        fpn_channels: FPN output channels (P2-P5).
        head_channels: channels of the three 3x3 convs of the embedding and
            seeding heads (UPSNet: 128).
        deformable: deformable 3x3 convs in the heads (UPSNet); plain convs if false.
        embed_dim: embedding dimension (paper: 32).
        classifier_hidden: hidden width of the two-layer segment classifier.
        num_classes: number of classes; 0 means "take it from the dataset".
        output_stride: stride of the embedding map, 4 (the paper) or 2 (a
            light decoder fuses the stem's stride-2 features, which lifts the
            resolution cap of small frames; see ``docs/reference_model.md``).
        coord_conv: PSS only: the embedding head also sees each pixel's
            normalised (y, x) position (CoordConv, Liu et al. 2018), so that
            look-alike neighbouring instances can get different embeddings.
    """

    arch: str = ""
    backbone: str = "resnet50"
    norm: str = "frozen_bn"
    fpn_channels: int = 256
    head_channels: int = 128
    deformable: bool = True
    embed_dim: int = 32
    classifier_hidden: int = 256
    num_classes: int = 0
    output_stride: int = 4
    coord_conv: bool = False


@dataclass
class DataConfig:
    """Data and augmentation.

    Attributes:
        dataset: reader name (``cityscapes``, ``synthstreets``, ``voc``).
        train_split, val_split: split names.
        crop_size: ``[H, W]`` training crop.
        scale_range: ``[min, max]`` random rescale factor before cropping.
        flip: random horizontal flip.
        batch_size: images per process (per GPU).
        num_workers: DataLoader workers.
        val_max_images: validate on at most this many images (0: all).
    """

    dataset: str = "cityscapes"
    train_split: str = "train"
    val_split: str = "val"
    crop_size: list[int] = field(default_factory=lambda: [512, 1024])
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    flip: bool = True
    batch_size: int = 1
    num_workers: int = 4
    val_max_images: int = 0


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping.

    Attributes:
        iterations: total optimiser steps.
        lr: base learning rate (for the global batch the config was written for).
        momentum, weight_decay: SGD.
        poly_power: ``lr = base * (1 - it / iterations) ** poly_power``.
        warmup_iterations: linear warm-up from ``lr * warmup_factor``.
        warmup_factor: starting fraction of the warm-up.
        seed: random seed (data order, augmentation, initialisation).
        amp: bf16 autocast on CUDA (ignored on CPU).
        log_every, checkpoint_every, val_every: periods in iterations (0: never).
        clip_grad_norm: clip the global gradient norm to this value (0: off).
        classifier_lr_mult: learning-rate multiplier of the segment classifier,
            which sees one sample per segment, far fewer than the pixels that
            train the embeddings.
    """

    iterations: int = 90000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_iterations: int = 0
    warmup_factor: float = 0.1
    seed: int = 0
    amp: bool = True
    log_every: int = 20
    checkpoint_every: int = 1000
    val_every: int = 0
    clip_grad_norm: float = 0.0
    classifier_lr_mult: float = 1.0


# k-means grid rows / columns (and re-split clusters): past this the cluster tables alone exhaust memory.
MAX_GRID = 256
# Anything past this is not a setting but an overflow waiting to happen (torch takes int64).
_INT_MAX = 2**63 - 1

Range = tuple[float, bool, "float | None"]


@dataclass(frozen=True)
class Section:
    """A config section a model brings.

    Attributes:
        name: the YAML key (``inference``).
        cls: its dataclass (every field with a default).
        ranges: ``"name.key" -> (lower bound, whether the bound itself is
            allowed, upper bound or None)``, ints and floats alike.
        lengths: ``"name.key" -> n`` for lists of a fixed length.
        choices: ``"name.key" -> (allowed, values, ...)`` for strings that
            take one of a few values.
        check: called with the whole config after the range checks; raises
            :class:`ConfigError` for what ranges cannot say.
    """

    name: str
    cls: type
    ranges: dict = field(default_factory=dict)
    lengths: dict = field(default_factory=dict)
    check: Callable[["Config"], None] | None = None
    choices: dict = field(default_factory=dict)


def _check_core(cfg: "Config") -> None:
    lo, hi = cfg.data.scale_range
    if lo > hi:
        raise ConfigError(f"data.scale_range: min {lo} is larger than max {hi}")
    if cfg.model.output_stride not in (2, 4):
        raise ConfigError(f"model.output_stride: must be 4 or 2, found {cfg.model.output_stride!r}")


_CORE = {
    "model": Section("model", ModelConfig, {
        "model.fpn_channels": (1, True, None), "model.head_channels": (1, True, None),
        "model.embed_dim": (1, True, None), "model.classifier_hidden": (1, True, None),
        "model.num_classes": (0, True, None),
    }, check=_check_core),
    "data": Section("data", DataConfig, {
        "data.crop_size": (1, True, 2**15), "data.scale_range": (0, False, None), "data.batch_size": (1, True, None),
        "data.num_workers": (0, True, None), "data.val_max_images": (0, True, None),
    }, {"data.crop_size": 2, "data.scale_range": 2}),
    "train": Section("train", TrainConfig, {
        "train.iterations": (1, True, None), "train.lr": (0, False, None), "train.momentum": (0, True, 1),
        "train.weight_decay": (0, True, None), "train.poly_power": (0, True, None),
        "train.warmup_iterations": (0, True, None), "train.warmup_factor": (0, True, 1), "train.seed": (0, True, 2**63 - 1),
        "train.log_every": (0, True, None), "train.checkpoint_every": (0, True, None), "train.val_every": (0, True, None),
        "train.clip_grad_norm": (0, True, None), "train.classifier_lr_mult": (0, False, None),
    }),
}
# Sections registered by models, in registration order.
_SECTIONS: dict[str, Section] = {}


def register_section(name: str, cls: type, *, ranges: dict | None = None, lengths: dict | None = None,
                     choices: dict | None = None, check: Callable[["Config"], None] | None = None) -> None:
    """Adds the section ``name`` (dataclass ``cls``) to every config; a model calls it when it registers.

    ``ranges``, ``lengths``, ``choices`` and ``check``: see :class:`Section`.

    Registering the same section again with the same class is a no-op.

    Raises:
        ValueError: ``name`` is a core section or is registered with another class.
    """
    if name in _CORE or name == "name":
        raise ValueError(f"config section {name!r} is a core section")
    old = _SECTIONS.get(name)
    if old is not None and old.cls is not cls:
        raise ValueError(f"config section {name!r} is already registered with {old.cls.__name__}")
    _SECTIONS[name] = Section(name, cls, dict(ranges or {}), dict(lengths or {}), check,
                              {k: tuple(v) for k, v in (choices or {}).items()})


def unregister_section(name: str) -> None:
    """Removes a registered section (tests that register a toy model clean up with it)."""
    _SECTIONS.pop(name, None)


def _sections() -> dict[str, Section]:
    """Every section in ``to_dict`` order: the core ones, then the models' in registration order."""
    from pss_bench.models.registry import discover

    discover()
    return {"model": _CORE["model"], **_SECTIONS, "data": _CORE["data"], "train": _CORE["train"]}


def section_names() -> list[str]:
    """The names of every config section (core and registered), in ``to_dict`` order."""
    return list(_sections())


class Config:
    """The whole configuration: ``name``, ``model``, ``data``, ``train`` and every registered section.

    ``Config(inference=InferenceConfig(...))`` sets a section; sections not
    given get their defaults. Sections are attributes (``cfg.inference``).
    """

    def __init__(self, name: str = "custom", **sections: Any) -> None:
        self.name = name
        known = _sections()
        unknown = sorted(set(sections) - set(known))
        if unknown:
            raise TypeError(f"Config: unknown section(s) {unknown} (known: {sorted(known)})")
        for key, sec in known.items():
            setattr(self, key, sections[key] if key in sections else sec.cls())
        if not self.model.arch:
            from pss_bench.models.registry import default_model

            self.model.arch = default_model()

    def sections(self) -> dict[str, Any]:
        """``{name: section dataclass}`` in ``to_dict`` order."""
        return {k: getattr(self, k) for k in _sections() if hasattr(self, k)}

    def to_dict(self) -> dict:
        return {"name": self.name, **{k: dataclasses.asdict(v) for k, v in self.sections().items()}}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.sections().items())
        return f"Config(name={self.name!r}, {inner})"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, found {short_repr(value)}")
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, found {short_repr(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, found {short_repr(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, found {short_repr(value)}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{where}: number too large, found {short_repr(value)}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, found {short_repr(value)}")
        return value
    raise TypeError(f"unsupported config type {tp}")  # pragma: no cover


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, found {short_repr(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown} (known: {sorted(names)})")
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        sub = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, sub)
        else:
            kwargs[key] = _coerce(value, tp, sub)
    return cls(**kwargs)


def config_from_dict(data: dict) -> Config:
    """Builds a :class:`Config` from a nested dict (missing keys: defaults) and checks its values.

    Raises:
        ConfigError: an unknown key, a wrong type, or a value out of range
            (see :func:`validate_config`), naming the key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping, found {short_repr(data)}")
    sections = _sections()
    names = {"name", *sections}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {unknown} (known: {sorted(names)})")
    kwargs = {k: _build(sections[k].cls, v, k) for k, v in data.items() if k != "name"}
    if "name" in data:
        kwargs["name"] = _coerce(data["name"], str, "name")
    cfg = Config(**kwargs)
    validate_config(cfg)
    return cfg


def _check_number(key: str, v: float, lo: float, closed: bool, hi: float | None) -> None:
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{key}: must be a finite number, found {v!r}")
    if isinstance(v, int) and abs(v) > _INT_MAX:
        raise ConfigError(f"{key}: {v} is out of range (at most {_INT_MAX})")
    if (v < lo) if closed else (v <= lo):
        raise ConfigError(f"{key}: must be {'at least' if closed else 'greater than'} {lo}, found {v!r}")
    if hi is not None and v > hi:
        raise ConfigError(f"{key}: must be at most {hi}, found {v!r}")


def validate_config(cfg: Config) -> None:
    """Checks that every value of ``cfg`` is in range (positive sizes, a positive learning rate, ...).

    Raises:
        ConfigError: the first value out of range or not among its choices,
            naming its key (``train.lr: must be greater than 0, found -1.0``).
    """
    sections = _sections()
    ranges: dict = {}
    lengths: dict = {}
    choices: dict = {}
    for sec in sections.values():
        ranges.update(sec.ranges)
        lengths.update(sec.lengths)
        choices.update(sec.choices)
    for name, sub in cfg.sections().items():
        for f in dataclasses.fields(sub):
            key = f"{name}.{f.name}"
            value = getattr(sub, f.name)
            if key in choices and value not in choices[key]:
                raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices[key]))}, "
                                  f"found {short_repr(value)}")
            if isinstance(value, list):
                if key in lengths and len(value) != lengths[key]:
                    raise ConfigError(f"{key}: expected {lengths[key]} values, found {value!r}")
                items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
            else:
                items = [(key, value)]
            for k, v in items:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                lo, closed, hi = ranges.get(key, (-float("inf"), True, None))
                _check_number(k, v, lo, closed, hi)
    for sec in sections.values():
        if sec.check is not None:
            sec.check(cfg)


def register_config_dir(folder: str | os.PathLike) -> None:
    """Makes the ``<name>.yaml`` files of ``folder`` loadable by name (a model ships its configs there)."""
    folder = Path(folder)
    if folder not in _CONFIG_DIRS:
        _CONFIG_DIRS.append(folder)


def _shipped() -> dict[str, Path]:
    from pss_bench.models.registry import discover

    discover()
    out: dict[str, Path] = {}
    for folder in _CONFIG_DIRS:
        for p in sorted(folder.glob("*.yaml")):
            out.setdefault(p.stem, p)
    return out


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (by every registered model)."""
    return sorted(_shipped())


def apply_override(data: dict, item: str) -> None:
    """Sets ``section.key=value`` (the value parsed as YAML) in the nested dict ``data``.

    Raises:
        ConfigError: no ``=``, or a path through a value that is not a section.
    """
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    value = parse_yaml_text(raw, f"override {short_repr(item)}", ConfigError)
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p} is not a section")
    node[parts[-1]] = value


def with_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """A copy of ``cfg`` with ``section.key=value`` overrides applied (and checked); ``cfg`` is unchanged.

    Raises:
        ConfigError: a malformed override, an unknown key or a value out of range.
    """
    data = cfg.to_dict()
    for item in overrides:
        apply_override(data, item)
    return config_from_dict(data)


def load_config(name_or_path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """Loads a shipped config by name or a YAML file, then applies overrides.

    Args:
        name_or_path: a shipped name (``synthstreets_tiny``) or a ``.yaml`` path.
        overrides: ``section.key=value`` strings; values parsed as YAML
            (``train.lr=0.02``, ``kmeans.grid=[4,8]``).

    Raises:
        ConfigError: unknown name, unreadable YAML, unknown key or bad type.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        shipped = _shipped()
        if str(name_or_path) in shipped:
            path = shipped[str(name_or_path)]
        else:
            raise ConfigError(f"unknown config {str(name_or_path)!r} (shipped: {', '.join(shipped_configs())})")
    if not (path.exists() or path.is_symlink()):
        raise ConfigError(f"{path}: config file not found")
    data = read_yaml_file(path, ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data.setdefault("name", path.stem)
    for item in overrides:
        apply_override(data, item)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
