"""``upsnet.embedding``: which features the UPSNet-style baseline's Context Error embeddings are pooled from.

Issue 20 item 4 (the Context Error ablation): ``fcn`` (the semantic head's
``fcn_feat``, the default), ``fpn`` (P2) or ``fpn-all`` (P2-P5 at P2's size),
chosen at prediction time on an existing checkpoint.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_helpers import CATS, UPSNET_SMALL, toy_items
from pss_bench.cli import main
from pss_bench.models.checkpoint import save_checkpoint_payload, with_checksum
from pss_bench.models.config import ConfigError, config_from_dict, load_config, with_overrides
from pss_bench.models.predict import predict_panoptic
from pss_bench.models.registry import create_model

# fpn_channels differs from head_channels so that the three choices differ in width: fcn 4 x 16, fpn 24, fpn-all 4 x 24.
SMALL = [*UPSNET_SMALL, "model.fpn_channels=24"]
WIDTH = {"fcn": 64, "fpn": 24, "fpn-all": 96}


def _net(categories, *extra):
    cfg = load_config("synthstreets_tiny", [*SMALL, *extra])
    cfg.model.num_classes = len(categories)
    torch.manual_seed(0)
    net = create_model("upsnet", cfg.model, categories=categories, cfg_all=cfg).eval()
    return net, cfg


def test_the_choices_give_their_features_and_the_same_panoptic_output():
    # score_threshold 0: the untrained detector's instances reach the panoptic head too, so "the same output"
    # covers things as well as stuff.
    net, cfg = _net(CATS, "upsnet.score_threshold=0.0")
    image = toy_items(1, h=50, w=94)[0]["image"]  # not a multiple of 32: P2 is ceil(H/4) x ceil(W/4) after padding
    with torch.no_grad():
        pyramid = net.backbone(image[None])
        fcn = net.semantic_head.features(pyramid)[0]
    p2 = pyramid[0][0]
    assert cfg.upsnet.embedding == "fcn"  # the default: today's features
    out = {}
    for choice in ("fcn", "fpn", "fpn-all"):
        out[choice] = predict_panoptic(net, image, CATS, with_overrides(cfg, [f"upsnet.embedding={choice}"]))
        feats = out[choice][2]
        assert feats.shape == (WIDTH[choice], *p2.shape[-2:]), choice
        assert out[choice][3] is None
    assert torch.equal(out["fcn"][2], fcn)
    assert torch.equal(out["fpn"][2], p2)
    allf = out["fpn-all"][2]
    assert torch.equal(allf[:24], p2)
    for k, p in enumerate(pyramid[1:], 1):
        assert p.shape[-1] < p2.shape[-1]  # a coarser level, resized
        assert torch.equal(allf[24 * k:24 * (k + 1)], F.interpolate(p, size=p2.shape[-2:], mode="bilinear",
                                                                    align_corners=False)[0])
    ids, info = out["fcn"][:2]
    assert len(info) > 2 and any(s["category_id"] in (24, 26) for s in info)  # stuff and things
    for choice in ("fpn", "fpn-all"):
        assert torch.equal(out[choice][0], ids) and out[choice][1] == info, choice


def test_the_thresholds_of_the_given_config_apply_to_a_built_network():
    """predict reads the inference settings of the config it is given (predict's overrides), not the build's."""
    net, cfg = _net(CATS, "upsnet.score_threshold=0.0")
    image = toy_items(1)[0]["image"]
    low = predict_panoptic(net, image, CATS, cfg)[1]
    high = predict_panoptic(net, image, CATS, with_overrides(cfg, ["upsnet.score_threshold=1.0"]))[1]
    things = {24, 26}
    assert any(s["category_id"] in things for s in low)
    assert not any(s["category_id"] in things for s in high)


@pytest.mark.parametrize("value", ["fcm", "FPN", "fpn_all", "''"])
def test_an_unknown_embedding_is_refused_in_one_line(value):
    with pytest.raises(ConfigError) as exc:
        load_config("synthstreets_tiny", [f"upsnet.embedding={value}"])
    msg = str(exc.value)
    assert "\n" not in msg
    assert "upsnet.embedding: must be one of fcn, fpn, fpn-all, found" in msg


def test_a_config_without_the_key_gets_fcn():
    data = load_config("synthstreets_tiny").to_dict()
    del data["upsnet"]["embedding"]
    assert config_from_dict(data).upsnet.embedding == "fcn"


@pytest.fixture(scope="module")
def synth_and_checkpoint(tmp_path_factory):
    """Two SynthStreets val frames and an untrained toy UPSNet-style checkpoint written before ``upsnet.embedding``."""
    from pss_bench.data.synthstreets import generate
    from pss_bench.models.data import build_dataset

    root = tmp_path_factory.mktemp("upsnet_embedding")
    synth = root / "synth"
    generate(synth, train=1, val=2, seed=3, height=64, width=128)
    _, cats = build_dataset("synthstreets", synth, "val")
    net, cfg = _net(cats)
    payload = save_checkpoint_payload(net, cfg, cats)
    del payload["config"]["upsnet"]["embedding"]  # as a checkpoint of an earlier version stores it
    ckpt = root / "old.pt"
    torch.save(with_checksum(payload), ckpt)
    return synth, ckpt


def _embeddings(pred):
    ann = json.loads((pred / "panoptic.json").read_text())["annotations"]
    return {a["image_id"]: np.load(pred / "embeddings" / f"{a['image_id']}.npz")["embeddings"] for a in ann}


def test_predict_takes_upsnet_embedding_on_an_old_checkpoint(synth_and_checkpoint, tmp_path, capsys):
    synth, ckpt = synth_and_checkpoint
    dims = {}
    for choice in ("default", "fpn", "fpn-all"):
        extra = [] if choice == "default" else [f"upsnet.embedding={choice}"]
        assert main(["predict", str(ckpt), "--data", str(synth), "--out", str(tmp_path / choice), *extra]) == 0, \
            capsys.readouterr().err
        embs = _embeddings(tmp_path / choice)
        assert len(embs) == 2 and all(e.shape[0] > 0 for e in embs.values())
        dims[choice] = {e.shape[1] for e in embs.values()}
        assert json.loads((tmp_path / choice / "manifest.json").read_text()).get("overrides") == (extra or None)
    assert dims == {"default": {WIDTH["fcn"]}, "fpn": {WIDTH["fpn"]}, "fpn-all": {WIDTH["fpn-all"]}}
    # Only the embeddings differ: the same panoptic PNGs and segments.
    for choice in ("fpn", "fpn-all"):
        a = json.loads((tmp_path / "default" / "panoptic.json").read_text())["annotations"]
        b = json.loads((tmp_path / choice / "panoptic.json").read_text())["annotations"]
        assert [x["segments_info"] for x in a] == [x["segments_info"] for x in b]
        for x in a:
            png = f"panoptic/{x['file_name']}"
            assert (tmp_path / "default" / png).read_bytes() == (tmp_path / choice / png).read_bytes()


def test_predict_refuses_training_keys_and_unknown_choices(synth_and_checkpoint, tmp_path, capsys):
    synth, ckpt = synth_and_checkpoint
    capsys.readouterr()
    assert main(["predict", str(ckpt), "--data", str(synth), "--out", str(tmp_path / "a"), "upsnet.box_head_dim=8"]) == 2
    err = capsys.readouterr().err
    assert "upsnet.box_head_dim=8" in err and "upsnet.embedding=VALUE" in err and "inference.KEY=VALUE" in err
    assert not (tmp_path / "a").exists()
    assert main(["predict", str(ckpt), "--data", str(synth), "--out", str(tmp_path / "b"), "upsnet.embedding=p2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "upsnet.embedding: must be one of fcn, fpn, fpn-all, found 'p2'" in err
    assert not (tmp_path / "b").exists()
