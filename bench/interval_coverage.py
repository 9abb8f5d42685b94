"""Do the bootstrap's 95% intervals keep their promise? Coverage and false positives, before and after issue 21.

Simulated studies with a known answer (bench/_coverage_worlds.py):

* **PQ** (``--studies-pq`` studies per cell): two models of equal quality on
  the same images; per class GT segments, matches, IoUs and false positives
  drawn per image; an FP-only class; world ``rare`` adds a class in 6% of
  images with one segment. Coverage: the 95% interval of model A's PQ / PQ-Th
  / PQ-St contains the truth (the mean over the study's classes of each
  class's ratio of expected sums). False positives: the paired test of
  ΔPQ = B − A says p < 0.05 (the two models are exchangeable: the true Δ is 0).
* **Context Error** (``--studies-ce`` per cell): a pool of ``--pool``
  SynthStreets val frames (seed 1, 128x256); each study draws n frames without
  replacement, scores two equally good embeddings (hidden context label
  one-hot + box position + independent noise) with the study's own instances
  as the gallery, as ``compare`` does. Coverage: the interval of model A's mean
  CE contains the study's truth, the mean over the classes of its mean of each
  class's expected CE in a study of n frames (each class's CE averaged over the
  cell's studies and ``--extra`` more whose mean has it), as the PQ truth is
  the mean over the study's classes. False positives: the paired test of ΔCE
  says p < 0.05.

"before" is the bootstrap of commit 0648b9f (read from git: per-class query
resampling with fixed retrievals; PQ means over the classes of each resample;
plain percentile), "after" this tree's; the PQ table also has the bootstrap of
commit f4913b5 ("FP-only rule": FP-only classes kept at 0, expanded percentile,
few-segment classes only flagged), the one before the few-segment posterior,
and that of commit 48943f2 ("GT classes": the posterior for classes with 1-9 GT
segments only; a class without GT kept at PQ 0).
Writes the tables into docs/statistics.md between the interval_coverage
markers; with --skip-ce (--skip-pq) the Context Error (PQ) part already
there is kept as it is.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _coverage_worlds import PQWorld, synth_embeddings, synth_pool  # noqa: E402
from _docs import replace_block  # noqa: E402

from pss_bench.metrics.bootstrap import BootstrapSettings, bootstrap_context_error, bootstrap_pq  # noqa: E402
from pss_bench.metrics.ce_resample import build_ce_index, query_values  # noqa: E402
from pss_bench.metrics.results import QueryScores  # noqa: E402

MARK_START, MARK_END = "<!-- interval_coverage:start -->", "<!-- interval_coverage:end -->"
OLD_COMMIT = "0648b9f"
#: The PQ bootstrap before the few-segment posterior (FP-only classes at 0, few-segment classes only flagged).
FP_RULE_COMMIT = "f4913b5"
#: The PQ bootstrap with the posterior for classes with 1-9 GT segments only (a class without GT at PQ 0).
FEW_GT_COMMIT = "48943f2"


def old_bootstrap(commit: str = OLD_COMMIT):
    """The bootstrap module of ``commit``, imported from git under another name."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:pss_bench/metrics/bootstrap.py"],
                         check=True, capture_output=True, text=True).stdout
    name = f"old_bootstrap_{commit}"
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


PQ_VERSIONS = ("before", "fp_rule", "few_gt", "after")


