"""Segmentation metrics: Dice, IoU (J), DAVIS boundary F, J&F and the EndoVis class IoUs.

All functions are vectorised NumPy (no per-pixel Python loops). Binary masks are any
array-like whose non-zero entries are foreground; region metrics accept stacks shaped
``[..., H, W]`` and return one value per leading index (a plain float for a single mask).

Empty-mask conventions (DAVIS 2017 evaluation, SurgSAM-2 per-frame Dice):

=====================  ======  ======  ======
case                   Dice    J       F
=====================  ======  ======  ======
both empty             1       1       1
exactly one empty      0       0       0
=====================  ======  ======  ======

F is decided on *boundary* pixels, exactly as DAVIS does: a mask that covers the whole
frame has no boundary under ``seg2bmap`` and is therefore treated like an empty one.

Class metrics take per-frame, per-class pixel counts ``[T, C]`` (see :func:`region_counts`)
and follow the ISINet evaluation protocol used by EndoVis papers; see each function.
"""

from __future__ import annotations

import math
from typing import Tuple, Union

import cv2
import numpy as np
from scipy.spatial import cKDTree

DAVIS_BOUND_TH = 0.008
"""DAVIS boundary threshold: the tolerance is ``ceil(0.008 * image diagonal)`` pixels."""

ArrayOrFloat = Union[np.ndarray, float]

# A boundary denser than 1 pixel in this many of the crop is matched by dilation, which is
# then cheaper than nearest-neighbour queries; both give identical counts.
_DENSE_BOUNDARY_RATIO = 8


def _scalar(x: np.ndarray) -> ArrayOrFloat:
    """0-d results become Python floats; arrays stay arrays."""
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


# --------------------------------------------------------------------------- region


