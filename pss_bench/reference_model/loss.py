"""Training losses of PSS: SegSort with panoptic labels, segment classifier, seeds.

The core, :func:`segsort_loss`, is a function of a flat pixel table (one row
per labelled pixel) so that the stride-4 pixels and the hybrid-scale stride-2
pixels of small instances can be mixed freely. :func:`pss_losses` builds the
table from a network output and a training batch (see
``pss_bench/data/sample.py`` for the batch contract).

The rules (paper sec. 3.1-3.3; SegSort, Hwang et al. ICCV 2019):

* a *segment* is a k-means cluster intersected with one GT panoptic segment of
  one image; its prototype is the normalised mean of its pixel embeddings
  (with gradient); k-means assignments carry no gradient;
* pixel ``i`` with embedding ``e_i`` in segment ``s(i)``: the *positives* are
  the other segments of the same GT instance (thing) or of the same stuff class
  anywhere in the batch (stuff); when ``s(i)`` is the only batch segment of its
  instance / stuff class, ``s(i)`` itself is the positive; the *denominator*
  holds all batch segments except ``s(i)`` (``s(i)`` included when it is the
  positive), plus the memory prototypes; memory prototypes of the pixel's stuff
  class are positives, all other memory prototypes negatives;
* ``L = mean_i -log( sum_{s in pos} exp(k m_s.e_i) / sum_{s in den} exp(k m_s.e_i) )``
  with concentration ``k`` (kappa);
* VOID, padding and crowd pixels carry no loss.

Everything is batched (``unique``, ``index_add``, one-hot sums): no Python
loop over pixels, clusters or segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pss_bench.reference_model.config import KMeansConfig, LossConfig
from pss_bench.reference_model.kmeans import pooled_kmeans

IGNORE_INDEX = 255


def downsample_labels(labels: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Nearest-neighbour resampling of ``(B, H, W)`` label maps to ``(B, h, w)``.

    Takes the input pixel under each output pixel's centre, so ids are never mixed.
    """
    hh, ww = labels.shape[-2:]
    rows = ((torch.arange(h, device=labels.device) + 0.5) * hh / h).long().clamp_(max=hh - 1)
    cols = ((torch.arange(w, device=labels.device) + 0.5) * ww / w).long().clamp_(max=ww - 1)
    return labels[..., rows[:, None], cols[None, :]]


@dataclass
class SegmentTable:
    """Segments of a batch built by :func:`segsort_loss`.

    Attributes:
        prototypes: ``(S, D)`` normalised mean embeddings (with gradient).
        classes: ``(S,)`` int64 GT class index.
        isthing: ``(S,)`` bool.
        pixel_segment: ``(P,)`` int64 segment of every pixel row.
    """

    prototypes: torch.Tensor
    classes: torch.Tensor
    isthing: torch.Tensor
    pixel_segment: torch.Tensor


