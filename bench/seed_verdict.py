"""The verdict between architectures across training seeds: means, spreads, image and two-level intervals.

Each ``--group NAME=DIR,DIR,...`` is one architecture's prediction
directories (``pss-bench predict`` output, one per training run), all of the
same unseen frames; the first group is the reference of the differences.
Everything is scored once (``compare_models``), then
:func:`pss_bench.metrics.seeds.seed_study` gives per metric the runs'
values, mean, sd and range, the image-bootstrap interval of the mean over
runs, the two-level interval (training runs and images resampled), and for
each later group the difference with both p-values and Welch's t-test on the
runs. ``--runs NAME=RUN,RUN,...`` names the training folders of a group, in
the same order: the table then says which run has the median *validation*
PQ (the last ``val`` record of its ``log.jsonl``), the one to bundle.

Usage::

    python bench/seed_verdict.py --group PSS=p0,p1,p2 --group UPSNet-style=u0,u1,u2 \\
        [--runs PSS=r0,r1,r2 --runs UPSNet-style=s0,s1,s2] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

NAMES = {"pq": "PQ", "pq_th": "PQ-Th", "pq_st": "PQ-St", "sq": "SQ", "rq": "RQ", "ce": "mean CE",
         "precision": "context P@K"}
PERCENT = {"pq", "pq_th", "pq_st", "sq", "rq", "precision"}


def _pairs(values: list[str], what: str) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for v in values:
        name, sep, dirs = v.partition("=")
        if not sep or not name or not dirs:
            raise SystemExit(f"error: {what} {v!r}: expected NAME=DIR[,DIR...]")
        out[name] = [Path(d) for d in dirs.split(",") if d]
    return out


def _val_pq(run: Path) -> float | None:
    """The last validation PQ (All) in a run's log, or ``None``."""
    last = None
    log = run / "log.jsonl"
    if not log.is_file():
        return None
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if isinstance(rec.get("val"), dict):
            last = rec["val"]["all"]["pq"]
    return last


def _fmt(m: str, x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}" if m in PERCENT else f"{x:.3f}"


def _fmt_d(m: str, x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:+.1f}" if m in PERCENT else f"{x:+.3f}"


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


def markdown(study, medians: dict[str, str]) -> str:
    metrics = list(study.groups[0].values)
    head = "| model | " + " | ".join(NAMES[m] for m in metrics) + " |"
    lines = [head, "|---|" + "---:|" * len(metrics)]
    for g in study.groups:
        runs = " / ".join(g.labels)
        lines.append(f"| **{g.name}** runs ({runs}) | "
                     + " | ".join(" / ".join(_fmt(m, x) for x in g.values[m]) for m in metrics) + " |")
        lines.append(f"| {g.name} mean ± sd | "
                     + " | ".join(f"{_fmt(m, g.mean[m])} ± {_fmt(m, g.sd[m]).lstrip('+')}" for m in metrics) + " |")
        lines.append(f"| {g.name} two-level 95% CI | "
                     + " | ".join(f"[{_fmt(m, g.two_level[m].low)}, {_fmt(m, g.two_level[m].high)}]"
                                  for m in metrics) + " |")
        lines.append(f"| {g.name} image 95% CI (runs fixed) | "
                     + " | ".join(f"[{_fmt(m, g.images[m].low)}, {_fmt(m, g.images[m].high)}]"
                                  for m in metrics) + " |")
    for d in study.differences:
        lines.append(f"| **Δ {d.name} − {d.reference}** (two-level CI) | "
                     + " | ".join(f"{_fmt_d(m, d.two_level[m].estimate)} [{_fmt_d(m, d.two_level[m].low)}, "
                                  f"{_fmt_d(m, d.two_level[m].high)}]" for m in metrics) + " |")
        lines.append("| p: two-level / images only / Welch (runs) | "
                     + " | ".join(f"{_p(d.two_level[m].p_value)} / {_p(d.images[m].p_value)} / {_p(d.welch_p[m])}"
                                  for m in metrics) + " |")
    out = "\n".join(lines) + "\n"
    if medians:
        out += "\n" + "; ".join(f"{k}: {v}" for k, v in medians.items()) + "\n"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", action="append", required=True, help="NAME=PRED_DIR,PRED_DIR,... (one per run)")
    ap.add_argument("--runs", action="append", default=[], help="NAME=RUN_DIR,... (training folders, same order)")
    ap.add_argument("--gt", type=Path, default=None, help="GT panoptic JSON (default: the first manifest's)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-classes", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()

    from pss_bench.evaluation.compare import compare_models
    from pss_bench.metrics.bootstrap import BootstrapSettings
    from pss_bench.metrics.seeds import RunStats, seed_study

    groups = _pairs(args.group, "--group")
    runs = _pairs(args.runs, "--runs")
    if len(groups) < 1:
        raise SystemExit("error: give at least one --group")
    dirs = list(dict.fromkeys(d for ds in groups.values() for d in ds))  # a directory is scored once
    gt = args.gt
    if gt is None:
        manifest = json.loads((dirs[0] / "manifest.json").read_text())
        gt = Path(manifest["gt_json"])
    t0 = time.perf_counter()
    # One resample: compare_models then keeps what the seed study needs (per-image PQ statistics and
    # the Context Error index); the study draws its own resamples.
    result = compare_models(dirs, gt, k=args.k, names=[str(d) for d in dirs], all_classes=args.all_classes,
                            bootstrap=BootstrapSettings(resamples=1, seed=args.seed))
    by_dir = {m.name: m for m in result.models}
    stats = {}
    for name, ds in groups.items():
        stats[name] = [RunStats(d.name, by_dir[str(d)].pq.images if by_dir[str(d)].pq else None,
                                by_dir[str(d)].context_error.index if by_dir[str(d)].context_error else None)
                       for d in ds]
    study = seed_study(stats, settings=BootstrapSettings(resamples=args.resamples, seed=args.seed),
                       all_classes=args.all_classes)
    medians = {}
    for name, rs in runs.items():
        vals = [(_val_pq(r), r.name) for r in rs]
        known = sorted((v, n) for v, n in vals if v is not None)
        if known:
            med = known[(len(known) - 1) // 2]
            medians[name] = ("validation PQ " + ", ".join(f"{n} {100 * v:.1f}" for v, n in vals if v is not None)
                             + f": median {med[1]}")
    cats = {c.id: c.name for c in result.categories}
    text = markdown(study, medians)
    text += (f"\n{study.n_images} images; CE over {', '.join(cats[c] for c in study.ce_classes)}; "
             f"{args.resamples} resamples (seed {args.seed}); {time.perf_counter() - t0:.0f} s\n")
    print(text)
    if args.json:
        args.json.write_text(json.dumps({**study.to_dict(), "validation": medians}, indent=1))
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
