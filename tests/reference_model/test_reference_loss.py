"""The SegSort loss with panoptic labels against a plain-loops implementation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pss_bench.reference_model.config import KMeansConfig, LossConfig
from pss_bench.reference_model.loss import (
    PrototypeMemory,
    center_heatmap,
    downsample_labels,
    pss_losses,
    segsort_loss,
)


def loops_segsort(emb, image, cluster, instance, classes, isthing, kappa, memory=None):
    """The issue's rules written pixel by pixel, segment by segment."""
    p = len(emb)
    keys = []
    for i in range(p):
        k = (image[i], cluster[i], instance[i])
        if k not in keys:
            keys.append(k)
    seg_of = [keys.index((image[i], cluster[i], instance[i])) for i in range(p)]
    protos = []
    info = []
    for s, key in enumerate(keys):
        members = [i for i in range(p) if seg_of[i] == s]
        v = [sum(emb[i][d] for i in members) for d in range(len(emb[0]))]
        n = math.sqrt(sum(x * x for x in v))
        protos.append([x / n for x in v])
        i0 = members[0]
        info.append((image[i0], instance[i0], classes[i0], isthing[i0]))

    def same_group(a, b):
        (ia, ga, ca, ta), (ib, gb, cb, tb) = a, b
        if ta != tb:
            return False
        return (ia == ib and ga == gb) if ta else ca == cb

    total = 0.0
    for i in range(p):
        s_own = seg_of[i]
        sim = [math.exp(kappa * sum(a * b for a, b in zip(emb[i], pr))) for pr in protos]
        others_same = [s for s in range(len(keys)) if s != s_own and same_group(info[s], info[s_own])]
        pos = others_same if others_same else [s_own]
        den_set = [s for s in range(len(keys)) if s != s_own] + ([] if others_same else [s_own])
        num = sum(sim[s] for s in pos)
        den = sum(sim[s] for s in den_set)
        if memory is not None:
            for mp, mc, mt in zip(*memory):
                e = math.exp(kappa * sum(a * b for a, b in zip(emb[i], mp)))
                den += e
                if not isthing[i] and not mt and mc == classes[i]:
                    num += e
        total += -math.log(num / den)
    return total / p, len(keys)


def _tiny_table(seed=0, p=60):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(p, 4, generator=g), dim=1)
    image = torch.randint(0, 2, (p,), generator=g)
    cluster = torch.randint(0, 3, (p,), generator=g)
    # instances: 1, 2 stuff (class 0, 1); 11, 12 things (class 2); 13 thing (class 3)
    inst_choices = torch.tensor([1, 2, 11, 12, 13])
    cls_of = {1: 0, 2: 1, 11: 2, 12: 2, 13: 3}
    instance = inst_choices[torch.randint(0, 5, (p,), generator=g)]
    classes = torch.tensor([cls_of[int(i)] for i in instance])
    isthing = classes >= 2
    # A lone segment: a thing instance present in a single cluster of image 0.
    emb = torch.cat([emb, F.normalize(torch.randn(3, 4, generator=g), dim=1)])
    image = torch.cat([image, torch.zeros(3, dtype=torch.long)])
    cluster = torch.cat([cluster, torch.full((3,), 1)])
    instance = torch.cat([instance, torch.full((3,), 99)])
    classes = torch.cat([classes, torch.full((3,), 3)])
    isthing = torch.cat([isthing, torch.ones(3, dtype=torch.bool)])
    return emb, image, cluster, instance, classes, isthing


@pytest.mark.parametrize("kappa", [1.0, 10.0])
@pytest.mark.parametrize("with_memory", [False, True])
def test_segsort_loss_matches_loops(kappa, with_memory):
    emb, image, cluster, instance, classes, isthing = _tiny_table()
    memory = None
    if with_memory:
        g = torch.Generator().manual_seed(7)
        memory = (F.normalize(torch.randn(5, 4, generator=g), dim=1), torch.tensor([0, 1, 2, 0, 3]),
                  torch.tensor([False, False, True, False, True]))
    loss, segs = segsort_loss(emb, image, cluster, instance, classes, isthing, kappa, memory)
    ref, n_segs = loops_segsort(
        emb.tolist(), image.tolist(), cluster.tolist(), instance.tolist(), classes.tolist(), isthing.tolist(), kappa,
        None if memory is None else (memory[0].tolist(), memory[1].tolist(), memory[2].tolist()),
    )
    assert segs.prototypes.shape == (n_segs, 4)
    assert loss.item() == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_segsort_loss_gradient_reaches_embeddings_and_prototypes():
    emb, image, cluster, instance, classes, isthing = _tiny_table(1)
    emb = emb.clone().requires_grad_()
    loss, segs = segsort_loss(emb, image, cluster, instance, classes, isthing, 10.0)
    assert segs.prototypes.requires_grad
    loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    # Gradient check in double precision.
    e64 = emb.detach().double().requires_grad_()
    torch.autograd.gradcheck(lambda e: segsort_loss(e, image, cluster, instance, classes, isthing, 2.0)[0], (e64,))