def region_counts(pred, gt) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection, prediction area and ground-truth area over the last two axes.

    pred, gt: binary masks ``[..., H, W]`` of equal shape. Returns three int64 arrays
    shaped ``[...]``.
    """
    pred = np.asarray(pred).astype(bool, copy=False)
    gt = np.asarray(gt).astype(bool, copy=False)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    if pred.ndim < 2:
        raise ValueError(f"masks must be at least 2-D ([..., H, W]), got shape {pred.shape}")
    axes = (-2, -1)
    inter = np.count_nonzero(pred & gt, axis=axes)
    return (np.asarray(inter, np.int64), np.asarray(np.count_nonzero(pred, axis=axes), np.int64),
            np.asarray(np.count_nonzero(gt, axis=axes), np.int64))


def dice_from_counts(intersection, pred_area, gt_area) -> ArrayOrFloat:
    """Dice ``2|P∩G| / (|P| + |G|)``; 1 where both masks are empty."""
    inter = np.asarray(intersection, np.float64)
    denom = np.asarray(pred_area, np.float64) + np.asarray(gt_area, np.float64)
    return _scalar(np.where(denom > 0, 2.0 * inter / np.maximum(denom, 1.0), 1.0))


def iou_from_counts(intersection, pred_area, gt_area) -> ArrayOrFloat:
    """IoU / Jaccard ``|P∩G| / |P∪G|``; 1 where both masks are empty."""
    inter = np.asarray(intersection, np.float64)
    union = np.asarray(pred_area, np.float64) + np.asarray(gt_area, np.float64) - inter
    return _scalar(np.where(union > 0, inter / np.maximum(union, 1.0), 1.0))


def dice_score(pred, gt) -> ArrayOrFloat:
    """Dice of binary masks ``[..., H, W]``: ``2|P∩G| / (|P| + |G|)``, 1 if both are empty."""
    return dice_from_counts(*region_counts(pred, gt))


def iou_score(pred, gt) -> ArrayOrFloat:
    """IoU (DAVIS region similarity J) of binary masks ``[..., H, W]``, 1 if both are empty."""
    return iou_from_counts(*region_counts(pred, gt))


def j_and_f(j, f) -> ArrayOrFloat:
    """DAVIS J&F: the mean of region similarity J and boundary accuracy F."""
    return _scalar((np.asarray(j, np.float64) + np.asarray(f, np.float64)) / 2.0)


# ------------------------------------------------------------------------- boundary


def boundary_map(mask) -> np.ndarray:
    """DAVIS ``seg2bmap`` boundary of binary masks ``[..., H, W]`` (1-pixel wide, bool).

    A pixel is a boundary pixel when it differs from its right, lower or lower-right
    neighbour. On the last row only the right neighbour counts, on the last column only
    the lower one, and the bottom-right corner is never a boundary pixel. Boundaries
    therefore sit half a pixel towards the origin from the true contour and include
    background pixels just above / left of an object.
    """
    seg = np.asarray(mask).astype(bool, copy=False)
    b = np.zeros(seg.shape, dtype=bool)
    core = seg[..., :-1, :-1]
    b[..., :-1, :-1] = (core != seg[..., :-1, 1:]) | (core != seg[..., 1:, :-1]) | (core != seg[..., 1:, 1:])
    b[..., -1, :-1] = seg[..., -1, :-1] != seg[..., -1, 1:]
    b[..., :-1, -1] = seg[..., :-1, -1] != seg[..., 1:, -1]
    return b


def boundary_tolerance(shape, bound_th: float = DAVIS_BOUND_TH) -> int:
    """Boundary match tolerance in pixels for an image of ``shape`` ``(H, W, ...)``.

    ``ceil(bound_th * sqrt(H² + W²))`` for ``bound_th < 1`` (DAVIS: 0.008 of the diagonal,
    14 px at 1280x1024); a ``bound_th >= 1`` is taken as a pixel count, as in DAVIS.
    """
    if bound_th >= 1:
        return int(bound_th)
    h, w = int(shape[0]), int(shape[1])
    return int(math.ceil(bound_th * math.sqrt(h * h + w * w)))


def disk_kernel(radius: int) -> np.ndarray:
    """Disk structuring element ``{(dy, dx): dy² + dx² <= radius²}`` as uint8 ``[2r+1, 2r+1]``."""
    r = int(radius)
    offsets = np.arange(-r, r + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= r * r).astype(np.uint8)


def _mask_pair(pred, gt) -> Tuple[np.ndarray, np.ndarray]:
    """Two binary ``[H, W]`` masks of equal shape, as bool arrays."""
    pred = np.asarray(pred).astype(bool, copy=False)
    gt = np.asarray(gt).astype(bool, copy=False)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"expected two [H, W] masks of equal shape, got {pred.shape} and {gt.shape}")
    return pred, gt


def _union_crop(pred: np.ndarray, gt: np.ndarray):
    """Slices of the bounding box of ``pred | gt`` grown by 1 px (clipped), or None if empty.

    The 1-pixel margin makes ``boundary_map`` on the crop equal to the crop of the
    full-frame boundary map (the margin is background, and the image border rules only
    apply where the crop touches the image border).
    """
    union = pred | gt
    rows = np.flatnonzero(union.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(union.any(axis=0))
    h, w = union.shape
    return (slice(max(rows[0] - 1, 0), min(rows[-1] + 2, h)),
            slice(max(cols[0] - 1, 0), min(cols[-1] + 2, w)))


def _coordinates(mask: np.ndarray) -> np.ndarray:
    """``[N, 2]`` (row, col) of the true pixels of a 2-D mask (flatnonzero: much faster than nonzero)."""
    flat = np.flatnonzero(mask)
    return np.column_stack(np.divmod(flat, mask.shape[1]))


def _count_matched(query: np.ndarray, ref: np.ndarray, tolerance: int, method: str) -> int:
    """Number of ``query`` boundary pixels with a ``ref`` boundary pixel within ``tolerance``.

    Equivalent to ``count(query & dilate(ref, disk_kernel(tolerance)))``. ``method``:
    "dilate" does exactly that; "kdtree" finds each query pixel's nearest ref pixel and
    compares the (integer) squared distance with ``tolerance²``.
    """
    if method == "dilate":
        dilated = cv2.dilate(ref.astype(np.uint8), disk_kernel(tolerance))
        return int(np.count_nonzero(query & (dilated > 0)))
    if method != "kdtree":
        raise ValueError(f"unknown boundary matching method {method!r}")
    q, r = _coordinates(query), _coordinates(ref)
    dist, _ = cKDTree(r).query(q, k=1, distance_upper_bound=tolerance + 0.5)
    finite = np.isfinite(dist)
    sq = np.rint(dist[finite] ** 2)
    return int(np.count_nonzero(sq <= tolerance * tolerance))


def f_from_boundaries(pred_boundary, gt_boundary, tolerance: int, method: str = "auto") -> float:
    """Boundary F-measure of two boundary maps ``[H, W]`` with a pixel ``tolerance``.

    precision = matched prediction boundary pixels / prediction boundary pixels,
    recall = matched ground-truth boundary pixels / ground-truth boundary pixels,
    F = 2PR / (P + R) (0 when P + R = 0). No boundary on either side gives 1; on exactly
    one side gives 0 (DAVIS sets P=1, R=0 or P=0, R=1 there).
    """
    pb = np.asarray(pred_boundary).astype(bool, copy=False)
    gb = np.asarray(gt_boundary).astype(bool, copy=False)
    n_pred, n_gt = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    if method == "auto":
        dense = (n_pred + n_gt) * _DENSE_BOUNDARY_RATIO > pb.size
        method = "dilate" if dense else "kdtree"
    precision = _count_matched(pb, gb, tolerance, method) / float(n_pred)
    recall = _count_matched(gb, pb, tolerance, method) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def boundary_f_score(pred, gt, bound_th: float = DAVIS_BOUND_TH, method: str = "auto") -> float:
    """DAVIS boundary accuracy F of two binary masks ``[H, W]``.

    Boundaries come from :func:`boundary_map`; the tolerance is
    :func:`boundary_tolerance` of the full image (``ceil(0.008 * diagonal)``); a boundary
    pixel is matched when the other boundary dilated by a disk of that radius covers it.
    F=1 when both masks are empty, 0 when exactly one is. Work is confined to the
    bounding box of the two masks, so cost scales with object size, not frame size.
    """
    pred, gt = _mask_pair(pred, gt)
    crop = _union_crop(pred, gt)
    if crop is None:
        return 1.0
    tolerance = boundary_tolerance(gt.shape, bound_th)
    return f_from_boundaries(boundary_map(pred[crop]), boundary_map(gt[crop]), tolerance, method)


def binary_mask_scores(pred, gt, bound_th: float = DAVIS_BOUND_TH) -> Tuple[float, float, float]:
    """``(dice, iou, f)`` of two binary masks ``[H, W]``, computed on their union's bounding box."""
    pred, gt = _mask_pair(pred, gt)
    crop = _union_crop(pred, gt)
    if crop is None:
        return 1.0, 1.0, 1.0
    p, g = pred[crop], gt[crop]
    counts = region_counts(p, g)
    f = f_from_boundaries(boundary_map(p), boundary_map(g), boundary_tolerance(gt.shape, bound_th))
    return dice_from_counts(*counts), iou_from_counts(*counts), f


