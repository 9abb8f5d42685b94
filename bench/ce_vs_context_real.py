"""Does the Context Error track true context? ρ(CE, context precision@K) over real model embeddings only.

``bench/ce_vs_context.py`` correlates the CE with the hidden-context
precision mostly over interpolations built from a few embeddings. This one
takes real embeddings only: prediction directories of trained models
(checkpoints along training, ablation variants, training seeds) of the same
SynthStreets frames, whose ``context.json`` holds each instance's hidden
context label. For each: the mean CE and the mean context precision@K over
the classes informative in every directory
(:func:`pss_bench.metrics.seeds.ce_means`), Spearman's ρ between the two
over the embeddings, and a 95% interval of ρ from image resamples (the same
images drawn for every embedding; each resample re-forms its galleries, as
the CE bootstrap does). A lower CE should go with a higher precision: ρ < 0.

Usage::

    python bench/ce_vs_context_real.py --pred NAME=DIR [--pred NAME=DIR ...] [--resamples 1000] [--markdown F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pred", action="append", required=True, help="NAME=PRED_DIR")
    ap.add_argument("--gt", type=Path, default=None)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np
    from scipy.stats import spearmanr

    from pss_bench.evaluation.context_error import score_instances
    from pss_bench.evaluation.instances import load_instances
    from pss_bench.io.panoptic import load_panoptic_json
    from pss_bench.metrics.bootstrap import BootstrapSettings, percentile_interval
    from pss_bench.metrics.seeds import ce_means

    preds = {}
    for p in args.pred:
        name, _, d = p.partition("=")
        preds[name] = Path(d)
    if len(preds) < 3:
        raise SystemExit("error: give at least 3 --pred NAME=DIR")
    t0 = time.perf_counter()
    gt_json = args.gt or Path(json.loads((next(iter(preds.values())) / "manifest.json").read_text())["gt_json"])
    gt = load_panoptic_json(gt_json, None, role="gt")
    indexes = []
    for name, d in preds.items():
        inst = load_instances(d, gt, use_cache=False)
        indexes.append(score_instances(inst, None, k=args.k, index=True).index)
    settings = BootstrapSettings(resamples=args.resamples, seed=args.seed)
    classes, point, boot = ce_means(indexes, settings=settings)
    rho = float(spearmanr(point[:, 0], point[:, 1]).statistic)
    rhos = np.array([spearmanr(boot[b, :, 0], boot[b, :, 1]).statistic for b in range(len(boot))])
    lo, hi = percentile_interval(rhos[:, None], settings.level)
    names = {c.id: c.name for c in gt.categories.values()}
    lines = ["| embedding | mean CE | context P@%d |" % args.k, "|---|---:|---:|"]
    for i, name in enumerate(preds):
        clo, chi = percentile_interval(boot[:, i, :], settings.level)
        lines.append(f"| {name} | {point[i, 0]:.3f} [{clo[0]:.3f}, {chi[0]:.3f}] | "
                     f"{100 * point[i, 1]:.1f} [{100 * clo[1]:.1f}, {100 * chi[1]:.1f}] |")
    text = "\n".join(lines) + (
        f"\n\nSpearman ρ(CE, context P@{args.k}) over {len(preds)} real embeddings: **{rho:+.2f}** "
        f"[{lo[0]:+.2f}, {hi[0]:+.2f}] (95% percentile interval, {args.resamples} image resamples, seed "
        f"{args.seed}); CE over {', '.join(names[c] for c in classes)}; {time.perf_counter() - t0:.0f} s\n")
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