def test_segsort_loss_lower_when_embeddings_follow_instances():
    emb, image, cluster, instance, classes, isthing = _tiny_table(2)
    g = torch.Generator().manual_seed(0)
    table = {int(i): F.normalize(torch.randn(4, generator=g), dim=0) for i in instance.unique()}
    good = torch.stack([table[int(i)] for i in instance]) + 0.01 * torch.randn(len(instance), 4, generator=g)
    good = F.normalize(good, dim=1)
    lo, _ = segsort_loss(good, image, cluster, instance, classes, isthing, 10.0)
    hi, _ = segsort_loss(emb, image, cluster, instance, classes, isthing, 10.0)
    assert lo < hi


def test_center_heatmap_matches_loops():
    pan = torch.zeros(1, 8, 12, dtype=torch.long)
    pan[0, 1:4, 1:5] = 5
    pan[0, 5:8, 6:12] = 6
    mask = pan > 0
    heat = center_heatmap(pan, mask, (4, 6), sigma=3.0, input_size=(16, 24))
    assert heat.shape == (1, 4, 6)
    # Mass centres in input pixels (grid scale 2).
    cents = []
    for pid in (5, 6):
        ys, xs = (pan[0] == pid).nonzero(as_tuple=True)
        cents.append((((ys.float() + 0.5) * 2).mean().item(), ((xs.float() + 0.5) * 2).mean().item()))
    for i in range(4):
        for j in range(6):
            y, x = (i + 0.5) * 4, (j + 0.5) * 4
            ref = max(math.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 18.0) for cy, cx in cents)
            assert heat[0, i, j].item() == pytest.approx(ref, rel=1e-5, abs=1e-7)


def test_downsample_labels_takes_centre_pixels():
    lab = torch.arange(64).reshape(1, 8, 8)
    out = downsample_labels(lab, 2, 2)
    assert out.tolist() == [[[lab[0, 2, 2].item(), lab[0, 2, 6].item()], [lab[0, 6, 2].item(), lab[0, 6, 6].item()]]]


