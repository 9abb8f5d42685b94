"""Does the Context Error measure context? CE against ground-truth context precision@K on SynthStreets.

SynthStreets knows why each instance is where it is (its hidden context
label: a person crossing on a crosswalk, a car parked at the curb, ...).
Context precision@K is the share of an instance's K retrievals that share its
label: a direct, label-based measure of how well an embedding groups
instances by context. The Context Error never sees these labels. If the CE
measures context, embeddings that retrieve same-context instances must get a
lower CE: across embeddings, CE and precision@K must rank alike (a strongly
negative Spearman correlation between mean CE and mean precision@K).

Embeddings (all over the GT segments of one SynthStreets val set):

* ``random``: Gaussian vectors, D = 32.
* ``GT context descriptor``: each instance's own 8-region class histogram
  (square-rooted): what the CE compares, so close to the oracle.
* ``hidden label``: a one-hot of the context label plus noise (precision
  near 100% by construction; the CE has never seen the labels).
* the bundled ``PSS`` and ``UPSNet-style`` checkpoints (``pss-bench predict``);
* interpolations ``a → b`` at weight ``w``: the two L2-normalised vectors
  concatenated as ``[sqrt(1 - w) a, sqrt(w) b]``, whose cosine similarity is
  ``(1 - w) cos_a + w cos_b``.

Writes the table and the Spearman correlations into docs/benchmarks.md
between the ce_vs_context markers. Reuses ``--work`` (data and predictions)
when it exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _docs import replace_block  # noqa: E402

MARK_START, MARK_END = "<!-- ce_vs_context:start -->", "<!-- ce_vs_context:end -->"
SEED = 1  # the demo's val seed: the bundled checkpoints were trained on seed 0


def prepare(work: Path, frames: int, made: list[str]) -> tuple[Path, dict[str, Path]]:
    """The val set and one prediction directory per bundled checkpoint (made once; ``made`` says what was)."""
    from pss_bench.data.synthstreets import generate
    from pss_bench.demo import bundled_checkpoints
    from pss_bench.threads import default_workers
    from pss_bench.models.predict import write_predictions

    data = work / f"synthstreets_val_seed{SEED}_{frames}"
    if not (data / "gtFine" / "cityscapes_panoptic_val.json").is_file():
        generate(data, train=0, val=frames, seed=SEED, workers=default_workers())
        made.append("data")
    preds = {}
    for name, ckpt in bundled_checkpoints().items():
        pred = work / f"pred_{name.lower().replace('-', '_')}"
        if not (pred / "manifest.json").is_file():
            write_predictions(ckpt, data, pred, split="val", overwrite=True)
            made.append(f"{name} predictions")
        preds[name] = pred
    return data / "gtFine" / "cityscapes_panoptic_val.json", preds


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """``[sqrt(1 - w) a, sqrt(w) b]`` of unit vectors: cosine = ``(1 - w) cos_a + w cos_b``."""
    return np.concatenate([np.sqrt(1 - w) * _unit(a), np.sqrt(w) * _unit(b)], axis=1).astype(np.float32)


def aligned(base, other) -> np.ndarray:
    """``other``'s embeddings in ``base``'s instance order (same GT instances)."""
    pos = {(int(i), int(s)): r for r, (i, s) in enumerate(zip(other.image_index, other.segment_ids))}
    rows = [pos[(int(i), int(s))] for i, s in zip(base.image_index, base.segment_ids)]
    return other.embeddings[np.array(rows)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=None,
                    help="SynthStreets val frames (seed 1); default: those of the one val set already in --work "
                         "(the demo's 250 in demo_out), else 300")
    ap.add_argument("--work", type=Path, default=Path("demo_out"),
                    help="folder with (or for) the data and predictions; `make demo` writes the same ones")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()

    from scipy.stats import spearmanr

    from pss_bench.evaluation.context_error import score_instances
    from pss_bench.evaluation.instances import load_instances
    from pss_bench.io.embeddings import load_embeddings

    t0 = time.perf_counter()
    if args.frames is None:
        found = sorted(args.work.glob(f"synthstreets_val_seed{SEED}_*")) if args.work.is_dir() else []
        counts = [int(p.name.rsplit("_", 1)[1]) for p in found if p.name.rsplit("_", 1)[1].isdigit()]
        if len(counts) > 1:
            print(f"error: {args.work} holds val sets of {', '.join(map(str, counts))} frames: choose one with "
                  f"--frames", file=sys.stderr)
            return 2
        args.frames = counts[0] if counts else 300
    made: list[str] = []
    gt_json, preds = prepare(args.work, args.frames, made)
    insts = {name: load_instances(p, gt_json, use_cache=False) for name, p in preds.items()}
    base = next(iter(insts.values()))
    n_gt = len(base.gt.annotations)
    for name, inst in insts.items():
        n_emb = len(load_embeddings(preds[name], [a.image_id for a in inst.gt.annotations])[1])
        if n_gt != args.frames or n_emb < n_gt:
            print(f"error: {preds[name]}: embeddings of {n_emb} of the {n_gt} images of {gt_json} "
                  f"(--frames {args.frames}); the predictions in --work were made for another val set: "
                  f"use --frames with its size or another --work", file=sys.stderr)
            return 1
    if base.labels is None:
        print("error: no context.json next to the GT", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    n = len(base)
    emb: dict[str, np.ndarray] = {"random": rng.normal(size=(n, 32)).astype(np.float32)}
    emb["GT context descriptor"] = np.sqrt(base.distributions.reshape(n, -1)).astype(np.float32)
    labels = sorted({lab for lab in base.labels.tolist() if lab is not None})
    onehot = np.zeros((n, len(labels) + 1))
    onehot[np.arange(n), [labels.index(lab) if lab is not None else len(labels) for lab in base.labels]] = 1.0
    emb["hidden label"] = (onehot + 0.3 * rng.normal(size=onehot.shape)).astype(np.float32)
    for name, inst in insts.items():
        emb[name] = aligned(base, inst)
    models = list(insts)
    pairs = [("random", "GT context descriptor")] + [("random", m) for m in models] + \
        [(m, "GT context descriptor") for m in models]
    paths = {}
    for a, b in pairs:
        paths[f"{a} → {b}"] = [a]
        for w in (0.25, 0.5, 0.75):
            emb[f"{a} → {b}, w={w}"] = mix(emb[a], emb[b], w)
            paths[f"{a} → {b}"].append(f"{a} → {b}, w={w}")
        paths[f"{a} → {b}"].append(b)

    rows = []
    for name, e in emb.items():
        res = score_instances(dataclasses.replace(base, embeddings=np.ascontiguousarray(_unit(e), np.float32)),
                              k=args.k)
        per = {c.name: res.per_class[c.id] for c in res.categories if res.per_class[c.id].queries}
        rows.append((name, res.mean.ce, res.mean.score, res.mean.precision, per))
        print(f"{name:45s} CE {res.mean.ce:.3f} score {res.mean.score:.3f} P@{args.k} {100 * res.mean.precision:.1f}%",
              flush=True)
    ce = np.array([r[1] for r in rows])
    prec = np.array([r[3] for r in rows])
    rho = float(spearmanr(ce, prec).statistic)
    by_name = {r[0]: r for r in rows}
    no_label = [r for r in rows if r[0] != "hidden label"]
    rho_no_label = float(spearmanr([r[1] for r in no_label], [r[3] for r in no_label]).statistic)
    path_rho = {p: float(spearmanr([by_name[e][1] for e in es], [by_name[e][3] for e in es]).statistic)
                for p, es in paths.items()}
    classes = [c for c in rows[0][4] if rows[0][4][c].informative]
    per_class_rho = {}
    for c in classes:
        x = np.array([r[4][c].ce for r in rows])
        y = np.array([r[4][c].precision for r in rows])
        per_class_rho[c] = float(spearmanr(x, y).statistic)
    elapsed = time.perf_counter() - t0

    info = {c: rows[0][4][c].queries for c in classes}
    lines = [
        MARK_START,
        f"Measured {time.strftime('%Y-%m-%d')}: SynthStreets val of seed {SEED}, {args.frames} frames "
        f"({n:,} instances; informative classes and queries: "
        f"{', '.join(f'{c} {q}' for c, q in info.items())}), K = {args.k}, {len(rows)} embeddings, "
        f"{elapsed:.0f} s ({'including ' + ', '.join(made) if made else 'data and predictions reused from --work'}).",
        "",
        f"Command: `python bench/ce_vs_context.py --frames {args.frames} --work {args.work}`",
        "",
        f"| embedding | mean CE | score | context P@{args.k} |",
        "|---|---:|---:|---:|",
    ]
    for name, m_ce, score, p, _ in sorted(rows, key=lambda r: r[1]):
        lines.append(f"| {name} | {m_ce:.3f} | {score:.2f} | {100 * p:.1f}% |")
    lines += [
        "",
        f"Spearman correlation between mean CE and mean context precision@{args.k} (−1: the CE ranks the "
        f"embeddings exactly as precision@K does, lower CE = higher precision):",
        "",
        "| embeddings | Spearman ρ(CE, P@K) |",
        "|---|---:|",
        f"| all {len(rows)} | {rho:.3f} |",
        f"| all but `hidden label` | {rho_no_label:.3f} |",
    ]
    lines += [f"| path {p} (5 points) | {r:.3f} |" for p, r in path_rho.items()]
    lines += [f"| all {len(rows)}, class {c} only | {r:.3f} |" for c, r in per_class_rho.items()]
    lines.append(MARK_END)
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        replace_block(block, MARK_START, MARK_END, "Does the Context Error measure context?")
    return 0


if __name__ == "__main__":
    sys.exit(main())
