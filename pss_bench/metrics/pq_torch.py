"""PQ statistics of torch label maps, counted on the tensors' own device.

The only work proportional to the image size, finding the segments and the
pixel histogram of (GT segment, predicted segment) pairs, runs where the
tensors live (``torch.unique`` and ``torch.bincount``). What comes back to the
host is the ``(G + 1, P + 1)`` confusion matrix and the segment keys (a few
kB), to which :func:`pss_bench.metrics.pq.match_image` applies panopticapi's
rules, so the numbers are those of ``pss-bench pq``.

Segments are given as int64 *keys*, one per pixel: ``-1`` for VOID, otherwise
``category_index << 32 | instance`` (:func:`segment_keys`). Imports torch:
nothing that ``pss-bench pq`` loads imports this module.
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
    gt_keys: torch.Tensor,
    pred_keys: torch.Tensor,
    is_thing: np.ndarray,
    *,
    crowd_instance: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PQ statistics of one image given as key maps (panopticapi's rules).

    Args:
        gt_keys: ``(N,)`` int64 GT keys, any device.
        pred_keys: ``(N,)`` int64 prediction keys, same device.
        is_thing: ``(C,)`` bool, per category index.
        crowd_instance: GT segments of thing categories with this instance id
            are crowd regions (``None``: no crowd).

    Returns:
        ``(iou, tp, fp, fn)`` numpy arrays of length ``C``, as
        :func:`~pss_bench.metrics.pq.match_image`.
    """
    n_categories = int(is_thing.shape[0])
    gseg, gidx = dense_segments(gt_keys)
    pseg, pidx = dense_segments(pred_keys)
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
    return match_image(conf_np, gt, pred, n_categories)
