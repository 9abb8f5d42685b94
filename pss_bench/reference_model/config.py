"""Configuration of the PSS reference model: dataclasses loaded from YAML.

A config is a :class:`PSSConfig` tree. Shipped configs live in
``pss_bench/reference_model/configs/<name>.yaml``; :func:`load_config` takes a
shipped name or a YAML path plus ``section.key=value`` overrides. Unknown keys
and wrongly typed values raise :class:`ConfigError` naming the key.

No training logic here, no files other than the YAML being read.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pss_bench.errors import PssBenchError
from pss_bench.io.safe_read import parse_yaml_text, read_yaml_file
from pss_bench.text import short_repr

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(PssBenchError):
    """A config file or override is malformed."""


@dataclass
class ModelConfig:
    """The network.

    Attributes:
        arch: ``pss`` (the reference model) or ``upsnet`` (the UPSNet-style
            baseline, ``pss_bench.baselines.upsnet``), built on the same
            backbone, FPN and head settings below.
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
    """

    arch: str = "pss"
    backbone: str = "resnet50"
    norm: str = "frozen_bn"
    fpn_channels: int = 256
    head_channels: int = 128
    deformable: bool = True
    embed_dim: int = 32
    classifier_hidden: int = 256
    num_classes: int = 0
    output_stride: int = 4


@dataclass
class KMeansConfig:
    """Spherical k-means over-segmentation.

    Attributes:
        grid: ``[rows, cols]`` of the regular initialisation grid (number of
            clusters = rows * cols).
        iterations: EM iterations.
        coord_weight: weight of the ``[0, 1]``-normalised pixel coordinates
            concatenated to the embeddings before re-normalising; 0 disables.
    """

    grid: list[int] = field(default_factory=lambda: [8, 16])
    iterations: int = 10
    coord_weight: float = 1.0


@dataclass
class LossConfig:
    """Training losses.

    Attributes:
        kappa: concentration of the von Mises-Fisher pixel-segment likelihood.
        memory_iterations: keep the prototypes of this many past iterations as
            extra (stuff of the same class: positive, else negative) segments.
        segsort_weight, classifier_weight, seed_weight: loss weights.
        seed_sigma: standard deviation of the Gaussian centre targets, in input pixels.
        small_instance_area: instances with fewer input pixels than this get
            hybrid-scale prototypes (2x upscaled embeddings); 0 disables.
        seed_loss: ``focal``: the seed head predicts centre logits, trained
            with CenterNet's penalty-reduced focal loss (alpha 2, beta 4)
            normalised by the number of centres; ``mse``: a regressed Gaussian
            heatmap (checkpoints written before the focal loss existed).
        max_pixels: evaluate the SegSort likelihood on at most this many
            uniformly drawn labelled pixels per batch (prototypes still use all
            pixels); 0: all. Keeps stride-2 training affordable.
        pixel_balance: with ``max_pixels``, draw the pixels with probability
            proportional to (area of their segment) ** -pixel_balance: 0 is the
            pixel mean of the paper's loss, 1 weighs every GT segment of the
            batch alike. In the pixel mean the small instances, which decide
            PQ-Th, hardly count.
        classifier_balance: weigh each segment's cross-entropy by (segments
            of its GT class in the batch) ** -classifier_balance: 0 is the
            plain mean over segments, 1 weighs every class of the batch alike
            (PQ averages over classes; a rare class such as rider is a few
            segments among thousands).
    """

    kappa: float = 10.0
    memory_iterations: int = 0
    segsort_weight: float = 1.0
    classifier_weight: float = 1.0
    seed_weight: float = 1.0
    seed_sigma: float = 8.0
    small_instance_area: int = 0
    seed_loss: str = "focal"
    max_pixels: int = 0
    pixel_balance: float = 0.0
    classifier_balance: float = 0.0


@dataclass
class InferenceConfig:
    """Post-processing (all thresholds chosen on validation data).

    Attributes:
        grid: k-means grid at inference (``[rows, cols]``).
        concentration_threshold: T_S; segments with ``||sum v|| / |R|`` below it are re-split.
        split_k: clusters of the re-split (paper: 4).
        merge_threshold: T_P; minimum cosine similarity for thing merging.
        seeded: use the seeded merging variant.
        seed_threshold: minimum centre-heatmap peak value of a seed.
        seed_nms_kernel: max-pool window of the seed peak detection (stride-4 pixels).
        min_area: segments (after merging) smaller than this many stride-4
            pixels are dropped to VOID.
        merge_adjacent: merge only thing segments that touch (4-neighbourhood
            at the embedding's resolution); False merges any pair, as the paper.
    """

    grid: list[int] = field(default_factory=lambda: [8, 16])
    concentration_threshold: float = 0.9
    split_k: int = 4
    merge_threshold: float = 0.8
    seeded: bool = True
    seed_threshold: float = 0.3
    seed_nms_kernel: int = 7
    min_area: int = 4
    merge_adjacent: bool = False


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


@dataclass
class UPSNetConfig:
    """The UPSNet-style baseline's own settings (used when ``model.arch`` is ``upsnet``).

    Attributes:
        box_head_dim: width of the two-layer box head (torchvision: 1024).
        mask_head_channels: channels of the four mask-head convs (Mask R-CNN: 256).
        anchor_sizes: one anchor size per level P2-P6.
        panoptic_weight: weight of the panoptic cross-entropy (UPSNet: 0.5).
        score_threshold: detections below it are dropped before the panoptic head.
        nms_threshold: IoU of the class-agnostic NMS before the head.
        max_covered: drop an instance more than this covered by kept ones (UPSNet: 0.3).
        stuff_area_limit: stuff regions smaller than this many pixels become
            void (UPSNet: 4096 at Cityscapes scale).
        rpn_pre_nms_top_n, rpn_post_nms_top_n: proposals kept per FPN level
            before NMS and per image after it, ``[training, testing]``
            (torchvision's Mask R-CNN: [2000, 1000] and [2000, 1000]).
        roi_batch_size: RoIs sampled per image for the box and mask losses (512).
    """

    box_head_dim: int = 1024
    mask_head_channels: int = 256
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    panoptic_weight: float = 0.5
    score_threshold: float = 0.5
    nms_threshold: float = 0.5
    max_covered: float = 0.3
    stuff_area_limit: int = 4096
    rpn_pre_nms_top_n: list[int] = field(default_factory=lambda: [2000, 1000])
    rpn_post_nms_top_n: list[int] = field(default_factory=lambda: [2000, 1000])
    roi_batch_size: int = 512


@dataclass
class PSSConfig:
    """The whole configuration."""

    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    upsnet: UPSNetConfig = field(default_factory=UPSNetConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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


def config_from_dict(data: dict) -> PSSConfig:
    """Builds a :class:`PSSConfig` from a nested dict (missing keys: defaults) and checks its values.

    Raises:
        ConfigError: an unknown key, a wrong type, or a value out of range
            (see :func:`validate_config`), naming the key.
    """
    cfg = _build(PSSConfig, data, "")
    validate_config(cfg)
    return cfg


# k-means grid rows / columns (and re-split clusters): past this the cluster tables alone exhaust memory.
MAX_GRID = 256
# key -> (lower bound, whether the bound itself is allowed, upper bound or None); ints and floats alike.
_RANGES: dict[str, tuple[float, bool, float | None]] = {
    "model.fpn_channels": (1, True, None), "model.head_channels": (1, True, None),
    "model.embed_dim": (1, True, None), "model.classifier_hidden": (1, True, None),
    "model.num_classes": (0, True, None),
    "kmeans.grid": (1, True, MAX_GRID), "kmeans.iterations": (1, True, 10_000), "kmeans.coord_weight": (0, True, None),
    "loss.kappa": (0, False, None), "loss.memory_iterations": (0, True, None),
    "loss.segsort_weight": (0, True, None), "loss.classifier_weight": (0, True, None),
    "loss.seed_weight": (0, True, None), "loss.seed_sigma": (0, False, None), "loss.small_instance_area": (0, True, None),
    "loss.max_pixels": (0, True, None), "loss.pixel_balance": (0, True, 1), "loss.classifier_balance": (0, True, 1), "train.clip_grad_norm": (0, True, None), "train.classifier_lr_mult": (0, False, None),
    "inference.grid": (1, True, MAX_GRID), "inference.split_k": (1, True, MAX_GRID),
    "inference.merge_threshold": (-1, True, 1), "inference.seed_nms_kernel": (1, True, 255),
    "inference.min_area": (0, True, None),
    "data.crop_size": (1, True, 2**15), "data.scale_range": (0, False, None), "data.batch_size": (1, True, None),
    "data.num_workers": (0, True, None), "data.val_max_images": (0, True, None),
    "train.iterations": (1, True, None), "train.lr": (0, False, None), "train.momentum": (0, True, 1),
    "train.weight_decay": (0, True, None), "train.poly_power": (0, True, None),
    "train.warmup_iterations": (0, True, None), "train.warmup_factor": (0, True, 1), "train.seed": (0, True, 2**63 - 1),
    "train.log_every": (0, True, None), "train.checkpoint_every": (0, True, None), "train.val_every": (0, True, None),
    "upsnet.box_head_dim": (1, True, None), "upsnet.mask_head_channels": (1, True, None),
    "upsnet.anchor_sizes": (1, True, None), "upsnet.panoptic_weight": (0, True, None),
    "upsnet.score_threshold": (0, True, 1), "upsnet.nms_threshold": (0, True, 1), "upsnet.max_covered": (0, True, 1),
    "upsnet.stuff_area_limit": (0, True, None), "upsnet.rpn_pre_nms_top_n": (1, True, None),
    "upsnet.rpn_post_nms_top_n": (1, True, None), "upsnet.roi_batch_size": (1, True, None),
}
# Lists of a fixed length.
_LENGTHS = {
    "kmeans.grid": 2, "inference.grid": 2, "data.crop_size": 2, "data.scale_range": 2,
    "upsnet.anchor_sizes": 5, "upsnet.rpn_pre_nms_top_n": 2, "upsnet.rpn_post_nms_top_n": 2,
}
# Anything past this is not a setting but an overflow waiting to happen (torch takes int64).
_INT_MAX = 2**63 - 1


def _check_number(key: str, v: float, lo: float, closed: bool, hi: float | None) -> None:
    import math

    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{key}: must be a finite number, found {v!r}")
    if isinstance(v, int) and abs(v) > _INT_MAX:
        raise ConfigError(f"{key}: {v} is out of range (at most {_INT_MAX})")
    if (v < lo) if closed else (v <= lo):
        raise ConfigError(f"{key}: must be {'at least' if closed else 'greater than'} {lo}, found {v!r}")
    if hi is not None and v > hi:
        raise ConfigError(f"{key}: must be at most {hi}, found {v!r}")


def validate_config(cfg: PSSConfig) -> None:
    """Checks that every value of ``cfg`` is in range (positive sizes, a positive learning rate, ...).

    Raises:
        ConfigError: the first value out of range, naming its key
            (``train.lr: must be greater than 0, found -1.0``).
    """
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(sub):
            continue
        for f in dataclasses.fields(sub):
            key = f"{section.name}.{f.name}"
            value = getattr(sub, f.name)
            if isinstance(value, list):
                if key in _LENGTHS and len(value) != _LENGTHS[key]:
                    raise ConfigError(f"{key}: expected {_LENGTHS[key]} values, found {value!r}")
                items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
            else:
                items = [(key, value)]
            for k, v in items:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                lo, closed, hi = _RANGES.get(key, (-float("inf"), True, None))
                _check_number(k, v, lo, closed, hi)
    lo, hi = cfg.data.scale_range
    if lo > hi:
        raise ConfigError(f"data.scale_range: min {lo} is larger than max {hi}")
    if cfg.model.output_stride not in (2, 4):
        raise ConfigError(f"model.output_stride: must be 4 or 2, found {cfg.model.output_stride!r}")
    if cfg.loss.seed_loss not in ("focal", "mse"):
        raise ConfigError(f"loss.seed_loss: must be 'focal' or 'mse', found {cfg.loss.seed_loss!r}")


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _set_override(data: dict, item: str) -> None:
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


def load_config(name_or_path: str | os.PathLike, overrides: Sequence[str] = ()) -> PSSConfig:
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
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown config {str(name_or_path)!r} (shipped: {', '.join(shipped_configs())})")
    if not (path.exists() or path.is_symlink()):
        raise ConfigError(f"{path}: config file not found")
    data = read_yaml_file(path, ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data.setdefault("name", path.stem)
    for item in overrides:
        _set_override(data, item)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
