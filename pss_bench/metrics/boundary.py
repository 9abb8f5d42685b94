"""Segment boundaries of a whole label map at once: what Boundary PQ compares.

Boundary IoU (Cheng et al., CVPR 2021; ``boundary-iou-api``'s
``mask_to_boundary``) takes a segment's boundary to be the segment minus its
erosion by a ``(2d + 1) x (2d + 1)`` square, everything outside the image
counting as background, with ``d = max(1, int(round(ratio * sqrt(H**2 + W**2))))``
(Python's round: half to even, so a 75x100 image gives ``d = 2``).

The reference erodes each segment's binary mask in turn (an OpenCV call per
segment). Here one pass serves every segment: a pixel is interior to its
segment exactly when the square window around it lies inside the image and
holds one label only, which is separable: the window's rows are uniform
(a sliding count of horizontal label changes) and so is its centre column
(a sliding count of vertical changes). Each count is a difference of running
sums, so the cost is a handful of passes over the map whatever ``d`` is.

Pure functions of arrays; no files, no printing.
"""

from __future__ import annotations

import math

import numpy as np

#: boundary-iou-api's default ``dilation_ratio``.
DEFAULT_DILATION_RATIO = 0.02


def dilation_pixels(height: int, width: int, ratio: float = DEFAULT_DILATION_RATIO) -> int:
    """``d = max(1, int(round(ratio * sqrt(H**2 + W**2))))``, boundary-iou-api's rule.

    ``round`` is Python's (half to even): 75x100 has a diagonal of 125 and
    ``0.02 * 125 == 2.5`` rounds to 2.
    """
    if not ratio > 0 or not math.isfinite(ratio):
        raise ValueError(f"dilation ratio must be a positive number, found {ratio}")
    d = int(round(ratio * math.sqrt(height ** 2 + width ** 2)))
    return max(1, d)


def _window_clear(cum: np.ndarray, span: int) -> np.ndarray:
    """Whether ``cum[i + span] - cum[i] == 0`` along axis 0 (modular sums are exact: counts < 256 or int32)."""
    return cum[span:] == cum[: cum.shape[0] - span]


def interior_mask(labels: np.ndarray, d: int) -> np.ndarray:
    """Pixels whose ``(2d + 1)``-square window lies in the image and holds their label only.

    Args:
        labels: ``(H, W)`` integer label map (any labelling: ids or dense indices).
        d: the erosion radius, ``>= 1``.

    Returns:
        ``(H, W)`` bool. A segment's boundary is its pixels outside this mask;
        a segment narrower than ``2d + 1`` in either direction has no interior.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), found shape {labels.shape}")
    if d < 1:
        raise ValueError(f"erosion radius must be >= 1, found {d}")
    h, w = labels.shape
    k = 2 * d + 1
    out = np.zeros((h, w), dtype=bool)
    if h < k or w < k:
        return out
    # Window counts never exceed k: below 256, uint8 running sums that wrap
    # still give exact zero tests on their differences, at a quarter of the memory traffic.
    acc = np.uint8 if k < 256 else np.int32
    # Rows: horizontal changes between columns x-d .. x+d, for centres d .. w-1-d.
    cum = np.zeros((w, h), dtype=acc)
    np.cumsum((labels[:, 1:] != labels[:, :-1]).T, axis=0, dtype=acc, out=cum[1:])
    row_ok = _window_clear(cum, 2 * d).T  # (h, w - 2d)
    del cum
    core = labels[:, d: w - d]
    # Columns: every row of the window uniform, and no vertical change in the centre column.
    bad_rows = np.zeros((h + 1, w - 2 * d), dtype=acc)
    np.cumsum(~row_ok, axis=0, dtype=acc, out=bad_rows[1:])
    ok = _window_clear(bad_rows, k)  # (h - 2d, w - 2d)
    del bad_rows
    vcum = np.zeros((h, w - 2 * d), dtype=acc)
    np.cumsum(core[1:] != core[:-1], axis=0, dtype=acc, out=vcum[1:])
    ok &= _window_clear(vcum, 2 * d)
    out[d: h - d, d: w - d] = ok
    return out


def boundary_labels(labels: np.ndarray, d: int, interior_value: int) -> np.ndarray:
    """A label map whose segments are reduced to their boundaries.

    boundary-iou-api builds the same map for Boundary PQ: each segment's
    interior pixels take one shared value (its ``BOUNDARY_ID``), its boundary
    pixels keep the segment's label, VOID (0) stays 0.

    Args:
        labels: ``(H, W)`` integer map, 0 = VOID.
        d: the erosion radius (:func:`dilation_pixels`).
        interior_value: the value of interior pixels (e.g. ``N + 1`` for
            dense indices ``0 .. N``); must fit ``labels``' dtype.

    Returns:
        ``(H, W)`` array of ``labels``' dtype.
    """
    labels = np.asarray(labels)
    if not np.can_cast(np.min_scalar_type(interior_value), labels.dtype):
        labels = labels.astype(np.int64)
    inside = interior_mask(labels, d)
    inside &= labels != 0
    out = labels.copy()
    out[inside] = interior_value
    return out
