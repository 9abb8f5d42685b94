"""The overfit test's run with a chosen seed and schedule: PQ of every checkpoint, and inference variants.

The setup is ``tests/reference_model/test_reference_overfit.py``'s own
(:func:`overfit_setup`: the 8 real Cityscapes frames at 1/4 size, the shipped
``synthstreets_tiny`` config), with ``train.seed`` and ``train.iterations``
set here. A checkpoint is kept every ``--every`` iterations and scored on the
training frames (PQ, PQ-Th and its share of the stride cap, PQ-St, and the PQ
of each thing class); the final model is then scored again under each
``--variant`` (inference overrides, e.g. ``inference.merge_threshold=0.7``).
``--checkpoint`` skips the training and scores a given file; ``--out`` keeps
the run folder and the scored checkpoints.

Slow on a CPU: 1,000 iterations took 4,950 s on 1 thread (three runs on two
cores), 1,500 took 6,190 s. Prints one line per
row and, with ``--json``, writes them all.

Usage::

    python bench/reference_overfit.py --seed 2 --iterations 1500 \\
        --variant inference.merge_threshold=0.7 --variant inference.seeded=false
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reference_model"))


def _score(net, items, categories, cfg, cap_th: float) -> dict:
    import torch

    from pss_bench.models.train import evaluate

    r = evaluate(net, items, categories, cfg, torch.device("cpu"))
    return {
        "pq": round(100 * r.all.pq, 1), "pq_th": round(100 * r.things.pq, 1),
        "share_of_cap": round(r.things.pq / cap_th, 3), "pq_st": round(100 * r.stuff.pq, 1),
        "things": {c.name: round(100 * r.per_class[c.id].pq, 1) for c in categories
                   if c.isthing and r.per_class[c.id].present},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="train.seed")
    ap.add_argument("--iterations", type=int, default=1000, help="train.iterations (the test: 1,000)")
    ap.add_argument("--every", type=int, default=250, help="score a checkpoint every this many iterations")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                    help="inference overrides scored on the final model (repeatable)")
    ap.add_argument("--checkpoint", type=Path, help="score this model instead of training one")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--out", type=Path, help="keep the run folder and the scored checkpoints here (a new folder)")
    args = ap.parse_args()

    import torch

    from test_reference_overfit import overfit_setup
    from pss_bench.data.cityscapes import build_panoptic_gt
    from pss_bench.models.checkpoint import load_checkpoint
    from pss_bench.models.config import with_overrides
    from pss_bench.models.train import CHECKPOINT_NAME, FINAL_NAME, train
    from pss_bench.reference_model.oracle import stride_cap

    torch.set_num_threads(args.threads)
    sample = Path(os.environ.get("PSS_BENCH_SAMPLE_DATA", ROOT.parent / "shared" / "data"))
    rows: list[dict] = []

    def report(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory(prefix="pss-bench-overfit-") as tmp:
        tmp = Path(tmp)
        gt_json, gt_dir = build_panoptic_gt(sample / "cityscapes" / "gtFine", "train", tmp / "gt")
        items, categories, cfg = overfit_setup(sample, gt_json, gt_dir, tmp / "cs", f"train.seed={args.seed}",
                                               f"train.iterations={args.iterations}",
                                               f"train.checkpoint_every={args.every}")
        cap_th = stride_cap(items, categories, cfg.model.output_stride).things.pq
        print(f"cap PQ-Th {100 * cap_th:.1f}", flush=True)
        final = args.checkpoint
        if final is None:
            keep_dir = tmp if args.out is None else args.out
            keep_dir.mkdir(parents=True, exist_ok=args.out is None)
            run, kept = keep_dir / "run", []

            def keep(step: int, total: int, record: dict) -> None:  # runs after the checkpoint is written
                if step % args.every == 0 and step < total:
                    kept.append((step, shutil.copy(run / CHECKPOINT_NAME, keep_dir / f"ck_{step}.pt")))

            t = time.perf_counter()
            train(cfg, run, train_dataset=items, categories=categories, progress=keep)
            print(f"trained {args.iterations} iterations in {time.perf_counter() - t:.0f} s "
                  f"({args.threads} thread(s))", flush=True)
            for step, path in kept:
                net, ck_cfg, cats, _ = load_checkpoint(path)
                report({"seed": args.seed, "iteration": step, **_score(net, items, cats, ck_cfg, cap_th)})
            final = run / FINAL_NAME
        net, final_cfg, cats, _ = load_checkpoint(final)
        report({"seed": args.seed, "iteration": "final", **_score(net, items, cats, final_cfg, cap_th)})
        for variant in args.variant:
            overrides = [o for o in variant.split(",") if o]
            report({"seed": args.seed, "iteration": "final", "variant": overrides,
                    **_score(net, items, cats, with_overrides(final_cfg, overrides), cap_th)})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
