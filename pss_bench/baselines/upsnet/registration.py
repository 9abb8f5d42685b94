"""Registers the UPSNet-style baseline as the model ``upsnet`` and its config section ``upsnet``.

Found by :func:`pss_bench.models.registry.discover`; imports no torch.
"""

from __future__ import annotations

from pss_bench.baselines.upsnet.config import CHOICES, INFERENCE_KEYS, LENGTHS, RANGES, UPSNetConfig
from pss_bench.models.config import register_section
from pss_bench.models.registry import register_model

register_section("upsnet", UPSNetConfig, ranges=RANGES, lengths=LENGTHS, choices=CHOICES)


def _training_module(net, cfg, categories):
    from pss_bench.baselines.upsnet.model import UPSNetTrainingModule

    return UPSNetTrainingModule(net, cfg)


def _predict(net, image, categories, cfg):
    from pss_bench.baselines.upsnet.model import predict

    return predict(net, image, categories, cfg)


@register_model("upsnet", training_module=_training_module, predict=_predict, display_name="upsnet-style",
                inference_keys=INFERENCE_KEYS)
def build(model_cfg, *, categories, cfg_all=None, **_):
    from pss_bench.baselines.upsnet.model import UPSNetStyle

    return UPSNetStyle(model_cfg, cfg_all.upsnet if cfg_all is not None else UPSNetConfig(), categories)