def _batch(b=2, h=32, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    pan = torch.zeros(b, h, w, dtype=torch.long)
    sem = torch.full((b, h, w), 255)
    pan[:, : h // 2], sem[:, : h // 2] = 1, 0
    pan[:, h // 2 :], sem[:, h // 2 :] = 2, 1
    pan[:, 4:12, 8:24], sem[:, 4:12, 8:24] = 1001, 2  # large thing
    pan[:, 20:24, 40:44], sem[:, 20:24, 40:44] = 1002, 2  # small thing
    pan[:, 24:28, 50:60], sem[:, 24:28, 50:60] = 1003, 2  # crowd
    crowd = pan == 1003
    pan[:, :2], sem[:, :2] = 0, 255  # VOID
    return {"image": torch.randn(b, 3, h, w, generator=g), "panoptic": pan, "semantic": sem, "crowd": crowd}


def test_pss_losses_finite_with_gradients_and_hybrid_scale():
    batch = _batch()
    b, h, w = batch["panoptic"].shape
    emb = F.normalize(torch.randn(b, 8, h // 4, w // 4), dim=1).requires_grad_()
    seed = torch.zeros(b, 1, h // 4, w // 4, requires_grad=True)
    classifier = torch.nn.Linear(8, 3)
    things = torch.tensor([False, False, True])
    kcfg = KMeansConfig(grid=[2, 4], iterations=3, coord_weight=1.0)
    losses, segs = pss_losses({"embedding": emb, "seed": seed}, batch, classifier, things, LossConfig(), kcfg)
    assert set(losses) == {"total", "segsort", "classifier", "seed"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert emb.grad.abs().sum() > 0 and seed.grad.abs().sum() > 0 and classifier.weight.grad.abs().sum() > 0
    # Crowd and VOID carry no segment; every segment has a valid class.
    assert segs.classes.max() <= 2 and segs.prototypes.shape[1] == 8
    hybrid, segs2 = pss_losses({"embedding": emb, "seed": seed}, batch, classifier, things,
                               LossConfig(small_instance_area=64), kcfg)
    assert hybrid["segsort"].item() != pytest.approx(losses["segsort"].item())
    # Hybrid scale adds stride-2 pixels of the small instance: more pixel rows.
    assert segs2.pixel_segment.numel() > segs.pixel_segment.numel()


def test_prototype_memory_fifo_and_state():
    mem = PrototypeMemory(2)
    emb, image, cluster, instance, classes, isthing = _tiny_table()
    for _ in range(3):
        _, segs = segsort_loss(emb, image, cluster, instance, classes, isthing, 10.0)
        mem.push(segs)
    assert len(mem.items) == 2
    got = mem.get("cpu")
    assert got[0].shape[0] == 2 * segs.prototypes.shape[0] and not got[0].requires_grad
    other = PrototypeMemory(0)
    other.load_state_dict(mem.state_dict())
    assert torch.equal(other.get("cpu")[0], got[0])


def loops_focal(logits, target, valid, alpha=2.0, beta=4.0):
    total, n_pos = 0.0, 0
    for x, y, v in zip(logits.reshape(-1).tolist(), target.reshape(-1).tolist(), valid.reshape(-1).tolist()):
        if not v:
            continue
        p = 1 / (1 + math.exp(-x))
        if y >= 1.0:
            total += (1 - p) ** alpha * math.log(p)
            n_pos += 1
        else:
            total += (1 - y) ** beta * p**alpha * math.log(1 - p)
    return -total / max(n_pos, 1)


def test_seed_focal_loss_matches_loops_and_is_finite_for_extreme_logits():
    from pss_bench.reference_model.loss import seed_focal_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 7, generator=g) * 3
    target = torch.rand(2, 6, 7, generator=g) * 0.9
    target[0, 2, 3] = target[1, 4, 1] = 1.0
    valid = torch.rand(2, 6, 7, generator=g) > 0.2
    valid[0, 2, 3] = valid[1, 4, 1] = True
    got = float(seed_focal_loss(logits, target, valid))
    assert got == pytest.approx(loops_focal(logits, target, valid), rel=1e-5)
    extreme = torch.full((1, 3, 3), 200.0)
    extreme[0, 1, 1] = -200.0
    t = torch.zeros(1, 3, 3)
    t[0, 1, 1] = 1.0
    value = seed_focal_loss(extreme, t, torch.ones(1, 3, 3, dtype=torch.bool))
    assert math.isfinite(float(value)) and float(value) > 100


def test_snapped_center_heatmap_has_one_exact_peak_per_instance():
    pan = torch.zeros(1, 32, 64, dtype=torch.long)
    pan[0, 3:13, 5:20] = 5
    pan[0, 18:30, 40:61] = 6
    heat = center_heatmap(pan, pan > 0, (8, 16), 8.0, (32, 64), snap=True)
    assert int((heat == 1.0).sum()) == 2
    # the peaks are the cells holding the mass centres (8.0, 12.5) and (24.0, 50.5), cells of 4x4 pixels
    assert (heat[0] == 1.0).nonzero().tolist() == [[2, 3], [6, 12]]


def test_size_scaled_centre_gaussians_keep_small_neighbours_apart():
    # two 3x3-pixel instances 4 pixels apart (one 4x4 cell between their centre cells) and a 16x16 one
    pan = torch.zeros(1, 32, 64, dtype=torch.long)
    pan[0, 1:4, 1:4] = 1
    pan[0, 1:4, 9:12] = 2
    pan[0, 12:28, 30:46] = 3
    fixed = center_heatmap(pan, pan > 0, (8, 16), 8.0, (32, 64), snap=True)[0]
    scaled = center_heatmap(pan, pan > 0, (8, 16), 8.0, (32, 64), snap=True, sigma_scale=0.1)[0]
    # the cell between the two small centres (cells (0, 0) and (0, 2)): forgiven under sigma 8, a negative with sizes
    assert float(fixed[0, 1]) > 0.85
    assert float(scaled[0, 1]) == pytest.approx(math.exp(-16 / 2), rel=1e-5)  # sigma clamped to MIN_SIGMA = 1 px
    # the large instance: sigma 0.1 * 16 = 1.6 px; one cell (4 px) from its centre cell (5, 9)
    assert float(scaled[5, 10]) == pytest.approx(math.exp(-16 / (2 * 1.6**2)), rel=1e-5)
    # sigma_scale never widens past sigma
    wide = center_heatmap(pan, pan > 0, (8, 16), 1.2, (32, 64), snap=True, sigma_scale=1.0)[0]
    assert float(wide[5, 10]) == pytest.approx(math.exp(-16 / (2 * 1.2**2)), rel=1e-5)
    assert int((scaled == 1.0).sum()) == int((fixed == 1.0).sum()) == 3


def test_out_of_range_semantic_label_is_a_clear_error():
    from pss_bench.errors import PssBenchError
    from pss_bench.reference_model.loss import check_batch_labels

    sem = torch.zeros(2, 8, 8, dtype=torch.long)
    sem[1, 3, 3] = 9
    batch = {"semantic": sem, "panoptic": torch.ones(2, 8, 8, dtype=torch.long), "image_id": ["a", "b"]}
    with pytest.raises(PssBenchError, match=r"image b: semantic label 9 is outside the 4 classes"):
        check_batch_labels(batch, 4)
    sem[1, 3, 3] = 255
    check_batch_labels(batch, 4)  # VOID is fine
    batch["panoptic"][0, 0, 0] = -3
    with pytest.raises(PssBenchError, match="image a: negative panoptic id -3"):
        check_batch_labels(batch, 4)


def test_pss_losses_refuse_out_of_range_labels_before_any_gather():
    from pss_bench.errors import PssBenchError

    torch.manual_seed(0)
    b, h, w, d = 2, 32, 64, 8
    out = {"embedding": F.normalize(torch.randn(b, d, h // 4, w // 4), dim=1), "seed": torch.zeros(b, 1, h // 4, w // 4)}
    batch = {"panoptic": torch.ones(b, h, w, dtype=torch.long), "semantic": torch.zeros(b, h, w, dtype=torch.long),
             "crowd": torch.zeros(b, h, w, dtype=torch.bool), "image_id": ["x", "y"]}
    batch["semantic"][0, 5, 5] = 7
    classifier = torch.nn.Linear(d, 3)
    with pytest.raises(PssBenchError, match="image x: semantic label 7"):
        pss_losses(out, batch, classifier, torch.tensor([False, True, True]), LossConfig(), KMeansConfig(grid=[2, 2]))


def test_pixel_sampling_keeps_prototypes_and_estimates_the_mean():
    emb, image, cluster, instance, classes, isthing = _tiny_table(p=200)
    full, seg_full = segsort_loss(emb, image, cluster, instance, classes, isthing, kappa=5.0)
    everything = torch.arange(emb.shape[0])
    same, seg_same = segsort_loss(emb, image, cluster, instance, classes, isthing, kappa=5.0, sample=everything)
    assert float(same) == pytest.approx(float(full), rel=1e-6)
    g = torch.Generator().manual_seed(1)
    half = torch.randperm(emb.shape[0], generator=g)[:100]
    part, seg_part = segsort_loss(emb, image, cluster, instance, classes, isthing, kappa=5.0, sample=half)
    assert torch.equal(seg_part.prototypes, seg_full.prototypes)
    # the mean over a sample is the mean of the sampled rows' terms
    terms = torch.stack([segsort_loss(emb, image, cluster, instance, classes, isthing, kappa=5.0,
                                      sample=torch.tensor([int(i)]))[0] for i in half])
    assert float(part) == pytest.approx(float(terms.mean()), rel=1e-5)


def test_segsort_loss_is_finite_for_a_large_kappa():
    # exp(kappa * cos) overflows float32 for kappa * cos > 88; the shifted sums do not.
    emb, image, cluster, instance, classes, isthing = _tiny_table()
    loss, _ = segsort_loss(emb, image, cluster, instance, classes, isthing, kappa=500.0)
    assert math.isfinite(float(loss))
    ref, _ = segsort_loss(emb.double(), image, cluster, instance, classes, isthing, kappa=500.0)
    assert float(loss) == pytest.approx(float(ref), rel=1e-3)


def test_balanced_pixel_draw_gives_small_segments_their_share():
    from pss_bench.reference_model.loss import _draw_pixels

    torch.manual_seed(0)
    image = torch.zeros(40_000, dtype=torch.long)
    image[20_000:] = 1  # two images: segment id 1 exists in both and must not be pooled
    seg = torch.zeros(40_000, dtype=torch.long)
    seg[:19_900] = 1
    seg[19_900:20_000] = 2  # a 100-pixel instance next to a 19,900-pixel road
    seg[20_000:] = 1
    shares = {}
    for balance in (0.0, 1.0):
        idx = _draw_pixels(image, seg, 90, balance)
        assert idx.unique().numel() == 90  # without replacement
        shares[balance] = float((seg[idx] == 2).float().mean())
    assert shares[0.0] < 0.02  # uniform: about 100/40,000
    assert 0.2 < shares[1.0] < 0.5  # balanced: about a third for each of the three segments


def test_balanced_cross_entropy_gives_every_class_the_same_weight():
    from pss_bench.reference_model.loss import balanced_cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(103, 4)
    target = torch.zeros(103, dtype=torch.long)
    target[100:] = 3  # 100 segments of class 0, 3 of class 3
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert float(balanced_cross_entropy(logits, target, 0.0)) == pytest.approx(float(ce.mean()))
    # balance 1: the mean of the two classes' own means
    expected = (ce[:100].mean() + ce[100:].mean()) / 2
    assert float(balanced_cross_entropy(logits, target, 1.0)) == pytest.approx(float(expected), rel=1e-6)


def _dense_segsort_reference(emb, image, cluster, instance, classes, isthing, kappa, memory=None, sample=None):
    """The SegSort loss from its definition with dense (P, S) masks (the implementation before the pair-based one)."""
    _, gt_seg = torch.unique(image * (int(instance.max()) + 1) + instance, return_inverse=True)
    k = int(cluster.max()) + 1
    _, seg = torch.unique(gt_seg * k + cluster, return_inverse=True)
    s = int(seg.max()) + 1
    group_key = torch.where(isthing, gt_seg, int(gt_seg.max()) + 1 + classes)
    _, group = torch.unique(group_key, return_inverse=True)
    seg_group = torch.zeros(s, dtype=torch.long).scatter_(0, seg, group)
    proto = F.normalize(torch.zeros(s, emb.shape[1], dtype=emb.dtype).index_add(0, seg, emb), dim=1)
    if sample is not None:
        emb, seg, group, classes, isthing = (t[sample] for t in (emb, seg, group, classes, isthing))
    logits = kappa * emb @ proto.t()
    own = F.one_hot(seg, s).bool()
    alone = (torch.bincount(seg_group, minlength=int(group.max()) + 1)[group] == 1)[:, None]
    same = seg_group[None, :] == group[:, None]
    pos = torch.where(alone, own, same & ~own)
    den = torch.where(alone, torch.ones_like(own), ~own)
    if memory is not None:
        m_proto, m_class, m_thing = memory
        logits = torch.cat([logits, kappa * emb @ m_proto.t()], 1)
        pos = torch.cat([pos, (~isthing)[:, None] & (~m_thing)[None, :] & (classes[:, None] == m_class[None, :])], 1)
        den = torch.cat([den, torch.ones(emb.shape[0], m_proto.shape[0], dtype=torch.bool)], 1)
    lo = torch.finfo(logits.dtype).min
    return (torch.logsumexp(logits.masked_fill(~den, lo), 1) - torch.logsumexp(logits.masked_fill(~pos, lo), 1)).mean()


@pytest.mark.parametrize("trial", range(12))
def test_segsort_loss_and_gradient_equal_the_dense_definition(trial):
    """The pair-based numerator and fused backward give the dense definition's loss and gradient (to 1e-5)."""
    g = torch.Generator().manual_seed(trial)
    p = int(torch.randint(20, 2000, (), generator=g))
    emb = F.normalize(torch.randn(p, 8, generator=g), dim=1)
    image = torch.randint(0, 3, (p,), generator=g)
    cluster = torch.randint(0, int(torch.randint(1, 30, (), generator=g)), (p,), generator=g)
    instance = torch.randint(1, int(torch.randint(2, 12, (), generator=g)), (p,), generator=g)
    classes = instance % 5
    isthing = classes >= 3
    memory = None
    if trial % 3 == 0:
        memory = (F.normalize(torch.randn(20, 8, generator=g), dim=1), torch.randint(0, 5, (20,), generator=g),
                  torch.randint(0, 2, (20,), generator=g).bool())
    sample = torch.randperm(p, generator=g)[: p // 2] if trial % 2 else None
    kappa = (1.0, 10.0, 50.0)[trial % 3]
    grads = []
    for fn in (segsort_loss, _dense_segsort_reference):
        e = emb.clone().requires_grad_()
        out = fn(e, image, cluster, instance, classes, isthing, kappa, memory=memory, sample=sample)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        grads.append((float(loss), e.grad))
    (a, ga), (b, gb) = grads
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    assert float((ga - gb).abs().max()) <= 1e-5 * max(1.0, float(gb.abs().max()))