def _pair_key(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """One int64 per ``(first, second)`` pair of non-negative ints, ordered as the pairs.

    ``torch.unique(dim=0)`` on stacked pairs compares rows one by one on a CPU
    (seconds per batch); a scalar key sorts the same way in one pass.
    """
    span = int(second.max()) + 1 if second.numel() else 1
    return first * span + second


def _dense(key: torch.Tensor) -> tuple[torch.Tensor, int]:
    uniq, inv = torch.unique(key, return_inverse=True)
    return inv, int(uniq.numel())


def segsort_loss(
    emb: torch.Tensor,
    image: torch.Tensor,
    cluster: torch.Tensor,
    instance: torch.Tensor,
    classes: torch.Tensor,
    isthing: torch.Tensor,
    kappa: float,
    memory: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    sample: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SegmentTable]:
    """The SegSort pixel-to-segment loss with panoptic labels.

    Args:
        emb: ``(P, D)`` float32 unit-norm pixel embeddings (with gradient).
        image: ``(P,)`` int64 image index in the batch.
        cluster: ``(P,)`` int64 k-means cluster (within the image).
        instance: ``(P,)`` int64 GT panoptic segment id (within the image, non-zero).
        classes: ``(P,)`` int64 GT class index.
        isthing: ``(P,)`` bool, the class is a thing class.
        kappa: concentration.
        memory: optional ``(prototypes (M, D), classes (M,), isthing (M,))`` of past iterations.
        sample: optional ``(P',)`` int64 rows whose likelihood is averaged (an
            unbiased estimate of the mean over all rows when drawn uniformly);
            prototypes are always built from all rows.

    Returns:
        ``(loss, segments)``: the scalar mean over pixels (0 with gradient when
        ``P == 0``) and the :class:`SegmentTable`.
    """
    if emb.dtype in (torch.float16, torch.bfloat16):
        emb = emb.float()  # the sums of exponentials need float32
    p = emb.shape[0]
    dev = emb.device
    if p == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return emb.sum() * 0.0, SegmentTable(emb[:0], empty, empty.bool(), empty)
    # GT segment per (image, id), then segment per (GT segment, cluster).
    _, gt_seg = torch.unique(_pair_key(image, instance), return_inverse=True)
    n_gt = int(gt_seg.max()) + 1
    k = int(cluster.max()) + 1
    seg, s = _dense(gt_seg * k + cluster)
    # Positive group: the GT segment for things, the class (offset past all GT segments) for stuff.
    group_key = torch.where(isthing, gt_seg, n_gt + classes)
    group_of_pixel, n_groups = _dense(group_key)
    seg_group = torch.zeros(s, dtype=torch.long, device=dev).scatter_(0, seg, group_of_pixel)
    seg_class = torch.zeros(s, dtype=torch.long, device=dev).scatter_(0, seg, classes)
    seg_thing = torch.zeros(s, dtype=torch.bool, device=dev).scatter_(0, seg, isthing)
    segs_in_group = torch.zeros(n_groups, dtype=torch.long, device=dev).index_add_(
        0, seg_group, torch.ones_like(seg_group)
    )

    sums = torch.zeros(s, emb.shape[1], dtype=emb.dtype, device=dev).index_add(0, seg, emb)
    proto = F.normalize(sums, dim=1)
    table = SegmentTable(proto, seg_class, seg_thing, seg)
    if sample is not None:
        emb, seg, group_of_pixel, classes, isthing = (t[sample] for t in (emb, seg, group_of_pixel, classes, isthing))
        p = emb.shape[0]

    # -log(sum_pos exp / sum_den exp) from float32 logits as log-sum-exps:
    # exact for any kappa (no exp of a large or very negative number is ever
    # summed). The denominator is one dense (P, S) pass with each pixel's own
    # segment masked; the positives are (pixel, segment of its group) pairs, a
    # few per thing pixel and a class's segments per stuff pixel, never a
    # dense (P, S) mask; _ContrastiveNLL fuses the backward into one pass.
    emb_k = kappa * emb  # scaled before the product: (P, D) multiplications, not (P, S)
    logits = emb_k @ proto.t()  # (P, S)
    rows = torch.arange(p, device=dev)
    alone = segs_in_group[group_of_pixel] == 1
    others = ~alone
    pix, pcol = _group_pairs(seg, group_of_pixel, seg_group, segs_in_group, alone)
    if memory is not None and memory[0].shape[0] > 0:
        m_proto, m_class, m_thing = memory
        # every memory prototype is in the denominator; those of the pixel's stuff class are positives too
        logits = torch.cat([logits, emb_k @ m_proto.t().to(emb.dtype)], dim=1)  # (P, S + M)
        pos_mem = (~isthing)[:, None] & (~m_thing)[None, :] & (classes[:, None] == m_class[None, :])
        mem_pix, mem_col = torch.nonzero(pos_mem, as_tuple=True)
        pix, pcol = torch.cat([pix, mem_pix]), torch.cat([pcol, mem_col + s])
    loss = _ContrastiveNLL.apply(logits, rows[others], seg[others], pix, pcol)
    return loss, table


class _ContrastiveNLL(torch.autograd.Function):
    """``mean_i [logsumexp_{den(i)} logits_i - logsumexp_{pos(i)} logits_i]`` with a fused backward.

    ``den(i)`` is every column but ``(masked_rows, masked_cols)``; ``pos(i)``
    the columns of the pairs ``(pix, col)`` (every row has one). The gradient
    is ``(softmax over den - softmax over pos) / P`` from the saved
    exponentials: one dense pass, where autograd's log-sum-exps take several.
    """

    @staticmethod
    def forward(ctx, logits, masked_rows, masked_cols, pix, col):
        p = logits.shape[0]
        work = logits.detach().clone()
        work[masked_rows, masked_cols] = torch.finfo(work.dtype).min
        top = work.max(dim=1).values
        work.sub_(top[:, None]).exp_()  # masked cells: exactly 0
        den_sum = work.sum(dim=1)
        pair_logits = logits.detach()[pix, col]
        log_num = _scatter_logsumexp(pair_logits, pix, p)
        per_pixel = top + torch.log(den_sum) - log_num
        ctx.save_for_backward(work, den_sum, pair_logits, log_num, pix, col)
        return per_pixel.mean()

    @staticmethod
    def backward(ctx, grad):
        work, den_sum, pair_logits, log_num, pix, col = ctx.saved_tensors
        p = work.shape[0]
        out = work * ((grad / p) / den_sum)[:, None]  # softmax over the denominator, times grad / P
        out.index_put_((pix, col), -torch.exp(pair_logits - log_num[pix]) * (grad / p), accumulate=True)
        return out, None, None, None, None


def _group_pairs(seg, group_of_pixel, seg_group, segs_in_group, alone) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixel, segment)`` rows of the positives: the segments of each pixel's group but its own (its own when alone).

    Args:
        seg: ``(P,)`` segment of every pixel; group_of_pixel: ``(P,)`` its group;
        seg_group: ``(S,)`` group of every segment; segs_in_group: ``(G,)``
        segments per group; alone: ``(P,)`` the pixel's group has one segment.

    Returns:
        Two ``(Q,)`` int64 tensors, grouped by pixel (every pixel has at least one row).
    """
    dev = seg.device
    order = torch.argsort(seg_group, stable=True)  # segments sorted by group
    group_start = torch.cumsum(segs_in_group, 0) - segs_in_group
    count = segs_in_group[group_of_pixel]  # (P,)
    pix = torch.repeat_interleave(torch.arange(seg.shape[0], device=dev), count)
    slot = torch.arange(pix.shape[0], device=dev) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    pseg = order[group_start[group_of_pixel][pix] + slot]
    keep = (pseg != seg[pix]) | alone[pix]
    return pix[keep], pseg[keep]


def _scatter_logsumexp(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """``(n,)`` log-sum-exp of ``values`` grouped by ``index`` (every group non-empty), stabilised by each group's max."""
    top = torch.full((n,), torch.finfo(values.dtype).min, dtype=values.dtype, device=values.device)
    top = top.scatter_reduce(0, index, values.detach(), reduce="amax", include_self=True)
    sums = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, index, torch.exp(values - top[index]))
    return top + torch.log(sums)


