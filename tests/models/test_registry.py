"""A third model plugs in from outside ``pss_bench/models``: registered here, trained and run by the generic path."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from model_helpers import CATS, toy_items
from pss_bench.models.checkpoint import load_checkpoint
from pss_bench.models.config import ConfigError, load_config, register_section, section_names, unregister_section
from pss_bench.models.predict import predict_panoptic
from pss_bench.models.registry import get_model, list_models, register_model, unregister_model
from pss_bench.models.train import FINAL_NAME, evaluate, train


@dataclass
class ToyConfig:
    """The toy's own section: the width of its one hidden conv."""

    width: int = 8


class ToyNet(nn.Module):
    """Per-pixel classes from two 3x3 convs; every connected class region is one segment."""

    def __init__(self, model_cfg, width: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, num_classes, 3, padding=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class ToyTraining(nn.Module):
    def __init__(self, net: ToyNet) -> None:
        super().__init__()
        self.net = net
        self.steps = 0

    def forward(self, batch: dict):
        logits = self.net(batch["image"])
        loss = nn.functional.cross_entropy(logits, batch["semantic"], ignore_index=255)
        return {"ce": loss, "total": loss}, 1

    def after_step(self, aux) -> None:
        self.steps += aux


def _predict(net, image, categories, cfg):
    feats = net.body[:2](image[None])[0]
    cls = net(image[None])[0].argmax(0)
    ids = torch.zeros_like(cls)
    info = []
    for k, c in enumerate(categories):
        m = cls == k
        if m.any():
            ids[m] = len(info) + 1
            info.append({"id": len(info) + 1, "category_id": c.id, "iscrowd": 0, "area": int(m.sum()), "score": 1.0})
    return ids, info, feats, None


@pytest.fixture
def toy_model():
    """Registers ``toy`` and its ``toy:`` section as a model's own ``registration.py`` would; removes them after."""
    register_section("toy", ToyConfig, ranges={"toy.width": (1, True, None)})

    @register_model("toy", training_module=lambda net, cfg, cats: ToyTraining(net), predict=_predict,
                    display_name="toy-model")
    def build(model_cfg, *, categories=(), cfg_all=None, **_):
        return ToyNet(model_cfg, cfg_all.toy.width if cfg_all is not None else ToyConfig().width, model_cfg.num_classes)

    yield build
    unregister_model("toy")
    unregister_section("toy")


def test_builtin_models_are_discovered():
    assert {"pss", "upsnet"} <= set(list_models())
    assert get_model("pss").display_name == "pss-reference"
    assert get_model("upsnet").display_name == "upsnet-style"
    assert {"kmeans", "loss", "inference", "upsnet"} <= set(section_names())


def test_a_toy_model_trains_and_predicts_through_the_generic_path(toy_model, tmp_path):
    assert "toy" in list_models()
    cfg = load_config("synthstreets_tiny", ["model.arch=toy", "toy.width=4", "data.crop_size=[32,64]",
                                            "data.batch_size=2", "train.iterations=4", "train.checkpoint_every=2",
                                            "train.log_every=1", "train.val_every=0", "train.warmup_iterations=0"])
    assert cfg.toy.width == 4
    with pytest.raises(ConfigError, match="toy.width: must be at least 1"):
        load_config("synthstreets_tiny", ["toy.width=0"])
    rec = train(cfg, tmp_path / "run", train_dataset=toy_items(4), categories=CATS)
    assert rec["iteration"] == 4 and "loss_ce" in rec

    net, cfg2, cats, payload = load_checkpoint(tmp_path / "run" / FINAL_NAME)
    assert isinstance(net, ToyNet) and payload["model"] == "toy" and payload["config"]["toy"] == {"width": 4}
    assert net.body[0].out_channels == 4
    items = toy_items(2)
    ids, info, feats, seg_emb = predict_panoptic(net, items[0]["image"], cats, cfg2)
    assert ids.shape == items[0]["image"].shape[-2:] and seg_emb is None and feats.shape[0] == 4
    assert {s["category_id"] for s in info} <= {c.id for c in CATS}
    res = evaluate(net, items, cats, cfg2, torch.device("cpu"))
    assert res.all is not None and 0.0 <= res.all.pq <= 1.0


def test_an_unregistered_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("synthstreets_tiny", ["toy.width=4"])


def test_a_config_without_arch_gets_the_one_default_model_and_two_defaults_are_refused():
    from pss_bench.errors import PssBenchError
    from pss_bench.models.config import Config, config_from_dict
    from pss_bench.models.registry import default_model, register_model, unregister_model

    assert default_model() == "pss"  # registered by reference_model/registration.py, not named by the core
    assert Config().model.arch == "pss"
    assert config_from_dict({"model": {"backbone": "resnet18"}}).model.arch == "pss"

    def nothing(*a, **k):
        raise AssertionError("not called")

    register_model("second_default", training_module=nothing, predict=nothing, default=True)(nothing)
    try:
        with pytest.raises(PssBenchError, match="2 \\(pss, second_default\\).*set model.arch"):
            Config()
        assert config_from_dict({"model": {"arch": "second_default"}}).model.arch == "second_default"  # named: fine
    finally:
        unregister_model("second_default")
    assert default_model() == "pss"


@dataclass
class ModeConfig:
    """A section with a string that takes one of a few values."""

    mode: str = "a"
    label: str = "anything"


def test_a_section_s_choices_are_enforced_and_other_strings_are_free():
    register_section("modal", ModeConfig, choices={"modal.mode": ("a", "b-c")})
    try:
        assert load_config("synthstreets_tiny").modal.mode == "a"
        assert load_config("synthstreets_tiny", ["modal.mode=b-c", "modal.label=zz"]).modal.mode == "b-c"
        with pytest.raises(ConfigError) as exc:
            load_config("synthstreets_tiny", ["modal.mode=c"])
        assert str(exc.value).endswith("modal.mode: must be one of a, b-c, found 'c'")
    finally:
        unregister_section("modal")


def test_predict_s_overrides_are_the_models_inference_sections_and_keys():
    from pss_bench.models.registry import inference_overrides

    sections, keys = inference_overrides()
    assert {"inference", "kmeans"} <= set(sections) and "upsnet" not in sections
    assert "upsnet.embedding" in keys and "upsnet.score_threshold" in keys
    assert not {"upsnet.box_head_dim", "upsnet.anchor_sizes", "upsnet.roi_batch_size"} & set(keys)
