"""PSS inference settings on validation frames: the network once per frame, the post-processing per setting.

Every combination of the ``--try`` values (a grid) is scored with the
in-memory PQ accumulator on the first ``--frames`` frames of ``--data``'s
``val`` split; the checkpoint's own config gives every value not tried. The
table is sorted by PQ, best first, with the checkpoint's own setting marked.
Choose settings on validation frames, never on the frames a verdict is
reported on.

Usage::

    python bench/inference_sweep.py CHECKPOINT --data DIR [--frames 100] \\
        --try inference.seed_threshold=0.3,0.5,0.7 --try inference.thing_score_threshold=0.5,0.8 \\
        [--try "inference.grid=[8,16];[12,24]"] [--top 20]

Values are comma-separated, or semicolon-separated when a value holds a
comma (a grid).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path


def _values(spec: str) -> tuple[str, list]:
    key, _, vals = spec.partition("=")
    if not key.startswith("inference.") or not vals:
        raise SystemExit(f"--try {spec!r}: expected inference.KEY=V1,V2,...")
    parts = vals.split(";") if ";" in vals else vals.split(",")
    return key.split(".", 1)[1], [json.loads(p) for p in parts]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--try", dest="tries", action="append", default=[], metavar="inference.KEY=V1,V2")
    ap.add_argument("--top", type=int, default=0, help="print only the best N rows (0: all)")
    args = ap.parse_args()

    import torch

    from pss_bench.metrics.pq import PanopticQuality
    from pss_bench.models.checkpoint import load_checkpoint
    from pss_bench.models.data import build_dataset
    from pss_bench.reference_model.postprocess import panoptic_inference, to_panoptic

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    net, cfg, cats, _ = load_checkpoint(args.checkpoint)
    if cfg.model.arch != "pss":
        raise SystemExit(f"{args.checkpoint}: a PSS checkpoint is needed, found {cfg.model.arch}")
    grid = [_values(t) for t in args.tries]
    ds, _ = build_dataset(cfg.data.dataset, args.data, "val")
    n = min(args.frames, len(ds))
    thing = torch.tensor([c.isthing for c in cats])
    cat_ids = [c.id for c in cats]
    frames = []
    with torch.no_grad():
        for i in range(n):
            out = net(ds[i]["image"][None])
            seed = out["seed"][0, 0].float()
            frames.append((out["embedding"][0].float(), torch.sigmoid(seed) if cfg.loss.seed_loss == "focal" else seed,
                           ds.inner.reader[i]))
    own = {k: getattr(cfg.inference, k) for k, _ in grid}
    rows = []
    for combo in itertools.product(*(v for _, v in grid)):
        setting = dict(zip((k for k, _ in grid), combo))
        inf = dataclasses.replace(cfg.inference, **setting)
        m = PanopticQuality(cats)
        for emb, seed, sample in frames:
            res = panoptic_inference(emb, net.classifier, thing, inf, seed_map=seed, iterations=cfg.kmeans.iterations,
                                     coord_weight=cfg.kmeans.coord_weight,
                                     kmeans_pool=2 if cfg.model.output_stride == 2 else 1)
            ids, info = to_panoptic(res, cat_ids, sample.panoptic.shape)
            m.update(sample.panoptic, sample.segments, ids.numpy(), info)
        r = m.compute()
        rows.append((r.all.pq, r.things.pq, r.stuff.pq, setting))
        print(json.dumps({**setting, "PQ": round(100 * r.all.pq, 2), "PQ-Th": round(100 * r.things.pq, 2)}),
              file=sys.stderr, flush=True)
    rows.sort(key=lambda x: -x[0])
    print(f"{args.checkpoint}, {n} val frames of {args.data}, {len(rows)} settings "
          f"({time.perf_counter() - t0:.0f} s); * = the checkpoint's own\n")
    keys = [k for k, _ in grid]
    print("| " + " | ".join(keys) + " | PQ | PQ-Th | PQ-St |")
    print("|" + "---|" * len(keys) + "---:|---:|---:|")
    for pq, th, st, setting in rows[: args.top or None]:
        mark = " *" if setting == own else ""
        print("| " + " | ".join(json.dumps(setting[k]) for k in keys) + f" | {100 * pq:.1f}{mark} | {100 * th:.1f} | "
              f"{100 * st:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