MIN_SIGMA = 1.0  # input pixels: the narrowest size-scaled centre Gaussian


def center_heatmap(
    panoptic: torch.Tensor,
    instance_mask: torch.Tensor,
    out_size: tuple[int, int],
    sigma: float,
    input_size: tuple[int, int],
    snap: bool = False,
    sigma_scale: float = 0.0,
) -> torch.Tensor:
    """Gaussian centre-heatmap targets at the instances' mass centres.

    The paper takes centres from the boxes of a detection branch; without one
    we use each instance's mass centre (as Panoptic-DeepLab), which for
    non-convex instances may fall outside the instance.

    Args:
        panoptic: ``(B, h2, w2)`` int64 GT ids on some grid covering the input.
        instance_mask: ``(B, h2, w2)`` bool, pixels of non-crowd thing instances.
        out_size: ``(h, w)`` of the heatmap.
        sigma: Gaussian standard deviation, in input pixels.
        input_size: ``(H, W)`` of the input image, to convert grids to input pixels.
        snap: move every centre to the centre of the heatmap cell holding it,
            so that this cell is exactly 1 (CenterNet's targets: one positive
            cell per instance).

    Returns:
        ``(B, h, w)`` float32 in ``[0, 1]``: max over the image's instances of
        ``exp(-d^2 / (2 sigma^2))``.
    """
    b, h2, w2 = panoptic.shape
    h, w = out_size
    hh, ww = input_size
    dev = panoptic.device
    heat = torch.zeros(b, h * w, device=dev)
    if not bool(instance_mask.any()):
        return heat.reshape(b, h, w)
    bidx, ys, xs = torch.nonzero(instance_mask, as_tuple=True)
    ids = panoptic[bidx, ys, xs]
    _, inst = torch.unique(_pair_key(bidx, ids), return_inverse=True)
    n = int(inst.max()) + 1
    coords = torch.stack([(ys.float() + 0.5) * hh / h2, (xs.float() + 0.5) * ww / w2], 1)
    cnt = torch.zeros(n, device=dev).index_add_(0, inst, torch.ones_like(ys, dtype=torch.float32))
    centres = torch.zeros(n, 2, device=dev).index_add_(0, inst, coords) / cnt[:, None]
    if snap:
        cell = torch.tensor([hh / h, ww / w], device=dev)
        top = torch.tensor([h - 1, w - 1], device=dev, dtype=torch.float32)
        centres = (torch.minimum(torch.floor(centres / cell), top) + 0.5) * cell
    inst_img = torch.zeros(n, dtype=torch.long, device=dev).scatter_(0, inst, bidx)
    gy = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) * hh / h
    gx = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) * ww / w
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij"), -1).reshape(1, h * w, 2)
    d2 = ((grid - centres[:, None, :]) ** 2).sum(-1)  # (n, h*w)
    sig = sigma
    if sigma_scale > 0:  # one sigma per instance (a column, broadcast over the grid)
        area = cnt * (hh / h2) * (ww / w2)
        sig = (sigma_scale * area.sqrt()).clamp(min=MIN_SIGMA, max=max(sigma, MIN_SIGMA))[:, None]
    g = torch.exp(-d2 / (2 * sig**2))
    heat.scatter_reduce_(0, inst_img[:, None].expand(-1, h * w), g, reduce="amax", include_self=True)
    return heat.reshape(b, h, w)


