"""Registers PSS as the model ``pss`` and its config sections ``kmeans``, ``loss``, ``inference``.

Found by :func:`pss_bench.models.registry.discover`; imports no torch (the
builder, training module and predictor import theirs when called).
"""

from __future__ import annotations

from pss_bench.models.config import register_config_dir, register_section
from pss_bench.models.registry import register_model
from pss_bench.reference_model.config import (
    CONFIG_DIR,
    LENGTHS,
    RANGES,
    InferenceConfig,
    KMeansConfig,
    LossConfig,
    check_config,
)


def _ranges(section: str) -> dict:
    return {k: v for k, v in RANGES.items() if k.startswith(section + ".")}


register_section("kmeans", KMeansConfig, ranges=_ranges("kmeans"), lengths={"kmeans.grid": LENGTHS["kmeans.grid"]})
register_section("loss", LossConfig, ranges=_ranges("loss"), check=check_config)
register_section("inference", InferenceConfig, ranges=_ranges("inference"),
                 lengths={"inference.grid": LENGTHS["inference.grid"]})
register_config_dir(CONFIG_DIR)


def _training_module(net, cfg, categories):
    from pss_bench.reference_model.model import training_module

    return training_module(net, cfg, categories)


def _predict(net, image, categories, cfg):
    from pss_bench.reference_model.model import predict

    return predict(net, image, categories, cfg)


@register_model("pss", training_module=_training_module, predict=_predict, display_name="pss-reference",
                inference_sections=("inference", "kmeans"), default=True)  # configs and checkpoints predating model.arch
def build(model_cfg, **_):
    from pss_bench.reference_model.network import PSSNet

    return PSSNet(model_cfg)
