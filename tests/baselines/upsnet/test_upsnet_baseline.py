"""The UPSNet-style baseline: targets, forward/backward on CPU, a short training run, predict."""

from __future__ import annotations

import json

import pytest
import torch

from model_helpers import CATS, UPSNET_SMALL, toy_items
from pss_bench.baselines.upsnet.model import instance_targets
from pss_bench.cli import main
from pss_bench.models.config import load_config
from pss_bench.models.data import collate
from pss_bench.models.checkpoint import load_checkpoint
from pss_bench.models.registry import create_model
from pss_bench.models.predict import predict_panoptic
from pss_bench.models.train import FINAL_NAME, train, training_module

SMALL = UPSNET_SMALL


def small_cfg(*extra):
    cfg = load_config("synthstreets_tiny", [*SMALL, *extra])
    cfg.model.num_classes = len(CATS)
    return cfg


def test_instance_targets_skip_stuff_void_and_crowd():
    item = toy_items(1)[0]
    item["crowd"][item["panoptic"] == item["panoptic"][item["semantic"] == 2][0]] = True  # one person is crowd
    thing_label = torch.tensor([0, 0, 1, 2])
    t = instance_targets(item["panoptic"], item["semantic"], item["crowd"], thing_label)
    assert t["boxes"].shape[0] == t["labels"].shape[0] == t["masks"].shape[0]
    ids = set(t["ids"].tolist())
    assert all(i >= 24000 for i in ids)  # things only
    crowd_ids = set(item["panoptic"][item["crowd"]].tolist())
    assert not ids & crowd_ids
    for k in range(t["boxes"].shape[0]):
        ys, xs = torch.nonzero(t["masks"][k], as_tuple=True)
        assert t["boxes"][k].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        assert set(item["semantic"][t["masks"][k].bool()].tolist()) == {int(t["labels"][k]) + 1}


def test_forward_backward_on_cpu_reaches_every_branch():
    torch.manual_seed(0)
    cfg = small_cfg()
    net = create_model("upsnet", cfg.model, categories=CATS, cfg_all=cfg)
    module = training_module(net, cfg, CATS)
    losses, _ = module(collate(toy_items(2)))
    assert {"objectness", "classifier", "mask", "semantic", "panoptic", "total"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    for part in (net.backbone, net.semantic_head, net.rpn, net.roi_heads.box_predictor, net.roi_heads.mask_predictor):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), type(part).__name__


def test_short_training_lowers_the_loss_and_predicts(tmp_path):
    cfg = small_cfg("train.iterations=30", "train.lr=0.02", "train.warmup_iterations=3", "train.log_every=1",
                    "train.checkpoint_every=30", "train.val_every=0", "data.scale_range=[1.0,1.0]", "data.flip=false")
    items = toy_items(2, seed=1)
    train(cfg, tmp_path / "run", train_dataset=items, categories=CATS)
    recs = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if "loss_total" in l]
    first = sum(r["loss_total"] for r in recs[:5]) / 5
    last = sum(r["loss_total"] for r in recs[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    net, cfg2, cats, payload = load_checkpoint(tmp_path / "run" / FINAL_NAME)
    assert payload["model"] == "upsnet" and "optimizer" not in payload
    ids, info, feats, seg_emb = predict_panoptic(net, items[0]["image"], cats, cfg2)
    assert ids.shape == items[0]["panoptic"].shape and seg_emb is None
    assert feats.shape[0] == 4 * cfg2.model.head_channels  # fcn_feat: the four branches concatenated
    present = set(torch.unique(ids).tolist()) - {0}
    assert present == {s["id"] for s in info}
    assert {s["category_id"] for s in info} <= {c.id for c in CATS}


@pytest.mark.slow
def test_train_baseline_then_predict_writes_a_valid_directory(tmp_path, capsys):
    from pss_bench.data.synthstreets import generate

    synth = tmp_path / "synth"
    generate(synth, train=2, val=2, seed=5, height=64, width=128)
    run = tmp_path / "run"
    assert main(["train-baseline", "upsnet", "--config", "synthstreets_tiny", "--data", str(synth), "--out", str(run),
                 *SMALL[1:], "data.crop_size=[64,128]", "train.iterations=2", "train.checkpoint_every=2",
                 "train.val_every=2", "data.val_max_images=1"]) == 0
    pred = tmp_path / "pred"
    assert main(["predict", str(run / FINAL_NAME), "--data", str(synth), "--split", "val", "--out", str(pred)]) == 0
    manifest = json.loads((pred / "manifest.json").read_text())
    assert manifest["model"] == "upsnet-style" and manifest["embeddings"] == "gt-segments"
    capsys.readouterr()
    assert main(["pq", str(pred), "--json", "-", "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out)["All"] is not None
    assert main(["context-error", str(pred), "--json", "-", "--no-cache"]) == 0


def test_box_maths_stay_float32_under_bf16_autocast():
    """Backbone and semantic head in bf16, RPN / RoI heads / panoptic pasting in float32 (detectron2's rule).

    CPU autocast stands in for CUDA's: the same casts apply to the same ops.
    """
    torch.manual_seed(0)
    cfg = small_cfg()
    net = create_model("upsnet", cfg.model, categories=CATS, cfg_all=cfg)
    seen = {}

    def record(name):
        def hook(module, args, output):
            feats = args[1] if name == "rpn" else args[0]  # rpn(images, features, ...), roi_heads(features, ...)
            seen[name] = {v.dtype for v in feats.values()}
        return hook

    net.rpn.register_forward_hook(record("rpn"))
    net.roi_heads.register_forward_hook(record("roi_heads"))
    net.backbone.register_forward_hook(lambda m, a, out: seen.__setitem__("backbone", {t.dtype for t in out}))
    batch = collate(toy_items(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = net(batch)
    assert seen["backbone"] == {torch.bfloat16}  # autocast is active
    assert seen["rpn"] == {torch.float32} and seen["roi_heads"] == {torch.float32}
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    net.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outs, feats = net.predict(batch["image"])
    assert seen["rpn"] == {torch.float32} and len(outs) == 2