def seed_focal_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on centre logits (Law & Deng 2018; Zhou et al. 2019).

    With ``p = sigmoid(logits)`` and target heatmap ``Y`` (exactly 1 at the
    one centre cell of every instance)::

        L = -1/N_c * sum_valid { (1 - p)^alpha log p                 if Y = 1
                               { (1 - Y)^beta p^alpha log(1 - p)     otherwise

    ``N_c`` is the number of centre cells (at least 1). Computed in float32
    from ``logsigmoid`` so that no ``log(0)`` occurs under any logit.

    Args:
        logits: ``(B, h, w)`` seed-head output.
        target: ``(B, h, w)`` in ``[0, 1]`` (:func:`center_heatmap` with ``snap=True``).
        valid: ``(B, h, w)`` bool, pixels that carry a loss.
    """
    x = logits.float()
    pos = (target >= 1.0) & valid
    log_p = F.logsigmoid(x)
    log_1mp = F.logsigmoid(-x)
    p = torch.sigmoid(x)
    pos_term = (1 - p).pow(alpha) * log_p
    neg_term = (1 - target).pow(beta) * p.pow(alpha) * log_1mp
    per_pixel = torch.where(pos, pos_term, neg_term) * valid
    return -per_pixel.sum() / pos.sum().clamp(min=1)


def check_batch_labels(batch: dict, num_classes: int) -> None:
    """Refuses label maps that would index out of range further on.

    A semantic label outside ``[0, C) ∪ {255}`` or a negative panoptic id is a
    data error: on a GPU it would surface as an opaque device-side assert (or
    an illegal memory access) inside a gather; here it is one clear message.

    Raises:
        PssBenchError: naming the image and the bad value.
    """
    from pss_bench.errors import PssBenchError

    sem, pan = batch["semantic"], batch["panoptic"]
    bad_sem = (sem != IGNORE_INDEX) & ((sem < 0) | (sem >= num_classes))
    bad_pan = pan < 0
    flags = torch.stack([bad_sem.flatten(1).any(1), bad_pan.flatten(1).any(1)], 1).cpu()
    if bool(flags.any()):
        b, kind = (int(v) for v in torch.nonzero(flags)[0])
        ids = batch.get("image_id") or [None] * sem.shape[0]
        if kind == 0:
            value = int(sem[b][bad_sem[b]][0])
            raise PssBenchError(
                f"image {ids[b]}: semantic label {value} is outside the {num_classes} classes of the category "
                f"list (0..{num_classes - 1}, {IGNORE_INDEX} = VOID)"
            )
        value = int(pan[b][bad_pan[b]][0])
        raise PssBenchError(f"image {ids[b]}: negative panoptic id {value}")


class PrototypeMemory:
    """Detached prototypes of the last ``length`` iterations (a FIFO of batches)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def get(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if not self.items:
            return None
        return tuple(torch.cat([it[j] for it in self.items]).to(device) for j in range(3))  # type: ignore[return-value]

    def push(self, segments: SegmentTable) -> None:
        if self.length <= 0:
            return
        self.items.append((segments.prototypes.detach().float(), segments.classes.detach(), segments.isthing.detach()))
        self.items = self.items[-self.length :]

    def state_dict(self) -> dict:
        return {"length": self.length, "items": [[t.cpu() for t in it] for it in self.items]}

    def load_state_dict(self, state: dict) -> None:
        self.length = int(state["length"])
        self.items = [tuple(it) for it in state["items"]]  # type: ignore[misc]


def pss_losses(
    out: dict[str, torch.Tensor],
    batch: dict,
    classifier,
    thing_classes: torch.Tensor,
    loss_cfg: LossConfig,
    kmeans_cfg: KMeansConfig,
    memory: PrototypeMemory | None = None,
) -> tuple[dict[str, torch.Tensor], SegmentTable]:
    """All training losses of one batch.

    Args:
        out: the network output (``embedding (B, D, h, w)``, ``seed (B, 1, h, w)``).
        batch: a collated training batch: ``image (B, 3, H, W)``, ``panoptic``,
            ``semantic`` (255 ignore) and ``crowd`` ``(B, H, W)``.
        classifier: the segment classifier, ``(S, D) -> (S, C)``.
        thing_classes: ``(C,)`` bool, whether each class index is a thing.
        loss_cfg, kmeans_cfg: configuration.
        memory: prototype memory (read here, not updated).

    Returns:
        ``(losses, segments)``: a dict with ``segsort``, ``classifier``,
        ``seed`` and the weighted ``total``; and the batch's segments.
    """
    emb = out["embedding"].float()
    b, d, h, w = emb.shape
    hh, ww = batch["panoptic"].shape[-2:]
    dev = emb.device
    thing_classes = thing_classes.to(dev)
    check_batch_labels(batch, thing_classes.numel())

    # Labels at the embedding's resolution (stride 4, or 2 with the decoder).
    stride = max(1, round(hh / h))
    pan4 = downsample_labels(batch["panoptic"], h, w)
    sem4 = downsample_labels(batch["semantic"], h, w)
    crowd4 = downsample_labels(batch["crowd"], h, w)
    kvalid = sem4 != IGNORE_INDEX
    # k-means at stride 4 as the paper's; a stride-2 map is clustered pooled, then assigned.
    assign = pooled_kmeans(emb.detach(), kvalid, tuple(kmeans_cfg.grid), kmeans_cfg.iterations,
                           kmeans_cfg.coord_weight, pool=2 if stride <= 2 else 1)

    def table(pan, sem, crowd, emb_map, assign_map, select):
        keep = select & (sem != IGNORE_INDEX) & ~crowd & (pan != 0) & (assign_map >= 0)
        bi, yi, xi = torch.nonzero(keep, as_tuple=True)
        cls = sem[bi, yi, xi]
        return (
            emb_map[bi, :, yi, xi],
            bi,
            assign_map[bi, yi, xi],
            pan[bi, yi, xi],
            cls,
            thing_classes[cls.clamp(max=thing_classes.numel() - 1)],
        )

    # Labels at twice the seed map's resolution (stride 2): instance areas for
    # the hybrid scale and the centre targets.
    sh, sw = out["seed"].shape[-2:]
    pan2 = downsample_labels(batch["panoptic"], 2 * sh, 2 * sw)
    sem2 = downsample_labels(batch["semantic"], 2 * sh, 2 * sw)
    crowd2 = downsample_labels(batch["crowd"], 2 * sh, 2 * sw)
    thing2 = (sem2 != IGNORE_INDEX) & thing_classes[sem2.clamp(max=thing_classes.numel() - 1)] & ~crowd2 & (pan2 != 0)

    rows4 = table(pan4, sem4, crowd4, emb, assign, torch.ones_like(kvalid))
    small2 = torch.zeros_like(thing2)
    if stride >= 4 and loss_cfg.small_instance_area > 0 and bool(thing2.any()):
        bi, yi, xi = torch.nonzero(thing2, as_tuple=True)
        _, inv, counts = torch.unique(_pair_key(bi, pan2[bi, yi, xi]), return_inverse=True, return_counts=True)
        px_area = (hh * ww) / (4 * sh * sw)
        small_px = (counts[inv].float() * px_area) < loss_cfg.small_instance_area
        small2[bi[small_px], yi[small_px], xi[small_px]] = True
    if bool(small2.any()) and (2 * sh, 2 * sw) == (2 * h, 2 * w):
        # Hybrid scale: small instances' pixels come from 2x bilinearly upscaled embeddings.
        small_ids = torch.stack([torch.nonzero(small2)[:, 0], pan2[small2]], 1)  # with repeats: a set for isin
        is_small4 = _isin_pairs(pan4, small_ids)
        rows4 = table(pan4, sem4, crowd4, emb, assign, ~is_small4)
        emb2 = F.normalize(F.interpolate(emb, scale_factor=2, mode="bilinear", align_corners=False), dim=1)
        assign2 = assign.repeat_interleave(2, 1).repeat_interleave(2, 2)
        rows2 = table(pan2, sem2, crowd2, emb2, assign2, small2)
        rows = [torch.cat([a, c]) for a, c in zip(rows4, rows2)]
    else:
        rows = list(rows4)
    sample = None
    n_rows = rows[0].shape[0]
    if 0 < loss_cfg.max_pixels < n_rows:
        sample = _draw_pixels(rows[1], rows[3], loss_cfg.max_pixels, loss_cfg.pixel_balance)
    mem = memory.get(dev) if memory is not None else None
    with torch.autocast(dev.type, enabled=False):  # float32 logits and sums even inside an autocast region
        seg_loss, segments = segsort_loss(*rows, kappa=loss_cfg.kappa, memory=mem, sample=sample)

    # Always call the classifier so every parameter gets a gradient (DDP needs it).
    logits = classifier(segments.prototypes)
    if segments.prototypes.shape[0] > 0:
        cls_loss = balanced_cross_entropy(logits.float(), segments.classes, loss_cfg.classifier_balance)
    else:
        cls_loss = logits.sum() * 0.0

    seed = out["seed"][:, 0].float()
    seed_valid = downsample_labels(batch["semantic"], sh, sw) != IGNORE_INDEX
    if loss_cfg.seed_loss == "focal":
        target = center_heatmap(pan2, thing2, (sh, sw), loss_cfg.seed_sigma, (hh, ww), snap=True,
                                sigma_scale=loss_cfg.seed_sigma_scale)
        seed_loss = seed_focal_loss(seed, target, seed_valid)
    else:
        target = center_heatmap(pan2, thing2, (sh, sw), loss_cfg.seed_sigma, (hh, ww),
                                sigma_scale=loss_cfg.seed_sigma_scale)
        valid_f = seed_valid.float()
        seed_loss = (((seed - target) ** 2) * valid_f).sum() / valid_f.sum().clamp(min=1.0)

    total = loss_cfg.segsort_weight * seg_loss + loss_cfg.classifier_weight * cls_loss + loss_cfg.seed_weight * seed_loss
    return {"total": total, "segsort": seg_loss, "classifier": cls_loss, "seed": seed_loss}, segments


def balanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor, balance: float) -> torch.Tensor:
    """Cross-entropy with each row weighted by (rows of its target class) ** -balance, normalised.

    ``balance`` 0 is the plain mean; 1 gives every class present the same total weight.
    """
    if balance <= 0:
        return F.cross_entropy(logits, target)
    counts = torch.bincount(target, minlength=logits.shape[1]).float()
    weight = counts[target].pow(-balance)
    return (F.cross_entropy(logits, target, reduction="none") * weight).sum() / weight.sum()


def _draw_pixels(image: torch.Tensor, segment: torch.Tensor, n: int, balance: float) -> torch.Tensor:
    """Indices of ``n`` of the rows, without replacement, with probability ~ (GT segment area) ** -balance.

    ``balance`` 0 draws uniformly; otherwise the weighted draw is a Gumbel
    top-k (Efraimidis-Spirakis): one pass, no Python loop.
    """
    rows = image.shape[0]
    if balance <= 0:
        return torch.randperm(rows, device=image.device)[:n]
    key = _pair_key(image, segment)
    _, inv, counts = torch.unique(key, return_inverse=True, return_counts=True)
    gumbel = -torch.log(-torch.log(torch.rand(rows, device=image.device).clamp(1e-12, 1 - 1e-7)))
    score = gumbel - balance * torch.log(counts[inv].float())
    return torch.topk(score, n, sorted=False).indices


def _isin_pairs(pan: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """``(B, h, w)`` bool: whether ``(image, pan[b, y, x])`` is one of ``pairs (n, 2)``."""
    base = int(pan.max()) + 1
    img_idx = torch.arange(pan.shape[0], device=pan.device)[:, None, None]
    return torch.isin(img_idx * base + pan, pairs[:, 0] * base + pairs[:, 1])
