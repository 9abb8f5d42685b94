"""Inference post-processing of the reference model on constructed tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pss_bench.reference_model.config import InferenceConfig
from pss_bench.reference_model.postprocess import (
    adjacency,
    concentration,
    dynamic_partition,
    find_seeds,
    merge_stuff,
    merge_things,
    panoptic_inference,
    segment_sums,
    smooth_probabilities,
    to_panoptic,
    upsample_labels,
)


def _unit(*v):
    return F.normalize(torch.tensor(v, dtype=torch.float32), dim=0)


def test_merge_things_nearest_neighbour_rule_and_threshold():
    # a, b very close; c close to b but b prefers a; d far away.
    protos = torch.stack([_unit(1, 0, 0), _unit(0.98, 0.2, 0), _unit(0.8, 0.6, 0), _unit(0, 0, 1)])
    sums = protos * torch.tensor([10.0, 10.0, 10.0, 10.0])[:, None]
    classes = torch.zeros(4, dtype=torch.long)
    things = torch.ones(4, dtype=torch.bool)
    parent = merge_things(sums, classes, things, threshold=0.9)
    # a+b merge first (highest cosine); then c's NN is the merged ab with cosine >= 0.9?
    ab = F.normalize(sums[0] + sums[1], dim=0)
    cos_c = float(ab @ protos[2])
    assert parent[0] == parent[1]
    assert (parent[2] == parent[0]) == (cos_c >= 0.9)
    assert parent[3] == 3
    # A threshold above every similarity merges nothing.
    assert merge_things(sums, classes, things, threshold=0.999).tolist() == [0, 1, 2, 3]


def test_adjacency_and_merging_only_touching_segments():
    # 0 | 1 | 2 side by side, 3 far right after a VOID column; all the same direction.
    labels = torch.tensor([[0, 0, 1, 1, 2, -1, 3],
                           [0, 0, 1, 1, 2, -1, 3]])
    adj = adjacency(labels, 4)
    assert adj.tolist() == [[False, True, False, False], [True, False, True, False],
                            [False, True, False, False], [False, False, False, False]]
    sums = torch.stack([_unit(1, 0), _unit(1, 0.01), _unit(1, 0.02), _unit(1, 0.015)])
    classes = torch.zeros(4, dtype=torch.long)
    things = torch.ones(4, dtype=torch.bool)
    assert len(set(merge_things(sums, classes, things, 0.5).tolist())) == 1  # anything merges
    parent = merge_things(sums, classes, things, 0.5, adjacent=adj)
    # 0, 1, 2 join through touching pairs (2 touches the merged 0+1 via 1); 3 touches nothing
    assert parent[0] == parent[1] == parent[2] and parent[3] == 3


def test_merge_things_respects_class_and_stuff():
    protos = torch.stack([_unit(1, 0), _unit(1, 0.01), _unit(1, 0.02)])
    classes = torch.tensor([0, 1, 1])
    things = torch.tensor([True, True, False])
    # Same direction but different class / stuff: nothing merges.
    assert merge_things(protos, classes, things, 0.5).tolist() == [0, 1, 2]


def test_merge_things_requires_mutual_or_one_sided_nn_in_seeded_mode():
    # Seeded: a is a seed; b (non-seed) has c (non-seed) as nearest neighbour and a is not b's NN.
    a, b, c = _unit(1, 0.3, 0), _unit(1, 0, 0), _unit(0.999, -0.02, 0)
    sums = torch.stack([a, b, c])
    classes = torch.zeros(3, dtype=torch.long)
    things = torch.ones(3, dtype=torch.bool)
    seeds = torch.tensor([True, False, False])
    # a's NN is b (b is closer to a than c is), so a-b may merge: one is the other's NN.
    assert float(a @ b) > float(a @ c)
    parent = merge_things(sums, classes, things, 0.9, seeds)
    assert parent[1] == 0
    # Unseeded: b and c (closest pair) merge first.
    parent_u = merge_things(sums, classes, things, 0.99)
    assert parent_u[1] == parent_u[2]


def test_seeded_merge_never_joins_two_seeds():
    protos = torch.stack([_unit(1, 0), _unit(1, 0.01), _unit(0, 1), _unit(0.01, 1)])
    classes = torch.zeros(4, dtype=torch.long)
    things = torch.ones(4, dtype=torch.bool)
    # Two seeds that are near-identical stay apart; non-seeds join them.
    parent = merge_things(protos, classes, things, 0.5, seeds=torch.tensor([True, True, False, False]))
    assert parent[0] != parent[1]
    assert parent[2] == parent[3] and parent[2] not in (parent[0], parent[1])
    parent = merge_things(protos, classes, things, 0.5, seeds=torch.tensor([True, False, True, False]))
    assert parent.tolist() == [0, 0, 2, 2]
    # Without any seed, non-seeds merge by similarity as in the unseeded rule.
    parent = merge_things(protos, classes, things, 0.5, seeds=torch.tensor([False, False, False, False]))
    assert parent.tolist() == [0, 0, 2, 2]
    # A merged segment is a seed: it never joins another seed later.
    three = torch.stack([_unit(1, 0), _unit(1, 0.05), _unit(1, 0.1)])
    parent = merge_things(three, torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.bool), 0.5,
                          seeds=torch.tensor([True, False, True]))
    assert parent[0] != parent[2] and parent[1] in (parent[0], parent[2])


def test_merge_things_rounds_merge_disjoint_pairs_like_greedy():
    # Four well separated pairs: one round merges all four pairs; the result equals pairwise merging.
    g = torch.Generator().manual_seed(0)
    base = F.normalize(torch.randn(4, 16, generator=g), dim=1)
    protos = torch.cat([base, F.normalize(base + 0.05 * torch.randn(4, 16, generator=g), dim=1)])
    parent = merge_things(protos, torch.zeros(8, dtype=torch.long), torch.ones(8, dtype=torch.bool), 0.9)
    assert parent.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_merge_stuff_one_segment_per_class():
    classes = torch.tensor([0, 1, 0, 2, 2, 1])
    things = torch.tensor([False, False, False, True, True, False])
    p = merge_stuff(classes, things)
    assert p[0] == p[2] and p[1] == p[5] and p[3] != p[4]
    assert len(set(p.tolist())) == 4


def test_dynamic_partition_splits_low_concentration_segment():
    # One segment whose four quadrants point in four different directions:
    # concentration ~0.5 -> split into 4; a coherent segment next to it stays.
    h, w = 8, 16
    emb = torch.zeros(3, h, w)
    dirs = [_unit(1, 0, 0.2), _unit(0, 1, 0.2), _unit(-1, 0, 0.2), _unit(0, -1, 0.2)]
    emb[:, :4, :4] = dirs[0][:, None, None]
    emb[:, :4, 4:8] = dirs[1][:, None, None]
    emb[:, 4:, :4] = dirs[2][:, None, None]
    emb[:, 4:, 4:8] = dirs[3][:, None, None]
    emb[:, :, 8:] = _unit(0, 0, 1)[:, None, None]
    labels = torch.zeros(h, w, dtype=torch.long)
    labels[:, 8:] = 1
    labels[0, 15] = -1
    sums, counts = segment_sums(emb, labels)
    conc = concentration(sums, counts)
    assert conc[0] < 0.5 and conc[1] > 0.99
    out = dynamic_partition(emb, labels, threshold=0.9, k=4, iterations=5, coord_weight=0.0)
    assert out[0, 15] == -1
    left = out[:, :8]
    assert len(left.unique()) == 4
    for (ys, xs) in [((0, 4), (0, 4)), ((0, 4), (4, 8)), ((4, 8), (0, 4)), ((4, 8), (4, 8))]:
        assert len(out[ys[0]:ys[1], xs[0]:xs[1]].unique()) == 1
    assert len(out[:, 8:][out[:, 8:] >= 0].unique()) == 1
    # Above the threshold nothing splits.
    same = dynamic_partition(emb, labels, threshold=float(conc[0]) - 0.01, k=4, iterations=5, coord_weight=0.0)
    assert len(same[same >= 0].unique()) == 2


def test_find_seeds_local_maxima():
    m = torch.zeros(9, 9)
    m[2, 2], m[2, 3], m[6, 6], m[0, 8] = 0.9, 0.8, 0.5, 0.1
    peaks = find_seeds(m, 0.3, 3)
    assert peaks.nonzero().tolist() == [[2, 2], [6, 6]]
    # near-ties of neighbouring cells (two centres in adjacent cells) are both peaks within the tolerance
    assert find_seeds(m, 0.3, 3, tolerance=0.1).nonzero().tolist() == [[2, 2], [2, 3], [6, 6]]
    assert find_seeds(m, 0.3, 3, tolerance=0.05).nonzero().tolist() == [[2, 2], [6, 6]]


def _two_object_scene():
    """Stuff class 0 background, two thing instances of class 1 with distinct embeddings."""
    h, w = 16, 32
    emb = torch.zeros(4, h, w)
    emb[0] = 1.0
    emb[:, 2:8, 2:12] = _unit(0, 1, 0, 0)[:, None, None]
    emb[:, 9:15, 18:30] = _unit(0, 0, 1, 0)[:, None, None]
    classifier = torch.nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 5.0, 0]]))
    seed = torch.zeros(h, w)
    seed[5, 7] = 1.0
    seed[12, 24] = 1.0
    return emb, classifier, seed


@pytest.mark.parametrize("seeded", [False, True])
def test_panoptic_inference_on_constructed_embeddings(seeded):
    emb, classifier, seed = _two_object_scene()
    cfg = InferenceConfig(grid=[2, 4], concentration_threshold=0.5, merge_threshold=0.9, seeded=seeded,
                          seed_threshold=0.5, seed_nms_kernel=3, min_area=1)
    out = panoptic_inference(emb, classifier, torch.tensor([False, True]), cfg, seed_map=seed, iterations=5, coord_weight=0.3)
    # Expect exactly: one stuff segment, two thing instances matching the constructed regions.
    assert sorted(out.classes.tolist()) == [0, 1, 1]
    a = out.labels[2:8, 2:12].unique()
    b = out.labels[9:15, 18:30].unique()
    assert a.numel() == 1 and b.numel() == 1 and a != b
    assert out.embeddings.shape == (3, 4)
    assert torch.allclose(out.embeddings.norm(dim=1), torch.ones(3))
    assert ((out.scores > 0) & (out.scores <= 1)).all()
    ids, info = to_panoptic(out, [7, 24], (64, 128))
    assert ids.shape == (64, 128)
    assert sorted(s["category_id"] for s in info) == [7, 24, 24]
    assert sum(s["area"] for s in info) == 64 * 128


def test_unsure_things_become_void_and_stuff_stays():
    emb, classifier, seed = _two_object_scene()
    with torch.no_grad():  # object b (0, 0, 1, 0): logits [0.8, 1.0], P(thing) = 0.55; object a and the background: 0.99
        classifier.weight.copy_(torch.tensor([[5.0, 0, 0.8, 0], [0, 5.0, 1.0, 0]]))
    things = torch.tensor([False, True])

    def run(threshold):
        cfg = InferenceConfig(grid=[2, 4], concentration_threshold=0.5, merge_threshold=0.9, seed_threshold=0.5,
                              seed_nms_kernel=3, min_area=1, thing_score_threshold=threshold)
        return panoptic_inference(emb, classifier, things, cfg, seed_map=seed, iterations=5, coord_weight=0.3)

    kept = run(0.5)
    assert sorted(kept.classes.tolist()) == [0, 1, 1]
    assert sorted(round(x, 2) for x in kept.scores.tolist()) == [0.55, 0.99, 0.99]
    unsure = run(0.6)  # b goes, a and the stuff stay
    assert sorted(unsure.classes.tolist()) == [0, 1]
    assert (unsure.labels[9:15, 18:30] == -1).all() and (unsure.labels[2:8, 2:12] >= 0).all()
    assert unsure.embeddings.shape == (2, 4) and unsure.areas.shape == (2,) and (unsure.scores >= 0.6).all()
    strict = run(0.999)  # every thing goes; the stuff segment (0.99) is never dropped for its score
    assert strict.classes.tolist() == [0] and not strict.isthing.any()
    assert int((strict.labels == 0).sum()) == 16 * 32 - 6 * 10 - 6 * 12


def test_smoothing_lets_similar_neighbours_outvote_a_small_segment():
    # A row of segments: 0 (big, class 0), 1 (small, classified 1, embedding like 0's), 2 (big, class 1, another
    # embedding), 3 (class 1, like 0's embedding, touching nothing).
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.1, 0.9], [0.2, 0.8]])
    proto = torch.stack([_unit(1, 0, 0), _unit(1, 0.1, 0), _unit(0, 1, 0), _unit(1, 0, 0)])
    counts = torch.tensor([100, 5, 100, 100])
    adj = torch.zeros(4, 4, dtype=torch.bool)
    adj[0, 1] = adj[1, 0] = adj[1, 2] = adj[2, 1] = True
    out = smooth_probabilities(probs, proto, counts, adj, kappa=10.0, iterations=3)
    assert out.argmax(dim=1).tolist() == [0, 0, 1, 1]  # 1 joins its like neighbour; 2 is not pulled by 1
    assert torch.allclose(out.sum(dim=1), torch.ones(4))
    assert torch.equal(out[3], probs[3])  # no neighbour, no change
    assert torch.equal(smooth_probabilities(probs, proto, counts, adj, 10.0, 0), probs)
    # With a flat similarity (kappa 0) the big unlike neighbour 2 outweighs 0 in segment 1's vote only by area:
    # equal areas, so the vote is a tie broken by segment 1's own 0.6; with kappa 10 the like neighbour wins.
    flat = smooth_probabilities(probs, proto, counts, adj, kappa=0.0, iterations=1)
    assert float(flat[1, 1]) > 0.5 > float(out[1, 1])


def test_smoothing_in_the_pipeline_fixes_a_misclassified_patch():
    emb, classifier, seed = _two_object_scene()
    h, w = emb.shape[-2:]
    # a patch of the stuff background that the classifier calls a thing, its embedding near the background's
    emb = emb.clone()
    emb[:, 2:4, 20:24] = _unit(0.8, 0, 0, 0.6)[:, None, None]
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 5.0, 9.0]]))
    things = torch.tensor([False, True])
    base = dict(grid=[4, 8], concentration_threshold=0.5, merge_threshold=0.9, seeded=False, min_area=1)
    plain = panoptic_inference(emb, classifier, things, InferenceConfig(**base), iterations=5, coord_weight=0.3)
    smooth = panoptic_inference(emb, classifier, things, InferenceConfig(**base, smooth_iterations=3, smooth_kappa=10.0),
                                iterations=5, coord_weight=0.3)
    patch = (slice(2, 4), slice(20, 24))
    assert plain.isthing[plain.labels[patch].unique()].all()  # alone, the patch is a thing
    assert not smooth.isthing[smooth.labels[patch].unique()].any()  # its background neighbours outvote it
    assert sorted(smooth.classes.tolist()) == [0, 1, 1]  # and the two objects stay things


def test_upsample_labels():
    lab = torch.tensor([[0, 1], [2, 3]])
    up = upsample_labels(lab, (4, 4))
    assert up.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


def test_compact_keeps_order_and_void():
    from pss_bench.reference_model.postprocess import _compact

    labels = torch.tensor([[7, -1, 3], [3, 12, 7]])
    assert _compact(labels).tolist() == [[1, -1, 0], [0, 2, 1]]
    assert _compact(torch.full((2, 2), -1)).tolist() == [[-1, -1], [-1, -1]]
    assert _compact(torch.zeros(0, 3, dtype=torch.long)).shape == (0, 3)
