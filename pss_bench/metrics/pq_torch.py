"""PQ statistics of torch label maps, counted on the tensors' own device.

The only work proportional to the image size, finding the segments and the
pixel histogram of (GT segment, predicted segment) pairs, runs where the
tensors live (``torch.unique`` and ``torch.bincount``). What comes back to the
host is the ``(G + 1, P + 1)`` confusion matrix and the segment keys (a few
kB), to which :func:`pss_bench.metrics.pq.match_image` applies panopticapi's
rules, so the numbers are those of ``pss-bench pq``.

Segments are ``(category index, instance)`` pairs per pixel (category index
``-1`` for VOID), or int64 *keys* ``category_index << 32 | instance``
(:func:`segment_keys`). Imports torch: nothing that ``pss-bench pq`` loads
imports this module.
"""

from __future__ import annotations

import numpy as np
import torch

from pss_bench.metrics.pq import ImageSegments, match_image

VOID_KEY = -1
_INSTANCE_BITS = 32
_INSTANCE_MASK = (1 << _INSTANCE_BITS) - 1


def segment_keys(category_index: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
    """Packs per-pixel ``(category index, instance id)`` into int64 keys.

    Args:
        category_index: integer tensor, any shape; ``-1`` marks VOID pixels.
        instance: integer tensor of the same shape, ``0 <= instance < 2**32``
            (not checked here).

    Returns:
        int64 tensor of that shape: ``category_index << 32 | instance``, or
        ``-1`` where ``category_index < 0``.
    """
    cat = category_index.to(torch.int64)
    keys = (cat << _INSTANCE_BITS) | instance.to(torch.int64)
    return torch.where(cat >= 0, keys, torch.full_like(keys, VOID_KEY))


def decode_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(category_index, instance)`` int64 arrays of non-VOID segment keys."""
    keys = np.asarray(keys, dtype=np.int64)
    return keys >> _INSTANCE_BITS, keys & _INSTANCE_MASK


def dense_segments(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct segments of a key map and each pixel's dense segment index.

    Args:
        keys: ``(N,)`` int64 keys (``-1`` = VOID).

    Returns:
        ``(segments, index)``: ``(S,)`` sorted distinct non-VOID keys and
        ``(N,)`` int64 indices, ``0`` for VOID and ``i + 1`` for
        ``segments[i]``; both on ``keys.device``.
    """
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    if uniq.numel() and int(uniq[0]) == VOID_KEY:
        return uniq[1:], inverse
    return uniq, inverse + 1


#: Above this many (category, instance) codes, segments are found by sorting
#: (``torch.unique``) instead of a histogram over the codes.
MAX_HISTOGRAM_CODES = 1 << 22


def dense_segments_from_pairs(
    category_index: torch.Tensor, instance: torch.Tensor, n_categories: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dense_segments` of ``(category index, instance)`` maps, without sorting pixels.

    When ``n_categories * (max instance + 1)`` is at most
    :data:`MAX_HISTOGRAM_CODES`, the present codes come from one
    ``torch.bincount`` and the dense index from a gather (O(N); a CPU sort of
    a 2-Mpixel map is about ten times slower); otherwise it falls back to
    ``torch.unique``.

    Args:
        category_index: ``(N,)`` int64, ``-1`` for VOID.
        instance: ``(N,)`` int64 in ``[0, 2**32)``, 0 where the category is VOID.
        n_categories: ``C`` (category indices lie in ``[0, C)``).

    Returns:
        As :func:`dense_segments`: sorted keys ``(S,)`` and ``(N,)`` indices.
    """
    span = int(instance.max()) + 1 if instance.numel() else 1
    total = n_categories * span
    if total > MAX_HISTOGRAM_CODES:
        return dense_segments(segment_keys(category_index, instance))
    # VOID (category -1, instance 0) gives a code <= 0, clamped to 0.
    code = (category_index * span).add_(instance).add_(1).clamp_(min=0)
    present = torch.bincount(code, minlength=total + 1)[1:] > 0
    codes = torch.nonzero(present).reshape(-1)  # ascending = sorted keys
    lut = torch.zeros(total + 1, dtype=torch.int64, device=code.device)
    lut[codes + 1] = torch.arange(1, codes.numel() + 1, device=code.device)
    keys = ((codes // span) << _INSTANCE_BITS) | (codes % span)
    return keys, lut[code]


def confusion_matrix_torch(gt_index: torch.Tensor, pred_index: torch.Tensor, n_gt: int, n_pred: int) -> torch.Tensor:
    """Pixel counts of every (GT index, prediction index) pair, on the inputs' device.

    Args:
        gt_index: ``(N,)`` int64 dense GT indices in ``[0, n_gt]`` (0 = VOID).
        pred_index: ``(N,)`` int64 dense prediction indices in ``[0, n_pred]``.

    Returns:
        ``(n_gt + 1, n_pred + 1)`` int64 tensor; row 0 is GT VOID, column 0
        predicted VOID (the layout of :func:`pss_bench.metrics.pq.confusion_matrix`).
    """
    cols = n_pred + 1
    joint = gt_index * cols + pred_index
    return torch.bincount(joint, minlength=(n_gt + 1) * cols).reshape(n_gt + 1, cols)


def image_pq_stats_torch(
    gt_category: torch.Tensor,
    gt_instance: torch.Tensor,
    pred_category: torch.Tensor,
    pred_instance: torch.Tensor,
    is_thing: np.ndarray,
    *,
    crowd_instance: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PQ statistics of one image given as (category index, instance) maps, panopticapi's rules.

    Args:
        gt_category: ``(N,)`` int64 GT category indices, ``-1`` for VOID.
        gt_instance: ``(N,)`` int64 GT instance ids in ``[0, 2**32)``, 0 on VOID.
        pred_category, pred_instance: the prediction, same device.
        is_thing: ``(C,)`` bool, per category index.
        crowd_instance: GT segments of thing categories with this instance id
            are crowd regions (``None``: no crowd).

    Returns:
        ``(iou, tp, fp, fn)`` numpy arrays of length ``C``, as
        :func:`~pss_bench.metrics.pq.match_image`.
    """
    conf_np, gt, pred, _, _ = image_segments_torch(gt_category, gt_instance, pred_category, pred_instance, is_thing,
                                                   crowd_instance=crowd_instance)
    return match_image(conf_np, gt, pred, int(is_thing.shape[0]))


def image_segments_torch(
    gt_category: torch.Tensor,
    gt_instance: torch.Tensor,
    pred_category: torch.Tensor,
    pred_instance: torch.Tensor,
    is_thing: np.ndarray,
    *,
    crowd_instance: int | None = None,
) -> tuple[np.ndarray, ImageSegments, ImageSegments, torch.Tensor, torch.Tensor]:
    """The confusion matrix and segments of one image, as :func:`image_pq_stats_torch` builds them.

    Returns:
        ``(conf, gt, pred, gt_index, pred_index)``: the host confusion matrix,
        the segment attributes, and the ``(N,)`` dense index maps on the
        tensors' device (0 = VOID), for metrics that need the pixels
        (Boundary PQ).
    """
    n_categories = int(is_thing.shape[0])
    gseg, gidx = dense_segments_from_pairs(gt_category, gt_instance, n_categories)
    pseg, pidx = dense_segments_from_pairs(pred_category, pred_instance, n_categories)
    conf = confusion_matrix_torch(gidx, pidx, int(gseg.numel()), int(pseg.numel()))
    # Host copies of a few kB: the confusion matrix and the segment lists.
    conf_np = conf.cpu().numpy()
    gcat, ginst = decode_keys(gseg.cpu().numpy())
    pcat, _ = decode_keys(pseg.cpu().numpy())
    iscrowd = np.zeros(gcat.shape[0], dtype=bool)
    if crowd_instance is not None:
        iscrowd = is_thing[gcat] & (ginst == crowd_instance)
    gt = ImageSegments(gcat, iscrowd)
    pred = ImageSegments(pcat, np.zeros(pcat.shape[0], dtype=bool))
    return conf_np, gt, pred, gidx, pidx
