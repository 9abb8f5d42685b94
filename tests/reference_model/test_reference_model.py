"""Configs, registry, network shapes and gradients, checkpoints of the reference model."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from pss_bench.errors import PssBenchError
from pss_bench.models.config import ConfigError, load_config, shipped_configs
from pss_bench.models.backbone import PyramidHead, ResNetFPN
from pss_bench.reference_model.network import SegmentClassifier, with_coords
from pss_bench.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_pretrained_backbone,
    save_checkpoint_payload,
)
from pss_bench.models.registry import create_model, list_models
from pss_bench.structures import Category


def test_shipped_configs_load():
    assert {"cityscapes_r50", "voc_r50", "synthstreets_tiny"} <= set(shipped_configs())
    for name in shipped_configs():
        cfg = load_config(name)
        assert cfg.name == name
        assert cfg.kmeans.iterations == 10 and cfg.loss.kappa == 10.0
    cs = load_config("cityscapes_r50")
    assert cs.model.backbone == "resnet50" and cs.data.crop_size == [512, 1024] and cs.model.deformable


def test_overrides_and_errors(tmp_path):
    cfg = load_config("synthstreets_tiny", ["train.lr=0.5", "kmeans.grid=[2,3]", "model.deformable=false"])
    assert cfg.train.lr == 0.5 and cfg.kmeans.grid == [2, 3] and cfg.model.deformable is False
    with pytest.raises(ConfigError, match="unknown key.*'lrr'"):
        load_config("synthstreets_tiny", ["train.lrr=1"])
    with pytest.raises(ConfigError, match="train.iterations: expected an integer"):
        load_config("synthstreets_tiny", ["train.iterations=abc"])
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        load_config("nope")
    p = tmp_path / "mine.yaml"
    p.write_text("model: {backbone: resnet34}\ntrain: {iterations: 5}\n")
    cfg = load_config(p)
    assert cfg.name == "mine" and cfg.model.backbone == "resnet34" and cfg.train.iterations == 5
    assert cfg.model.embed_dim == 32  # default kept


def _tiny_cfg():
    cfg = load_config("synthstreets_tiny", ["model.fpn_channels=32", "model.head_channels=32", "model.embed_dim=8"])
    cfg.model.num_classes = 3
    return cfg


@pytest.mark.parametrize("deformable,stride,coord", [(True, 4, False), (False, 4, False), (False, 2, False),
                                                     (False, 2, True)])
def test_model_shapes_and_gradients_of_every_part(deformable, stride, coord):
    cfg = _tiny_cfg()
    cfg.model.deformable = deformable
    cfg.model.output_stride = stride
    cfg.model.coord_conv = coord
    assert "pss" in list_models()
    net = create_model("pss", cfg.model)
    x = torch.randn(2, 3, 64, 96)
    out = net(x)
    eh, ew = 64 // stride, 96 // stride
    assert out["embedding"].shape == (2, 8, eh, ew)
    assert out["seed"].shape == (2, 1, 16, 24)  # seeds stay at stride 4
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(2, eh, ew), atol=1e-5)
    logits = net.classifier(out["embedding"][:, :, 0, :5].permute(0, 2, 1).reshape(-1, 8))
    assert logits.shape == (10, 3)
    (out["embedding"][:, 0].sum() + out["seed"].sum() + logits.sum()).backward()
    parts = {"backbone.body": net.backbone.body, "backbone.fpn": net.backbone.fpn, "embed_head": net.embed_head,
             "seed_head": net.seed_head, "classifier": net.classifier}
    if stride == 2:
        parts["decoder"] = net.decoder
    for name, mod in parts.items():
        grads = [p.grad for p in mod.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


def test_coord_conv_gives_the_embedding_head_each_cell_position():
    x = torch.zeros(2, 3, 4, 8)
    y = with_coords(x)
    assert y.shape == (2, 5, 4, 8) and torch.equal(y[:, :3], x)
    assert torch.allclose(y[0, 3, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))  # row centres in [-1, 1]
    assert torch.allclose(y[1, 4, 0], torch.linspace(-0.875, 0.875, 8))  # column centres
    cfg = _tiny_cfg()
    net = create_model("pss", dataclasses.replace(cfg.model, coord_conv=True))
    assert net.embed_head.convs[0].conv.in_channels == cfg.model.fpn_channels + 2
    assert net.seed_head.convs[0].conv.in_channels == cfg.model.fpn_channels  # the embedding head only
    # The positions reach the embedding: the first conv's weights on the two coordinate channels get a gradient.
    net(torch.rand(1, 3, 64, 128))["embedding"][0, 0].sum().backward()
    w_grad = net.embed_head.convs[0].conv.weight.grad
    assert float(w_grad[:, -2:].abs().sum()) > 0


def test_parts_standalone_shapes():
    fpn = ResNetFPN("resnet18", "gn", 16)
    feats = fpn(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 16, 16, 16), (1, 16, 8, 8), (1, 16, 4, 4), (1, 16, 2, 2)]
    head = PyramidHead(16, 8, 5, deformable=True)
    assert head(feats).shape == (1, 5, 16, 16)
    assert SegmentClassifier(5, 7, 3)(torch.randn(4, 5)).shape == (4, 3)


@pytest.mark.parametrize("stride,size", [(4, (13, 18)), (2, (25, 35))])
def test_odd_input_size(stride, size):
    cfg = _tiny_cfg()
    cfg.model.output_stride = stride
    out = create_model("pss", cfg.model)(torch.randn(1, 3, 50, 70))
    assert out["embedding"].shape[-2:] == size
    assert out["seed"].shape[-2:] == (13, 18)


def test_unknown_model():
    with pytest.raises(PssBenchError, match="unknown model 'foo'"):
        create_model("foo", _tiny_cfg().model)


def test_checkpoint_roundtrip(tmp_path):
    cfg = _tiny_cfg()
    cats = [Category(1, "a", False), Category(2, "b", True), Category(3, "c", True)]
    net = create_model("pss", cfg.model)
    path = tmp_path / "ck.pt"
    torch.save(save_checkpoint_payload(net, cfg, cats, iteration=3), path)
    net2, cfg2, cats2, payload = load_checkpoint(path)
    assert cats2 == cats and cfg2.model == cfg.model and payload["iteration"] == 3
    for (k, a), (_, b) in zip(net.state_dict().items(), net2.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="file not found"):
        load_checkpoint(tmp_path / "missing.pt")
    os.mkfifo(tmp_path / "fifo.pt")  # refused, not opened for a read that would block forever
    with pytest.raises(CheckpointError, match="fifo.pt: expected a file, found a special file"):
        load_checkpoint(tmp_path / "fifo.pt")
    # Pickled arbitrary objects are refused (weights_only).
    torch.save({"state_dict": {}, "config": {}, "evil": Category(9, "x", False)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path / "bad.pt")


def test_pretrained_backbone_missing_and_loaded(tmp_path):
    cfg = _tiny_cfg()
    with pytest.raises(CheckpointError, match="no ImageNet weights"):
        load_pretrained_backbone(create_model("pss", cfg.model), tmp_path / "nope.pth", "resnet_tiny")
    cfg.model.backbone = "resnet18"
    net = create_model("pss", cfg.model)
    with pytest.raises(CheckpointError, match=r"download https://download.pytorch.org/models/resnet18-.*--pretrained"):
        load_pretrained_backbone(net, tmp_path / "nope.pth", "resnet18")
    import torchvision

    ref = torchvision.models.resnet18(weights=None, norm_layer=lambda c: torch.nn.GroupNorm(32, c))
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    load_pretrained_backbone(net, tmp_path / "r18.pth", "resnet18")
    assert torch.equal(net.backbone.body.conv1.weight, ref.conv1.weight)


def test_stride_two_decoder_shapes_gradients_and_zero_start():
    cfg = _tiny_cfg()
    cfg.model.output_stride = 2
    cfg.model.deformable = False
    torch.manual_seed(0)
    net = create_model("pss", cfg.model)
    x = torch.randn(2, 3, 64, 96)
    out = net(x)
    assert out["embedding"].shape == (2, 8, 32, 48)  # stride 2
    assert out["seed"].shape == (2, 1, 16, 24)  # centres stay at stride 4
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(2, 32, 48), atol=1e-5)
    # A fresh decoder outputs the bilinearly upsampled stride-4 embedding.
    import torch.nn.functional as F

    feats, stem = net.backbone(x, stem=True)
    assert stem.shape == (2, net.backbone.stem_channels, 32, 48)
    up = F.interpolate(net.embed_head(feats), size=(32, 48), mode="bilinear", align_corners=False)
    assert torch.allclose(out["embedding"], F.normalize(up, dim=1), atol=1e-5)
    out["embedding"][:, 0].sum().backward()
    assert all(p.grad is not None for p in net.decoder.parameters())
    assert net(torch.randn(1, 3, 50, 70))["embedding"].shape[-2:] == (25, 35)
    cfg.model.output_stride = 8
    with pytest.raises(PssBenchError, match="output_stride must be 4 or 2"):
        create_model("pss", cfg.model)


def test_old_checkpoints_keep_their_mse_seed_head(tmp_path):
    cfg = _tiny_cfg()
    net = create_model("pss", cfg.model)
    payload = save_checkpoint_payload(net, cfg, [Category(1, "a", False), Category(2, "b", True), Category(3, "c", True)])
    del payload["config"]["loss"]["seed_loss"]  # written before the focal loss existed
    torch.save(payload, tmp_path / "old.pt")
    _, old_cfg, _, _ = load_checkpoint(tmp_path / "old.pt")
    assert old_cfg.loss.seed_loss == "mse"
    assert load_config("synthstreets_tiny").loss.seed_loss == "focal"


@pytest.mark.parametrize("override,message", [
    ("model.output_stride=3", "model.output_stride: must be 4 or 2, found 3"),
    ("loss.seed_loss=l1", "loss.seed_loss: must be 'focal' or 'mse'"),
    ("train.clip_grad_norm=-1", "train.clip_grad_norm: must be at least 0"),
    ("train.classifier_lr_mult=0", "train.classifier_lr_mult: must be greater than 0"),
    ("inference.smooth_iterations=-1", "inference.smooth_iterations: must be at least 0"),
    ("inference.smooth_kappa=-2", "inference.smooth_kappa: must be at least 0"),
    ("model.coord_conv=maybe", "model.coord_conv: expected true/false"),
])
def test_new_settings_are_checked_where_configs_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("synthstreets_tiny", [override])
