"""Timing of the reference model: ``python -m pss_bench.reference_model.speed``.

Measures, on random inputs with box-shaped panoptic labels, the forward+backward
time per image of a training step (network + k-means + all losses) and the
inference time of one frame (network + post-processing). Prints JSON on stdout.

Examples::

    python -m pss_bench.reference_model.speed train --config synthstreets_tiny --batch 4
    python -m pss_bench.reference_model.speed infer --config cityscapes_r50 --size 1024 2048
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _random_batch(b: int, h: int, w: int, num_classes: int, n_things: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    pan = torch.zeros(b, h, w, dtype=torch.long)
    sem = torch.full((b, h, w), 255, dtype=torch.long)
    stuff = max(1, num_classes - n_things)
    band = max(1, h // stuff)
    for c in range(stuff):
        pan[:, c * band : (c + 1) * band] = 1 + c
        sem[:, c * band : (c + 1) * band] = c
    for k in range(12):
        y = int(torch.randint(0, h * 3 // 4, (1,), generator=g))
        x = int(torch.randint(0, w * 7 // 8, (1,), generator=g))
        hh, ww = int(h * (0.05 + 0.2 * torch.rand((), generator=g))), int(w * (0.03 + 0.1 * torch.rand((), generator=g)))
        pan[:, y : y + hh, x : x + ww] = 1000 + k
        sem[:, y : y + hh, x : x + ww] = stuff + k % max(1, n_things)
    return {"image": torch.randn(b, 3, h, w, generator=g), "panoptic": pan, "semantic": sem,
            "crowd": torch.zeros(b, h, w, dtype=torch.bool)}


def time_train(cfg, batch: int, iters: int, device: str = "cpu", num_classes: int = 19, n_things: int = 8) -> dict:
    """Seconds per image of forward + losses + backward + SGD step (median and min over ``iters``,
    after one warm-up iteration; on a shared machine the min is the undisturbed time)."""
    from pss_bench.reference_model.registry import create_model
    from pss_bench.reference_model.train import PSSTrainingModule, build_optimizer

    cfg.model.num_classes = num_classes
    net = create_model("pss", cfg.model)
    thing = torch.tensor([i >= num_classes - n_things for i in range(num_classes)])
    module = PSSTrainingModule(net, cfg, thing).to(device)
    opt = build_optimizer(module, cfg)
    h, w = cfg.data.crop_size
    data = {k: v.to(device) for k, v in _random_batch(batch, h, w, num_classes, n_things).items()}
    times = []
    for i in range(iters + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        losses, _ = module(data)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i > 0:  # first iteration warms up
            times.append(time.perf_counter() - t)
    times.sort()
    return {"config": cfg.name, "crop": [h, w], "batch": batch, "device": device, "threads": torch.get_num_threads(),
            "iters": len(times), "s_per_iter_median": times[len(times) // 2], "s_per_iter_min": times[0],
            "s_per_image_median": times[len(times) // 2] / batch, "s_per_image_min": times[0] / batch}


@torch.no_grad()
def time_infer(cfg, size: tuple[int, int], iters: int, device: str = "cpu", num_classes: int = 19, n_things: int = 8) -> dict:
    """Seconds of network + post-processing for one frame (median), with the network alone."""
    from pss_bench.reference_model.postprocess import panoptic_inference
    from pss_bench.reference_model.registry import create_model

    cfg.model.num_classes = num_classes
    net = create_model("pss", cfg.model).to(device).eval()
    thing = torch.tensor([i >= num_classes - n_things for i in range(num_classes)], device=device)
    x = torch.randn(1, 3, *size, device=device)
    tot, netonly = [], []
    for i in range(iters + 1):
        t = time.perf_counter()
        o = net(x)
        t1 = time.perf_counter()
        panoptic_inference(o["embedding"][0], net.classifier, thing, cfg.inference, seed_map=o["seed"][0, 0],
                           iterations=cfg.kmeans.iterations, coord_weight=cfg.kmeans.coord_weight)
        t2 = time.perf_counter()
        if i > 0 or iters == 0:
            tot.append(t2 - t)
            netonly.append(t1 - t)
    tot.sort()
    netonly.sort()
    return {"config": cfg.name, "size": list(size), "device": device, "threads": torch.get_num_threads(),
            "s_per_frame_median": tot[len(tot) // 2], "s_per_frame_min": tot[0],
            "s_network_median": netonly[len(netonly) // 2]}


def main(argv=None) -> None:
    from pss_bench.reference_model.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["train", "infer"])
    ap.add_argument("--config", default="synthstreets_tiny")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--size", type=int, nargs=2, default=[1024, 2048])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args(argv)
    cfg = load_config(a.config, a.overrides)
    if a.mode == "train":
        res = time_train(cfg, a.batch, a.iters, a.device)
    else:
        res = time_infer(cfg, tuple(a.size), a.iters, a.device)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