def pq_cells(world: PQWorld, n: int, studies: int, b: int, old, fp_rule, few_gt, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = ("All", "Things", "Stuff")
    res = {v: {r: {"cov": 0, "fp": 0, "flag": 0, "no_gt": 0, "cov_seen": 0, "width": 0.0} for r in rows}
           for v in PQ_VERSIONS}
    for s in range(studies):
        m = world.draw(rng, n)
        a, bb = world.stats(m[0], n), world.stats(m[1], n)
        present = (m[0][1] + m[0][2] + m[0][3]).sum(0) > 0
        for v, mod in (("before", old), ("fp_rule", fp_rule), ("few_gt", few_gt), ("after", None)):
            if mod is None:
                out = bootstrap_pq([a, bb], settings=BootstrapSettings(b, 0.95, s))
            else:
                out = mod.bootstrap_pq([a, bb], settings=mod.BootstrapSettings(b, 0.95, s))
            for r, sel in (("All", np.ones_like(world.isthing)), ("Things", world.isthing),
                           ("Stuff", ~world.isthing)):
                truth = world.truth[present & sel].mean()
                iv = out.models[0].rows[r]["pq"]
                x = res[v][r]
                x["cov"] += iv.low <= truth <= iv.high
                x["width"] += iv.high - iv.low
                x["fp"] += bool(out.differences[1].rows[r]["pq"].significant)
                if v == "after":
                    x["flag"] += bool(out.models[0].few_segments.get(r))
                    no_gt = bool(out.models[0].no_gt.get(r))
                    x["no_gt"] += no_gt
                    x["cov_seen"] += (not no_gt) and iv.low <= truth <= iv.high
    return res


def kept_part(start: str) -> list[str]:
    """The lines of the block in docs/statistics.md from the first line starting with ``start`` to the block's end
    (to its CE part with ``start = "Context Error"``), or up to ``Context Error`` with ``start = "PQ"``."""
    text = (ROOT / "docs" / "statistics.md").read_text()
    if MARK_START not in text:
        return []
    body = text.split(MARK_START, 1)[1].split(MARK_END, 1)[0].strip("\n").split("\n")
    i = next((k for k, x in enumerate(body) if x.startswith(start) or x.startswith(f"| {start}")), None)
    if i is None:
        return []
    j = next((k for k, x in enumerate(body) if k > i and x.startswith("Context Error")), len(body)) \
        if start == "PQ" else len(body)
    return body[i:j]


def ce_cells(pool: dict, n: int, k: int, studies: int, extra: int, b: int, old, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    frames = int(pool["img"].max()) + 1
    cats = pool["categories"]
    points, ivs, fps = [], {"before": [], "after": []}, {"before": 0, "after": 0}
    class_sets, class_ce = [], []  # per study: the classes of its mean, and each class's CE
    t0 = time.perf_counter()
    for s in range(studies + extra):
        pick = np.sort(rng.choice(frames, n, replace=False))
        rows = np.flatnonzero(np.isin(pool["img"], pick))
        img = np.searchsorted(pick, pool["img"][rows])
        idx = [build_ce_index(cats, k, n, pool["cls"][rows], img, rows, synth_embeddings(rng, pool, rows),
                              pool["dist"][rows], labels=pool["lab"][rows]) for _ in range(2)]
        if s >= studies:  # point estimate only
            out = bootstrap_context_error(idx[:1], settings=BootstrapSettings(1, 0.95, s))
        else:
            out = bootstrap_context_error(idx, settings=BootstrapSettings(b, 0.95, s))
        a = out.models[0]
        points.append(a.mean["ce"].estimate)
        class_sets.append(a.classes)
        class_ce.append({c: a.per_class[c]["ce"].estimate for c in a.classes})
        if s >= studies:
            continue
        iv = a.mean["ce"]
        ivs["after"].append((iv.low, iv.high))
        fps["after"] += bool(out.differences[1].ce.significant)
        tables = [_query_table(x) for x in idx]
        o = old.bootstrap_context_error(tables, settings=old.BootstrapSettings(b, 0.95, s))
        iv = o.models[0].mean["ce"]
        ivs["before"].append((iv.low, iv.high))
        fps["before"] += bool(o.differences[1].ce.significant)
    # The truth of a study, as for PQ: the mean over the classes of its mean (those with more than K other
    # instances) of each class's expected CE in a study of n images, estimated over the studies (and the
    # extra ones) whose mean has that class. (The mean of all point estimates mixes studies with different
    # class sets, e.g. a class that has more than K instances in only some studies of 50 images.)
    expect = {c: float(np.mean([d[c] for d in class_ce if c in d])) for d0 in class_ce for c in d0}
    truth = np.array([np.mean([expect[c] for c in cs]) for cs in class_sets])
    dev = np.array(points) - truth
    out = {"truth": float(np.mean(truth)), "sd": float(np.std(dev)), "seconds": time.perf_counter() - t0,
           "class_sets": len(set(class_sets))}
    t = truth[:studies]
    for v in ("before", "after"):
        x = np.array(ivs[v])
        out[v] = {"cov": int(np.sum((x[:, 0] <= t) & (t <= x[:, 1]))), "fp": fps[v],
                  "width": float(np.mean(x[:, 1] - x[:, 0]))}
    return out


def _query_table(index) -> QueryScores:
    """The per-query values of an index's evaluated set: what the old bootstrap resampled."""
    cls, keys, vals = [], [], []
    for c, ci in sorted(index.classes.items()):
        q = query_values(ci, np.ones((1, len(ci))), index.k)[0]
        cls.append(np.full(len(ci), c))
        keys.append(ci.keys)
        vals.append(q)
    v = np.concatenate(vals)
    return QueryScores(index.categories, index.k, np.concatenate(cls), np.concatenate(keys), v[:, 0], v[:, 1],
                       v[:, 2], v[:, 3], index.others)


def pct(x: int, n: int) -> str:
    return f"{100 * x / n:.1f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies-pq", type=int, default=1000)
    ap.add_argument("--studies-ce", type=int, default=200, help="studies per CE cell at n = 50")
    ap.add_argument("--studies-ce-250", type=int, default=60, help="studies per CE cell at n = 250")
    ap.add_argument("--extra", type=int, default=100, help="point-estimate-only studies for the CE truth")
    ap.add_argument("--resamples", type=int, default=500)
    ap.add_argument("--pool", type=int, default=2000, help="SynthStreets frames in the CE pool")
    ap.add_argument("--work", type=Path, default=Path("bench_out"), help="where the frame pool is cached")
    ap.add_argument("--skip-ce", action="store_true")
    ap.add_argument("--skip-pq", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/statistics.md alone")
    args = ap.parse_args()
    old = old_bootstrap()
    t_start = time.perf_counter()
    lines = []
    cmd = " ".join(["python bench/interval_coverage.py", *sys.argv[1:]])
    if not args.skip_pq:
        fp_rule, few_gt = old_bootstrap(FP_RULE_COMMIT), old_bootstrap(FEW_GT_COMMIT)
        t_pq = time.perf_counter()
        pq_lines = ["| world | n | row | studies | coverage before / FP-only rule / GT classes / after | "
                    "p<0.05 before / FP-only rule / GT classes / after | mean width FP-only rule / GT classes / after | "
                    "rows with a few-segment class | rows with a class without GT | coverage after, rows without one |",
                    "|---|---:|---|---:|---|---|---|---:|---:|---:|"]
        for name, rare in (("FP-only class", False), ("FP-only + rare class", True)):
            world = PQWorld(rare)
            for n in (20, 50, 250):
                r = pq_cells(world, n, args.studies_pq, args.resamples, old, fp_rule, few_gt, seed=n + 1000 * rare)
                for row in ("All", "Things", "Stuff"):
                    bf, fr, fg, af = (r[v][row] for v in PQ_VERSIONS)
                    s = args.studies_pq
                    seen = s - af["no_gt"]
                    pq_lines.append(
                        f"| {name} | {n} | PQ {row} | {s} | {pct(bf['cov'], s)} / {pct(fr['cov'], s)} / "
                        f"{pct(fg['cov'], s)} / {pct(af['cov'], s)} | {pct(bf['fp'], s)} / {pct(fr['fp'], s)} / "
                        f"{pct(fg['fp'], s)} / {pct(af['fp'], s)} | {100 * fr['width'] / s:.1f} / "
                        f"{100 * fg['width'] / s:.1f} / {100 * af['width'] / s:.1f} | {pct(af['flag'], s)} | "
                        f"{pct(af['no_gt'], s)} | {pct(af['cov_seen'], seen) if seen else '-'} |")
                print("\n".join(pq_lines[-3:]), flush=True)
        lines += [f"PQ ({(time.perf_counter() - t_pq) / 60:.0f} min): `{cmd}`; widths in PQ points", "", *pq_lines]
    else:
        lines += kept_part("PQ")
    if args.skip_ce:
        kept = kept_part("Context Error")
        if kept:
            lines += ["", *kept]
    else:
        cache = args.work / f"coverage_pool_{args.pool}.npz"
        if cache.is_file():
            z = np.load(cache, allow_pickle=True)
            pool = {k: z[k] for k in z.files}
            pool["categories"] = tuple(pool["categories"].tolist())
        else:
            pool = synth_pool(args.pool)
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **{k: (np.array(v, dtype=object) if k == "categories" else v) for k, v in pool.items()})
        t_ce = time.perf_counter()
        ce_lines = ["| Context Error | n | K | studies | class sets | coverage before | coverage after | "
                    "p<0.05 before | p<0.05 after | width before / after / needed | seconds |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for n in (50, 250):
            for k in (5, 20):
                s = args.studies_ce if n == 50 else args.studies_ce_250
                if s == 0:
                    continue
                r = ce_cells(pool, n, k, s, args.extra, args.resamples, old, seed=10 * n + k)
                bf, af = r["before"], r["after"]
                ce_lines.append(f"| mean CE, ΔCE | {n} | {k} | {s} | {r['class_sets']} | {pct(bf['cov'], s)} | "
                                f"{pct(af['cov'], s)} | "
                                f"{pct(bf['fp'], s)} | {pct(af['fp'], s)} | {bf['width']:.3f} / "
                                f"{af['width']:.3f} / {2 * 1.96 * r['sd']:.3f} | {r['seconds']:.0f} |")
                print(ce_lines[-1], flush=True)
        lines += ["", f"Context Error ({(time.perf_counter() - t_ce) / 60:.0f} min): `{cmd}`; CE pool {args.pool} "
                  f"SynthStreets frames; a study's truth = the mean over the classes of its mean of each class's expected "
                  f"CE at n (the mean of that class's CE over the cell's studies and {args.extra} more that have it in "
                  f"their mean); \"class sets\" = how many different sets of classes the studies' means had; width = "
                  f"mean interval width, \"needed\" = 2 x 1.96 x the standard deviation of the point estimates' "
                  f"deviations from their truths.", "", *ce_lines]
    elapsed = time.perf_counter() - t_start
    block = "\n".join([
        MARK_START,
        f"Measured {time.strftime('%Y-%m-%d')} on this 2-core machine shared with other jobs "
        f"(1-minute load {os.getloadavg()[0]:.1f} at the end), {elapsed / 60:.0f} min; {args.resamples} resamples "
        f"per study; a part not run by this command is kept from the previous measurement, with its own command.",
        "",
        *lines,
        MARK_END,
    ])
    print(block)
    if not args.no_write:
        replace_block(block, MARK_START, MARK_END, "Coverage and false positives",
                      doc=ROOT / "docs" / "statistics.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
