"""Oracle experiments for the PSS pipeline: what it can reach with ideal inputs.

Two numbers bound what a trained model can score on a data set:

* the **output-stride cap** (:func:`stride_cap`): the ground truth taken down
  to the network's output stride (nearest, as the training labels are) and
  back up to the input resolution, scored against itself. No post-processing
  working at that stride can do better: an instance that vanishes at the
  stride cannot be predicted;
* the **ideal-input score** (:func:`ideal_input_pq`): the whole inference
  post-processing (k-means over-segmentation, partitioning, classification,
  merging, seeds) fed with what a perfect network would output: one random
  unit vector per GT segment plus noise as the embedding, a classifier that
  returns the GT class of the nearest GT vector, and GT centres as seeds.

A pipeline that is sound reaches (nearly) the cap with ideal inputs; the gap
between the two is what the post-processing itself loses. Pure tensor code
plus the in-memory PQ accumulator: no files.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pss_bench.data.sample import IGNORE_INDEX
from pss_bench.metrics.pq import PanopticQuality, PQResult
from pss_bench.reference_model.config import PSSConfig
from pss_bench.models.data import segments_from_item
from pss_bench.reference_model.loss import center_heatmap, downsample_labels
from pss_bench.reference_model.postprocess import panoptic_inference, to_panoptic, upsample_labels
from pss_bench.structures import Category, Segments


def _gt_as_prediction(ids: np.ndarray, gt: Segments) -> Segments:
    """Segments of an id map built from GT ids (the category of each GT id)."""
    present = np.unique(ids)
    present = present[present != 0]
    cat = dict(zip(gt.ids.tolist(), gt.category_ids.tolist()))
    return Segments(present.astype(np.int64), np.array([cat[int(i)] for i in present], dtype=np.int64),
                    np.zeros(len(present), dtype=bool))


def downsized_labels(dataset, scale: int) -> list[dict]:
    """The ``panoptic``, ``semantic`` and ``crowd`` maps of every item at ``1/scale`` size (centre pixels)."""
    items = []
    for i in range(len(dataset)):
        it = dataset[i]
        h, w = it["panoptic"].shape
        items.append({k: downsample_labels(it[k][None], h // scale, w // scale)[0] for k in ("panoptic", "semantic", "crowd")})
    return items


def stride_cap(items: Iterable[dict], categories: Sequence[Category], stride: int) -> PQResult:
    """PQ of the GT taken to ``stride`` and back (nearest both ways).

    Args:
        items: training items (``panoptic``, ``semantic``, ``crowd`` ``(H, W)``).
        categories: the data set's category list.
        stride: the network's output stride.
    """
    metric = PanopticQuality(categories)
    for it in items:
        pan = it["panoptic"]
        h, w = pan.shape
        down = downsample_labels(pan[None], -(-h // stride), -(-w // stride))[0]
        up = upsample_labels(down, (h, w)).numpy()
        gt = segments_from_item(pan, it["semantic"], it["crowd"], categories)
        metric.update(pan.numpy(), gt, up, _gt_as_prediction(up, gt))
    return metric.compute()


def ideal_outputs(
    item: dict,
    categories: Sequence[Category],
    stride: int,
    *,
    embed_dim: int = 16,
    noise: float = 0.3,
    seed_sigma: float = 8.0,
    generator: torch.Generator | None = None,
):
    """What a perfect network would output for one training item.

    Args:
        item: a training item.
        categories: the data set's category list.
        stride: output stride of the embedding (seeds are always at stride 4).
        embed_dim: embedding dimension.
        noise: standard deviation of the per-pixel noise added to the unit
            vectors, relative to a unit vector (before re-normalising).
        seed_sigma: Gaussian sigma of the centre heatmap, in input pixels.
        generator: random generator of the vectors and the noise.

    Returns:
        ``(embedding (D, h, w), classifier, seed_prob (h4, w4))``: the
        classifier maps prototypes ``(N, D)`` to logits ``(N, C)`` of the GT
        class of the nearest GT vector.
    """
    pan, sem, crowd = item["panoptic"], item["semantic"], item["crowd"]
    hh, ww = pan.shape
    h, w = -(-hh // stride), -(-ww // stride)
    pan_s = downsample_labels(pan[None], h, w)[0]
    sem_s = downsample_labels(sem[None], h, w)[0]
    ids, inv = torch.unique(pan_s, return_inverse=True)
    vec = F.normalize(torch.randn(len(ids), embed_dim, generator=generator), dim=1)
    emb = vec[inv].permute(2, 0, 1) + noise * torch.randn(embed_dim, h, w, generator=generator) / embed_dim**0.5
    emb = F.normalize(emb, dim=0)
    # GT class of every GT id (VOID -> class 0: its pixels are outside the union anyway)
    cls = torch.zeros(len(ids), dtype=torch.long).scatter_(0, inv.reshape(-1), sem_s.reshape(-1))
    cls = torch.where(cls == IGNORE_INDEX, torch.zeros_like(cls), cls)

    def classifier(prototypes: torch.Tensor) -> torch.Tensor:
        nearest = (prototypes.float() @ vec.t()).argmax(dim=1)
        return F.one_hot(cls[nearest], len(categories)).float() * 20.0

    thing = torch.tensor([c.isthing for c in categories], dtype=torch.bool)
    h4, w4 = -(-hh // 4), -(-ww // 4)
    pan2 = downsample_labels(pan[None], 2 * h4, 2 * w4)
    sem2 = downsample_labels(sem[None], 2 * h4, 2 * w4)
    crowd2 = downsample_labels(crowd[None], 2 * h4, 2 * w4)
    inst2 = (sem2 != IGNORE_INDEX) & thing[sem2.clamp(max=len(categories) - 1)] & ~crowd2 & (pan2 != 0)
    seed = center_heatmap(pan2, inst2, (h4, w4), seed_sigma, (hh, ww), snap=True)[0]
    return emb, classifier, seed


def ideal_input_pq(
    items: Iterable[dict],
    categories: Sequence[Category],
    cfg: PSSConfig,
    *,
    noise: float = 0.3,
    seed: int = 0,
) -> PQResult:
    """PQ of the inference post-processing of ``cfg`` fed with :func:`ideal_outputs`.

    The output stride, k-means and inference settings come from ``cfg``.
    """
    stride = cfg.model.output_stride
    thing = torch.tensor([c.isthing for c in categories], dtype=torch.bool)
    gen = torch.Generator().manual_seed(seed)
    metric = PanopticQuality(categories)
    for it in items:
        emb, classifier, seed_map = ideal_outputs(it, categories, stride, embed_dim=cfg.model.embed_dim, noise=noise,
                                                  seed_sigma=cfg.loss.seed_sigma, generator=gen)
        out = panoptic_inference(
            emb, classifier, thing, cfg.inference, seed_map=seed_map, iterations=cfg.kmeans.iterations,
            coord_weight=cfg.kmeans.coord_weight, kmeans_pool=2 if stride == 2 else 1,
        )
        ids, info = to_panoptic(out, [c.id for c in categories], tuple(it["panoptic"].shape))
        gt = segments_from_item(it["panoptic"], it["semantic"], it["crowd"], categories)
        metric.update(it["panoptic"].numpy(), gt, ids.numpy(), info)
    return metric.compute()
