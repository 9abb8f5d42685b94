"""``pss_losses`` on a constructed batch against expectations built by hand from the labels' meaning.

The batch: two 16x16 frames, each a road band (stuff) over two *adjacent*
persons (one class, two instances). Embeddings are constant per GT segment
and k-means has one cluster per frame, so the batch segments are exactly the
GT segments and each expected loss below follows from the paper's rules with
a hand-written segment list, never from the code under test. A change of what
the losses are trained towards (SegSort targets from class ids instead of
instance ids, stuff grouping, memory positives, classifier labels, centre
targets) changes these numbers; the tests of ``segsort_loss`` alone cannot see
it, and the overfit test sees it only after half an hour.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pss_bench.reference_model.config import KMeansConfig, LossConfig
from pss_bench.reference_model.loss import PrototypeMemory, SegmentTable, pss_losses

ROAD, CAR, PERSON = 0, 1, 2  # class indices; road is stuff
THINGS = torch.tensor([False, True, True])
KAPPA = 4.0
H = W = 16


def _batch():
    """Two frames: rows 0-7 road, rows 8-15 person A (cols 0-7) and person B (cols 8-15), a VOID border row."""
    pan = torch.zeros(2, H, W, dtype=torch.long)
    sem = torch.full((2, H, W), 255, dtype=torch.long)
    for b in range(2):
        pan[b, :8], sem[b, :8] = 7000, ROAD
        pan[b, 8:, :8], sem[b, 8:, :8] = 24001 + 10 * b, PERSON
        pan[b, 8:, 8:], sem[b, 8:, 8:] = 24002 + 10 * b, PERSON
        pan[b, 0], sem[b, 0] = 0, 255  # VOID row: no loss
    return {"image": torch.zeros(2, 3, H, W), "panoptic": pan, "semantic": sem,
            "crowd": torch.zeros(2, H, W, dtype=torch.bool), "image_id": ["f0", "f1"]}


# One unit vector per GT segment (frame, region); persons A and B of a frame are close (cos 0.8).
_V = F.normalize(torch.tensor([
    [1.0, 0.0, 0.0, 0.0],   # road, frame 0
    [0.0, 1.0, 0.0, 0.0],   # A, frame 0
    [0.0, 0.8, 0.6, 0.0],   # B, frame 0
    [0.9, 0.0, 0.0, 0.43589],  # road, frame 1
    [0.0, 0.6, 0.0, 0.8],   # A, frame 1
    [0.0, 0.0, 0.6, 0.8],   # B, frame 1
]), dim=1)
# The hand-written segment list: (vector row, frame, GT instance key, class, pixels at stride 1).
SEGMENTS = [(0, 0, "road", ROAD, 7 * 16), (1, 0, "A0", PERSON, 64), (2, 0, "B0", PERSON, 64),
            (3, 1, "road", ROAD, 7 * 16), (4, 1, "A1", PERSON, 64), (5, 1, "B1", PERSON, 64)]


def _embedding():
    emb = torch.zeros(2, 4, H, W)
    for b in range(2):
        emb[b, :, :8] = _V[3 * b][:, None, None]
        emb[b, :, 8:, :8] = _V[3 * b + 1][:, None, None]
        emb[b, :, 8:, 8:] = _V[3 * b + 2][:, None, None]
    return emb


def _cfg(**kw) -> LossConfig:
    base = dict(kappa=KAPPA, memory_iterations=0, segsort_weight=1.0, classifier_weight=1.0, seed_weight=1.0,
                seed_sigma=3.0, seed_sigma_scale=0.0, small_instance_area=0, seed_loss="focal", max_pixels=0,
                pixel_balance=0.0, classifier_balance=0.0)
    base.update(kw)
    return LossConfig(**base)


KMEANS = KMeansConfig(grid=[1, 1], iterations=2, coord_weight=0.0)  # one cluster per frame: segments = GT segments


def _run(cfg=None, memory=None, classifier=None, seed=None):
    out = {"embedding": _embedding(), "seed": torch.zeros(2, 1, H // 2, W // 2) if seed is None else seed}
    classifier = classifier or (lambda x: torch.zeros(x.shape[0], 3) + x.sum(1, keepdim=True) * 0)
    return pss_losses(out, _batch(), classifier, THINGS, cfg or _cfg(), KMEANS, memory)


def _expected_segsort(memory_rows=()):
    """Mean over labelled pixels of -log(sum_pos exp(k v.m) / sum_den exp(k v.m)) from SEGMENTS.

    memory_rows: ``(vector, class, isthing)`` of past prototypes (stuff of the pixel's class: positive).
    """
    def group(seg):
        _, frame, key, cls, _ = seg
        return ("stuff", cls) if not THINGS[cls] else ("thing", frame, key)

    total, pixels = 0.0, 0
    for i, own in enumerate(SEGMENTS):
        v = _V[own[0]]
        sim = [math.exp(KAPPA * float(v @ _V[s[0]])) for s in SEGMENTS]
        mates = [j for j, s in enumerate(SEGMENTS) if j != i and group(s) == group(own)]
        num = sum(sim[j] for j in mates) if mates else sim[i]
        den = sum(sim[j] for j in range(len(SEGMENTS)) if j != i or not mates)
        for vec, cls, isthing in memory_rows:
            e = math.exp(KAPPA * float(v @ vec))
            den += e
            if not isthing and not THINGS[own[3]] and cls == own[3]:
                num += e
        total += own[4] * (math.log(den) - math.log(num))
        pixels += own[4]
    return total / pixels


def test_the_segments_are_the_gt_instances():
    _, segs = _run()
    assert isinstance(segs, SegmentTable)
    assert sorted(segs.classes.tolist()) == sorted(s[3] for s in SEGMENTS)
    assert sorted(torch.bincount(segs.pixel_segment).tolist()) == sorted(s[4] for s in SEGMENTS)


def test_segsort_loss_treats_adjacent_same_class_persons_as_two_instances():
    losses, _ = _run()
    assert float(losses["segsort"]) == pytest.approx(_expected_segsort(), rel=1e-5)
    # the class-id targets (A and B one instance) would give another number
    wrong = SEGMENTS
    try:
        globals()["SEGMENTS"] = [(r, f, "person" if c == PERSON else k, c, n) for r, f, k, c, n in SEGMENTS]
        assert abs(_expected_segsort() - float(losses["segsort"])) > 1e-2
    finally:
        globals()["SEGMENTS"] = wrong


def test_memory_prototypes_of_the_pixels_stuff_class_are_positives_all_others_negatives():
    memory = PrototypeMemory(1)
    rows = [(_V[1], ROAD, False), (_V[0], PERSON, True), (_V[4], CAR, True)]
    memory.push(SegmentTable(torch.stack([r[0] for r in rows]), torch.tensor([r[1] for r in rows]),
                             torch.tensor([r[2] for r in rows]), torch.zeros(0, dtype=torch.long)))
    losses, _ = _run(cfg=_cfg(memory_iterations=1), memory=memory)
    assert float(losses["segsort"]) == pytest.approx(_expected_segsort(rows), rel=1e-5)
    assert abs(_expected_segsort(rows) - _expected_segsort()) > 1e-2  # the memory matters here


def test_classifier_is_trained_on_each_segments_gt_class():
    weight = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    losses, segs = _run(classifier=lambda x: x @ weight.t())
    logits = _V @ weight.t()
    expected = F.cross_entropy(logits, torch.tensor([s[3] for s in SEGMENTS]))
    assert float(losses["classifier"]) == pytest.approx(float(expected), rel=1e-5)


def test_classifier_balance_weighs_every_class_alike():
    weight = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    losses, _ = _run(cfg=_cfg(classifier_balance=1.0), classifier=lambda x: x @ weight.t())
    ce = F.cross_entropy(_V @ weight.t(), torch.tensor([s[3] for s in SEGMENTS]), reduction="none")
    road = ce[[0, 3]].mean()
    person = ce[[1, 2, 4, 5]].mean()
    assert float(losses["classifier"]) == pytest.approx(float((road + person) / 2), rel=1e-5)


def _expected_focal_with_zero_logits(sigma: float) -> float:
    """CenterNet's focal loss at logits 0 (p = 1/2) with one snapped centre per person instance.

    Seed map: 8x8 cells of 2x2 input pixels. A (rows 8-15, cols 0-7) has its
    mass centre at (12, 4), in cell (6, 2), snapped to that cell's centre
    (13, 5); B at (12, 12) -> cell (6, 6), centre (13, 13). Valid cells: not
    VOID at the cell's centre pixel (row 0 is VOID: cell row 0 samples input
    row 1, so every cell is valid).
    """
    centres = [(13.0, 5.0), (13.0, 13.0)]
    log_half = math.log(0.5)
    total = 0.0
    for cy in range(8):
        for cx in range(8):
            y, x = 2 * cy + 1.0, 2 * cx + 1.0
            target = max(math.exp(-((y - a) ** 2 + (x - b) ** 2) / (2 * sigma ** 2)) for a, b in centres)
            if target >= 1.0:
                total += 0.25 * log_half
            else:
                total += (1 - target) ** 4 * 0.25 * log_half
    return -total / len(centres)


def test_seed_targets_are_one_centre_per_instance():
    losses, _ = _run()
    assert float(losses["seed"]) == pytest.approx(_expected_focal_with_zero_logits(3.0), rel=1e-5)


def test_seed_logits_at_the_instance_centres_give_a_lower_loss_than_at_their_union():
    seed = torch.full((2, 1, 8, 8), -6.0)
    seed[:, 0, 6, 2] = seed[:, 0, 6, 6] = 6.0  # the two persons' centre cells
    good = float(_run(seed=seed)[0]["seed"])
    union = torch.full((2, 1, 8, 8), -6.0)
    union[:, 0, 6, 4] = 6.0  # one centre for both (class-level targets)
    bad = float(_run(seed=union)[0]["seed"])
    assert good < 0.1 < bad
