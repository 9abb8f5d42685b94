"""Simulated worlds with a known answer for bench/interval_coverage.py.

* PQ: per-image statistics of two models of equal quality, drawn from per-class
  processes (GT segments per image, match probability, IoU of a match, false
  positives per image), with an FP-only class (false positives, never GT) and,
  in the ``rare`` world, a class in 6% of images with one segment. The truth of
  a class is the ratio of expected sums (a 2-million-image Monte Carlo), of a
  row the mean over the classes the study evaluated.
* Context Error: a pool of SynthStreets frames (their real contexts, computed
  as the evaluation computes them); two equally good embeddings of each
  instance: its hidden context label one-hot + its box position + independent
  noise, as in issue 21.
"""

from __future__ import annotations

import numpy as np

from pss_bench.metrics.pq import PQImageStats
from pss_bench.structures import Category, Segments

# class: (isthing, P(image has it), mean GT segments when present, P(match), false positives per image)
PQ_SPEC = [
    (False, 1.0, 1.0, 0.92, 0.05), (False, 0.95, 1.0, 0.85, 0.1), (False, 0.9, 1.0, 0.8, 0.1),
    (False, 0.7, 1.0, 0.7, 0.15),
    (True, 0.9, 4.0, 0.75, 0.6), (True, 0.6, 2.0, 0.6, 0.4), (True, 0.3, 1.5, 0.55, 0.2),
    (True, 0.0, 0.0, 0.0, 0.04),  # FP only
]
RARE = (True, 0.06, 1.0, 0.5, 0.02)


class PQWorld:
    def __init__(self, rare: bool):
        self.spec = PQ_SPEC + ([RARE] if rare else [])
        self.cats = tuple(Category(i + 1, f"c{i}", s[0]) for i, s in enumerate(self.spec))
        self.isthing = np.array([s[0] for s in self.spec])
        self.truth = self._truth(np.random.default_rng(12345))

    def draw(self, rng, n: int) -> list[tuple[np.ndarray, ...]]:
        """Two models' ``(iou, tp, fp, fn)``, each ``(n, C)``, on the same GT."""
        s = self.spec
        c = len(s)
        pres = np.stack([rng.random(n) < x[1] for x in s], 1)
        gt = np.where(pres, 1 + rng.poisson([max(x[2] - 1, 0) for x in s], (n, c)), 0)
        out = []
        for _ in range(2):
            tp = rng.binomial(gt, [x[3] for x in s])
            fn = gt - tp
            fp = rng.poisson([x[4] for x in s], (n, c))
            iou = np.zeros((n, c))
            for j in range(1, int(tp.max(initial=0)) + 1):
                iou += np.where(tp >= j, 0.5 + 0.5 * rng.beta(8, 3, (n, c)), 0.0)
            out.append((iou, tp, fp, fn))
        return out

    def _truth(self, rng) -> np.ndarray:
        tot = 0
        for _ in range(10):
            iou, tp, fp, fn = (a.sum(0).astype(float) for a in self.draw(rng, 200_000)[0])
            tot = tot + np.stack([iou, tp, fp, fn])
        iou, tp, fp, fn = tot
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tp + fp + fn > 0, iou / (tp + 0.5 * fp + 0.5 * fn), 0.0)

    def stats(self, m, n: int) -> PQImageStats:
        return PQImageStats(self.cats, tuple(range(n)), *m)


# --------------------------------------------------------------------------- SynthStreets pool

THINGS = ("person", "rider", "car", "bus", "bicycle")


def synth_pool(frames: int, seed: int = 1, height: int = 128, width: int = 256) -> dict[str, np.ndarray]:
    """Every instance of ``frames`` SynthStreets val frames: class, frame, label, box, context distribution."""
    from pss_bench.data.synthstreets import render_frame
    from pss_bench.data.synthstreets.labels import LABEL_ID
    from pss_bench.metrics.context_error import image_context_descriptors

    cats = tuple(Category(i, name, name in THINGS) for name, i in sorted(LABEL_ID.items(), key=lambda kv: kv[1]))
    thing_ids = [c.id for c in cats if c.isthing]
    parts: dict[str, list] = {k: [] for k in ("cls", "img", "lab", "box", "dist")}
    for f in range(frames):
        fr = render_frame(seed, "val", f, height, width)
        ids = fr.instance_ids.astype(np.int64)
        u = np.unique(ids)
        cat = np.where(u >= 1000, u // 1000, u)
        keep = np.isin(cat, [c.id for c in cats])
        u, cat = u[keep], cat[keep]
        segs = Segments(u, cat, (u < 1000) & np.isin(cat, thing_ids))
        d = image_context_descriptors(ids, segs, cats)
        ok = d.areas > 0
        parts["cls"].append(np.array([thing_ids.index(int(c)) for c in d.category_ids[ok]], np.int64))
        parts["img"].append(np.full(int(ok.sum()), f, np.int64))
        parts["lab"].append(np.array([fr.context.get(int(s), "none") for s in d.segment_ids[ok]], dtype=object))
        parts["box"].append(d.boxes[ok] / np.array([width, height, width, height], float))
        parts["dist"].append(d.distributions()[ok])
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["categories"] = tuple(c for c in cats if c.isthing)
    return out


def synth_embeddings(rng, pool: dict, rows: np.ndarray, noise: float = 0.6) -> np.ndarray:
    """Hidden-label one-hot + box position + noise, L2-normalised (float32)."""
    labels = sorted(set(pool["lab"].tolist()))
    onehot = np.zeros((rows.size, len(labels)))
    onehot[np.arange(rows.size), [labels.index(x) for x in pool["lab"][rows]]] = 1.0
    box = pool["box"][rows]
    pos = np.stack([box[:, 0] + box[:, 2] / 2, box[:, 1] + box[:, 3] / 2, box[:, 2], box[:, 3]], axis=1)
    e = np.concatenate([onehot, pos], axis=1) + rng.normal(0, noise, (rows.size, len(labels) + 4))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
