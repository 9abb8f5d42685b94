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
(no horizontal label change) and so is its centre column (no vertical
change). Each is a 1-D sliding AND, done by doubling in ``log2(2d) + 1``
vectorised passes over bit-packed rows or columns.

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


def sliding_all(a: np.ndarray, length: int, axis: int) -> np.ndarray:
    """``out[i] = a[i] & a[i + 1] & ... & a[i + length - 1]`` along ``axis`` of a 2-D bool array.

    Doubling: windows of 1, 2, 4, ... elements are the AND of two shifted
    windows of half the size, and a window of any length the AND of two
    overlapping power-of-two windows: ``log2(length) + 1`` vectorised ANDs.
    Along axis 0 the rows are first packed 8 pixels a byte (an AND of bytes
    is 8 ANDs of pixels; packing along the rows is cheap, across them is not).

    Args:
        a: ``(H, W)`` bool array.
        length: window length, ``1 <= length <= a.shape[axis]``.
        axis: 0 or 1.

    Returns:
        bool array, ``a.shape[axis] - length + 1`` long along ``axis``.
    """
    if a.ndim != 2 or axis not in (0, 1):
        raise ValueError(f"sliding_all takes a 2-D array and axis 0 or 1, found shape {a.shape}, axis {axis}")
    x = np.packbits(a, axis=1) if axis == 0 else a.T
    n = x.shape[0]
    out = x
    span = 1
    while span * 2 <= length:
        out = out[:-span] & out[span:]
        span *= 2
    if span < length:
        m = n - length + 1
        out = out[:m] & out[length - span: length - span + m]
    if axis == 0:
        return np.unpackbits(out, axis=1, count=a.shape[1]).view(bool)
    return out.T


def interior_mask(labels: np.ndarray, d: int) -> np.ndarray:
    """Pixels whose ``(2d + 1)``-square window lies in the image and holds their label only.

    The window is uniform when each of its rows is (no horizontal label change
    between columns ``x - d .. x + d``) and its centre column is (no vertical
    change between rows ``r - d .. r + d``): two 1-D sliding ANDs
    (:func:`sliding_all`) over the neighbour-equality maps.

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
    out = np.zeros((h, w), dtype=bool)
    if h < 2 * d + 1 or w < 2 * d + 1:
        return out
    # Rows: for centres x = d .. w-1-d, the 2d neighbour pairs x-d .. x+d-1 are all equal.
    row_ok = sliding_all(labels[:, 1:] == labels[:, :-1], 2 * d, 1)  # (h, w - 2d)
    core = labels[:, d: w - d]
    # Columns: rows r-d .. r+d all uniform and the centre column without vertical change.
    pair_ok = row_ok[:-1] & (core[1:] == core[:-1])  # (h - 1, w - 2d)
    out[d: h - d, d: w - d] = sliding_all(pair_ok, 2 * d, 0) & row_ok[2 * d:]
    return out


def boundary_labels(labels: np.ndarray, d: int, interior_value: int) -> np.ndarray:
    """A label map whose segments are reduced to their boundaries.

    boundary-iou-api builds the same map for Boundary PQ: each segment's
    interior pixels take one shared value (its ``BOUNDARY_ID``), its boundary
    pixels keep the segment's label, VOID (0) stays 0.

    Args:
        labels: ``(H, W)`` non-negative integer map, 0 = VOID.
        d: the erosion radius (:func:`dilation_pixels`).
        interior_value: the value of interior pixels, above every label
            (e.g. ``N + 1`` for dense indices ``0 .. N``).

    Returns:
        ``(H, W)`` array of ``labels``' dtype (int64 when ``interior_value``
        does not fit it).

    Raises:
        ValueError: ``interior_value`` is not above every label.
    """
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) >= interior_value:
        raise ValueError(f"interior value {interior_value} must exceed every label (found {int(labels.max())})")
    if not np.can_cast(np.min_scalar_type(interior_value), labels.dtype):
        labels = labels.astype(np.int64)
    inside = interior_mask(labels, d)
    np.logical_and(inside, labels, out=inside)  # VOID has no interior: it stays 0
    # interior_value exceeds every label: a maximum sets the interior in one vectorised pass.
    marks = inside.view(np.uint8) if labels.dtype == np.uint8 else inside.astype(labels.dtype)
    return np.maximum(labels, marks * labels.dtype.type(interior_value))