# ---------------------------------------------------------------------------- class


def _nanmean(x: np.ndarray, axis=None) -> ArrayOrFloat:
    """Mean ignoring NaN; NaN (without a warning) where nothing is left."""
    x = np.asarray(x, np.float64)
    valid = ~np.isnan(x)
    n = valid.sum(axis=axis)
    total = np.where(valid, x, 0.0).sum(axis=axis)
    return _scalar(np.where(n > 0, total / np.maximum(n, 1), np.nan))


def class_iou_table(intersection, pred_area, gt_area) -> np.ndarray:
    """Per-frame, per-class IoU ``[T, C]``; NaN where the class is in neither mask."""
    inter = np.asarray(intersection, np.float64)
    union = np.asarray(pred_area, np.float64) + np.asarray(gt_area, np.float64) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def challenge_iou_per_frame(intersection, pred_area, gt_area) -> np.ndarray:
    """EndoVis Challenge IoU per frame ``[T]``: mean IoU over the classes present in the
    ground truth; NaN (the frame is skipped) when the ground truth has no class."""
    iou = class_iou_table(intersection, pred_area, gt_area)
    in_gt = np.asarray(gt_area) > 0
    return np.asarray(_nanmean(np.where(in_gt, iou, np.nan), axis=-1), np.float64)


def isinet_iou_per_frame(intersection, pred_area, gt_area) -> np.ndarray:
    """ISINet IoU per frame ``[T]``: mean IoU over the classes present in the ground truth
    or the prediction; NaN (skipped) when both are empty."""
    return np.asarray(_nanmean(class_iou_table(intersection, pred_area, gt_area), axis=-1), np.float64)


def per_class_iou(intersection, pred_area, gt_area) -> np.ndarray:
    """IoU of each class ``[C]``: its mean over the frames where it is in the ground truth or
    the prediction; NaN for a class that never appears."""
    return np.asarray(_nanmean(class_iou_table(intersection, pred_area, gt_area), axis=0), np.float64)


def challenge_iou(intersection, pred_area, gt_area) -> float:
    """Challenge IoU over a set of frames: the mean of :func:`challenge_iou_per_frame`."""
    return _nanmean(challenge_iou_per_frame(intersection, pred_area, gt_area))


def isinet_iou(intersection, pred_area, gt_area) -> float:
    """ISINet IoU over a set of frames: the mean of :func:`isinet_iou_per_frame`."""
    return _nanmean(isinet_iou_per_frame(intersection, pred_area, gt_area))


def mean_class_iou(intersection, pred_area, gt_area) -> float:
    """mcIoU: the mean of :func:`per_class_iou` over the classes that appear at all."""
    return _nanmean(per_class_iou(intersection, pred_area, gt_area))
