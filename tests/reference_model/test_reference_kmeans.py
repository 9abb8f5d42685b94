"""Spherical k-means of the reference model against a plain-loops implementation."""

from __future__ import annotations

import math

import pytest
import torch

from pss_bench.reference_model.kmeans import grid_init, grouped_kmeans, kmeans_features, spherical_kmeans


def _norm(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v] if n > 0 else list(v)


def loops_kmeans(x, valid, grid, iterations):
    """Plain-Python spherical k-means: x is a (h, w, F) nested list."""
    h, w = len(x), len(x[0])
    rows, cols = grid
    k = rows * cols
    assign = [[(i * rows // h) * cols + (j * cols // w) if valid[i][j] else -1 for j in range(w)] for i in range(h)]

    def centroids_of(assign):
        sums = [[0.0] * len(x[0][0]) for _ in range(k)]
        counts = [0] * k
        for i in range(h):
            for j in range(w):
                a = assign[i][j]
                if a >= 0:
                    counts[a] += 1
                    sums[a] = [s + v for s, v in zip(sums[a], x[i][j])]
        return [_norm(s) for s in sums], counts

    cents, counts = centroids_of(assign)
    active = [c > 0 for c in counts]
    for _ in range(iterations):
        for i in range(h):
            for j in range(w):
                if not valid[i][j]:
                    continue
                best, best_s = -1, -float("inf")
                for c in range(k):
                    if not active[c]:
                        continue
                    s = sum(a * b for a, b in zip(x[i][j], cents[c]))
                    if s > best_s:
                        best, best_s = c, s
                assign[i][j] = best
        new, counts = centroids_of(assign)
        cents = [new[c] if counts[c] > 0 else cents[c] for c in range(k)]
    return assign, cents


@pytest.mark.parametrize("grid", [(2, 2), (2, 3)])
def test_spherical_kmeans_matches_loops(grid):
    g = torch.Generator().manual_seed(3)
    b, d, h, w = 2, 3, 6, 7
    emb = torch.nn.functional.normalize(torch.randn(b, d, h, w, generator=g), dim=1)
    feats = kmeans_features(emb, 0.5)
    valid = torch.rand(b, h, w, generator=g) > 0.2
    assign, cents = spherical_kmeans(feats, valid, grid, iterations=4)
    assert assign.shape == (b, h, w)
    for i in range(b):
        x = feats[i].permute(1, 2, 0).tolist()
        ref_assign, ref_cents = loops_kmeans(x, valid[i].tolist(), grid, 4)
        assert assign[i].tolist() == ref_assign
        for c in range(grid[0] * grid[1]):
            if any(ref_cents[c]):
                assert torch.allclose(cents[i, c], torch.tensor(ref_cents[c]), atol=1e-5)


def test_kmeans_excludes_invalid_and_separates_clear_clusters():
    # Two well-separated directions, left and right halves; VOID column in the middle.
    h, w = 4, 9
    emb = torch.zeros(1, 2, h, w)
    emb[0, 0, :, :4] = 1.0
    emb[0, 1, :, 5:] = 1.0
    emb[0, :, :, 4] = torch.tensor([0.6, 0.8])[:, None]
    valid = torch.ones(1, h, w, dtype=torch.bool)
    valid[0, :, 4] = False
    assign, _ = spherical_kmeans(kmeans_features(emb, 0.0), valid, (1, 2), iterations=10)
    assert (assign[0, :, 4] == -1).all()
    assert len(set(assign[0, :, :4].reshape(-1).tolist())) == 1
    assert len(set(assign[0, :, 5:].reshape(-1).tolist())) == 1
    assert assign[0, 0, 0] != assign[0, 0, 8]


def test_kmeans_features_unit_norm_and_no_gradient():
    emb = torch.nn.functional.normalize(torch.randn(1, 4, 5, 6), dim=1).requires_grad_()
    f = kmeans_features(emb, 1.0)
    assert f.shape == (1, 6, 5, 6)
    assert torch.allclose(f.norm(dim=1), torch.ones(1, 5, 6), atol=1e-5)
    assign, cents = spherical_kmeans(f, None, (2, 2), 3)
    assert not assign.requires_grad and not cents.requires_grad


def test_grid_init_is_regular():
    g = grid_init(8, 16, (2, 4))
    assert g.shape == (8, 16)
    assert g[0, 0] == 0 and g[0, 15] == 3 and g[7, 0] == 4 and g[7, 15] == 7
    assert torch.bincount(g.reshape(-1)).tolist() == [16] * 8


def test_grouped_kmeans_matches_per_group_loops():
    g = torch.Generator().manual_seed(0)
    n, f, k = 40, 3, 3
    x = torch.nn.functional.normalize(torch.randn(n, f, generator=g), dim=1)
    group = torch.randint(0, 3, (n,), generator=g)
    init = torch.randint(0, k, (n,), generator=g)
    out = grouped_kmeans(x, group, init, k, iterations=5)
    for gi in range(3):
        idx = (group == gi).nonzero()[:, 0].tolist()
        xs = [x[i].tolist() for i in idx]
        a = [int(init[i]) for i in idx]

        def cents(a):
            res, cnt = [], []
            for c in range(k):
                mem = [xs[j] for j in range(len(xs)) if a[j] == c]
                cnt.append(len(mem))
                res.append(_norm([sum(col) for col in zip(*mem)]) if mem else [0.0] * f)
            return res, cnt

        cs, cnt = cents(a)
        active = [c > 0 for c in cnt]
        for _ in range(5):
            a = [max((c for c in range(k) if active[c]), key=lambda c: (sum(p * q for p, q in zip(v, cs[c])), -c)) for v in xs]
            new, cnt = cents(a)
            cs = [new[c] if cnt[c] else cs[c] for c in range(k)]
        assert out[idx].tolist() == a


def test_pooled_kmeans_assigns_every_fine_pixel_to_its_nearest_coarse_centroid():
    from pss_bench.reference_model.kmeans import assign_to_centroids, pooled_kmeans

    g = torch.Generator().manual_seed(0)
    # two halves with different directions, plus a little noise
    emb = torch.zeros(1, 4, 16, 32)
    emb[:, 0, :, :16] = 1.0
    emb[:, 1, :, 16:] = 1.0
    emb = torch.nn.functional.normalize(emb + 0.05 * torch.randn(1, 4, 16, 32, generator=g), dim=1)
    valid = torch.ones(1, 16, 32, dtype=torch.bool)
    valid[0, 0, 0] = False
    fine = pooled_kmeans(emb, valid, (1, 2), 5, 0.0, pool=2)
    assert fine.shape == (1, 16, 32) and fine[0, 0, 0] == -1
    assert len(fine[0, :, :16][valid[0, :, :16]].unique()) == 1 and len(fine[0, :, 16:].unique()) == 1
    assert fine[0, 5, 3] != fine[0, 5, 20]
    # pool=1 is plain spherical k-means
    same = pooled_kmeans(emb, valid, (2, 2), 5, 0.5, pool=1)
    ref, _ = spherical_kmeans(kmeans_features(emb, 0.5), valid, (2, 2), 5)
    assert torch.equal(same, ref)
    # empty centroids are never chosen
    cents = torch.zeros(1, 3, 4)
    cents[0, 1, 0] = 1.0
    a = assign_to_centroids(-emb, cents, None)
    assert (a == 1).all()


def test_nearest_centroid_in_blocks_equals_the_dense_argmax(monkeypatch):
    from pss_bench.reference_model import kmeans

    torch.manual_seed(0)
    # integer-valued scores make ties common; -inf skips a cluster
    x = torch.randint(-2, 3, (2, 1000, 3)).float()
    c = torch.randint(-2, 3, (2, 7, 3)).float()
    bias = torch.zeros(2, 1, 7)
    bias[0, 0, 2] = float("-inf")
    dense = torch.baddbmm(bias, x, c.transpose(1, 2)).argmax(dim=2)
    monkeypatch.setitem(kmeans._BLOCK_ELEMENTS, "cpu", 2 * 7 * 300)  # blocks of 300 rows (the floor is 256)
    assert torch.equal(kmeans.nearest_centroid(x, c, bias), dense)
    monkeypatch.setitem(kmeans._BLOCK_ELEMENTS, "cpu", 1 << 30)  # one block
    assert torch.equal(kmeans.nearest_centroid(x, c, bias), dense)
