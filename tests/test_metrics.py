"""Metric definitions: hand-computed cases and cross-checks against independent code.

* J and F are compared with the ``vos-benchmark`` package (DAVIS's seg2bmap boundary and
  disk-dilation F, reimplemented there) on 50 random multi-object sequences.
* Dice is compared with MONAI's ``DiceMetric`` on every case with a non-empty ground truth.
* The EndoVis class metrics are compared with a plain-loop reference of the ISINet protocol.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from eval.metrics import (
    binary_mask_scores,
    boundary_f_score,
    boundary_map,
    boundary_tolerance,
    challenge_iou,
    challenge_iou_per_frame,
    dice_score,
    f_from_boundaries,
    iou_score,
    isinet_iou,
    isinet_iou_per_frame,
    j_and_f,
    mean_class_iou,
    per_class_iou,
)
from eval.scoring import score_label_sequence

# ----------------------------------------------------------------- hand-computed


def _square(shape, rows, cols):
    m = np.zeros(shape, bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def test_known_overlap():
    pred = _square((10, 10), (2, 6), (2, 6))  # 16 px
    gt = _square((10, 10), (2, 6), (4, 8))  # 16 px, 8 shared
    assert dice_score(pred, gt) == pytest.approx(2 * 8 / 32)
    assert iou_score(pred, gt) == pytest.approx(8 / 24)


def test_both_empty_scores_one():
    empty = np.zeros((12, 16), bool)
    assert dice_score(empty, empty) == 1.0
    assert iou_score(empty, empty) == 1.0
    assert boundary_f_score(empty, empty) == 1.0
    assert binary_mask_scores(empty, empty) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("side", ["prediction_only", "ground_truth_only"])
def test_one_side_empty_scores_zero(side):
    mask = _square((12, 16), (3, 8), (4, 10))
    empty = np.zeros_like(mask)
    pred, gt = (mask, empty) if side == "prediction_only" else (empty, mask)
    assert dice_score(pred, gt) == 0.0
    assert iou_score(pred, gt) == 0.0
    assert boundary_f_score(pred, gt) == 0.0
    assert binary_mask_scores(pred, gt) == (0.0, 0.0, 0.0)


def test_boundary_map_of_a_single_pixel():
    """seg2bmap marks pixels that differ from the right, lower or lower-right neighbour."""
    m = np.zeros((4, 4), bool)
    m[1, 1] = True
    expected = np.zeros((4, 4), bool)
    expected[[0, 0, 1, 1], [0, 1, 0, 1]] = True
    np.testing.assert_array_equal(boundary_map(m), expected)


def test_boundary_map_image_border_rules():
    full = np.ones((5, 6), bool)
    assert not boundary_map(full).any()  # a full-frame mask has no boundary (DAVIS)
    assert boundary_f_score(full, full) == 1.0
    half = _square((5, 6), (0, 5), (0, 3))
    assert boundary_f_score(full, half) == 0.0


def test_boundary_tolerance():
    assert boundary_tolerance((1024, 1280)) == 14  # ceil(0.008 * 1639.2)
    assert boundary_tolerance((480, 854)) == 8  # DAVIS 480p: ceil(7.84)
    assert boundary_tolerance((200, 300)) == 3  # ceil(2.88)
    assert boundary_tolerance((200, 300), bound_th=5) == 5  # >= 1 means pixels


# 200x300 frames: tolerance 3 px. A vertical edge at column c has boundary column c-1 (H px).
H, W, TOL, C = 200, 300, 3, 100


def _stripe(width):
    return _square((H, W), (0, H), (0, width))


@pytest.mark.parametrize("shift", [1, TOL])
def test_boundary_within_tolerance_matches_fully(shift):
    gt, pred = _stripe(C), _stripe(C + shift)
    d, j, f = binary_mask_scores(pred, gt)
    assert f == 1.0
    assert j == pytest.approx(C / (C + shift))
    assert d == pytest.approx(2 * C / (2 * C + shift))


def test_boundary_off_by_tolerance_plus_one_does_not_match():
    gt, pred = _stripe(C), _stripe(C + TOL + 1)
    d, j, f = binary_mask_scores(pred, gt)
    assert f == 0.0
    assert j == pytest.approx(C / (C + TOL + 1))


def test_boundary_partial_match_by_hand():
    """Top half of the edge off by tol+1, bottom half exact.

    GT boundary: column C-1, H px. Prediction boundary: column C+s-1 on rows 0..H/2-2,
    row H/2-1 from column C-1 to C+s-1 (the step, s+1 px), column C-1 on rows H/2..H-1:
    H+s px. Matched GT px: the bottom H/2 plus the tol+1 rows just above the step.
    Matched prediction px: the bottom H/2 plus the tol+1 step px within tol of column C-1.
    """
    s = TOL + 1
    gt = _stripe(C)
    pred = _stripe(C)
    pred[: H // 2, : C + s] = True
    recall = (H / 2 + TOL + 1) / H
    precision = (H / 2 + TOL + 1) / (H + s)
    expected = 2 * precision * recall / (precision + recall)
    assert boundary_f_score(pred, gt) == pytest.approx(expected, abs=1e-12)


def test_j_and_f_is_the_mean():
    assert j_and_f(0.8, 0.6) == pytest.approx(0.7)
    np.testing.assert_allclose(j_and_f(np.array([1.0, 0.0]), np.array([0.0, 0.0])), [0.5, 0.0])


def test_region_metrics_are_vectorised_over_frames():
    rng = np.random.default_rng(1)
    pred, gt = rng.random((2, 6, 9, 11)) < 0.3
    gt[2] = False
    pred[2] = False
    got_d, got_j = dice_score(pred, gt), iou_score(pred, gt)
    assert got_d.shape == got_j.shape == (6,)
    for t in range(6):
        assert got_d[t] == dice_score(pred[t], gt[t])
        assert got_j[t] == iou_score(pred[t], gt[t])
    assert got_d[2] == got_j[2] == 1.0


def test_kdtree_and_dilation_matching_agree():
    rng = np.random.default_rng(2)
    for _ in range(20):
        pb, gb = rng.random((2, 40, 50)) < rng.uniform(0.01, 0.4)
        tol = int(rng.integers(0, 6))
        assert f_from_boundaries(pb, gb, tol, "kdtree") == f_from_boundaries(pb, gb, tol, "dilate")


# --------------------------------------------------------------- class metrics

# Counts [T, C] for classes (A, B); expected values worked out in the comments.
INTER = np.array([[5, 0], [0, 6], [0, 0], [0, 0], [0, 0]])
PRED = np.array([[10, 4], [0, 6], [0, 0], [0, 0], [5, 0]])
GT = np.array([[5, 0], [0, 6], [0, 0], [4, 0], [0, 0]])
# frame 0: A IoU .5 (in GT), B IoU 0 (prediction only) -> challenge .5, ISINet .25
# frame 1: B IoU 1 -> 1, 1;  frame 2: nothing -> skipped by both
# frame 3: A missed -> 0, 0;  frame 4: A predicted only -> challenge skips, ISINet 0


def test_class_metrics_by_hand():
    np.testing.assert_allclose(challenge_iou_per_frame(INTER, PRED, GT), [0.5, 1.0, np.nan, 0.0, np.nan])
    np.testing.assert_allclose(isinet_iou_per_frame(INTER, PRED, GT), [0.25, 1.0, np.nan, 0.0, 0.0])
    assert challenge_iou(INTER, PRED, GT) == pytest.approx(0.5)
    assert isinet_iou(INTER, PRED, GT) == pytest.approx(1.25 / 4)
    np.testing.assert_allclose(per_class_iou(INTER, PRED, GT), [0.5 / 3, 0.5])
    assert mean_class_iou(INTER, PRED, GT) == pytest.approx((0.5 / 3 + 0.5) / 2)


def _isinet_reference(preds, gts, num_classes):
    """Plain-loop ISINet/EndoVis protocol, written from its description."""
    frame_iou, frame_challenge, class_ious = [], [], {c: [] for c in range(1, num_classes + 1)}
    for p, g in zip(preds, gts):
        ious, challenge = [], []
        for c in range(1, num_classes + 1):
            pc, gc = p == c, g == c
            union = np.logical_or(pc, gc).sum()
            if union == 0:
                continue
            iou = np.logical_and(pc, gc).sum() / union
            ious.append(iou)
            class_ious[c].append(iou)
            if gc.any():
                challenge.append(iou)
        if ious:
            frame_iou.append(np.mean(ious))
        if challenge:
            frame_challenge.append(np.mean(challenge))
    per_class = [np.mean(v) for v in class_ious.values() if v]
    return np.mean(frame_challenge), np.mean(frame_iou), np.mean(per_class)


def test_class_metrics_match_loop_reference():
    rng = np.random.default_rng(3)
    k = 4
    gts = rng.integers(0, k + 1, (30, 16, 20)) * (rng.random((30, 1, 1)) < 0.8)
    preds = np.where(rng.random(gts.shape) < 0.7, gts, rng.integers(0, k + 1, gts.shape))
    classes = np.arange(1, k + 1)
    onehot_p = preds[..., None] == classes
    onehot_g = gts[..., None] == classes
    inter = (onehot_p & onehot_g).sum(axis=(1, 2))
    pred_area, gt_area = onehot_p.sum(axis=(1, 2)), onehot_g.sum(axis=(1, 2))
    ref = _isinet_reference(preds, gts, k)
    ours = (challenge_iou(inter, pred_area, gt_area), isinet_iou(inter, pred_area, gt_area),
            mean_class_iou(inter, pred_area, gt_area))
    np.testing.assert_allclose(ours, ref, atol=1e-12)


# ------------------------------------------------- cross-checks with other code


def _random_labels(rng, t, h, w, num_objects):
    """Id maps [t, h, w]: ellipses, boxes and speckle, with objects coming and going."""
    out = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        for k in range(1, num_objects + 1):
            if rng.random() < 0.15:
                continue  # the object is absent from this frame
            kind = rng.integers(3)
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            if kind == 0:
                axes = (int(rng.integers(1, w // 2)), int(rng.integers(1, h // 2)))
                cv2.ellipse(out[i], (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, k, -1)
            elif kind == 1:
                out[i, max(cy - int(rng.integers(1, h)), 0):cy + 1, max(cx - int(rng.integers(1, w)), 0):cx + 1] = k
            else:
                out[i][rng.random((h, w)) < 0.05] = k
    return out


def _random_sequences(n=50, seed=0):
    rng = np.random.default_rng(seed)
    for s in range(n):
        t, k = int(rng.integers(2, 6)), int(rng.integers(1, 5))
        h, w = int(rng.integers(16, 160)), int(rng.integers(16, 220))  # tolerance 1..3 px
        if s % 10 == 9:
            h, w = int(rng.integers(300, 520)), int(rng.integers(400, 700))  # tolerance 4..7 px
        gt = _random_labels(rng, t, h, w, k)
        if s % 4 == 0:  # close predictions: shifted ground truth (partial boundary matches)
            pred = np.roll(gt, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(1, 2))
        else:  # unrelated predictions, with an extra object id the ground truth never has
            pred = _random_labels(rng, t, h, w, k + 1)
        if s % 7 == 0:
            pred[0] = 0  # an empty prediction frame
        yield gt, pred


def test_j_and_f_match_vos_benchmark_on_50_random_sequences():
    from vos_benchmark.evaluator import Evaluator

    max_dj = max_df = 0.0
    n_values = n_partial_f = 0
    for gt, pred in _random_sequences():
        ours = score_label_sequence(gt, pred)
        ref = Evaluator()
        for p, g in zip(pred, gt):
            ref.feed_frame(p, g)
        assert set(ours) == ref.objects_in_gt
        t = len(gt)
        for obj, scores in ours.items():
            # vos-benchmark starts an object's list at its first appearance (GT or prediction);
            # before that the object is absent from both, which scores 1 here.
            ref_j, ref_f = np.array(ref.object_iou[obj], float), np.array(ref.boundary_f[obj], float)
            start = t - len(ref_j)
            assert np.all(scores["j"][:start] == 1) and np.all(scores["f"][:start] == 1)
            max_dj = max(max_dj, float(np.abs(scores["j"][start:] - ref_j).max()))
            max_df = max(max_df, float(np.abs(scores["f"][start:] - ref_f).max()))
            n_values += len(ref_j)
            n_partial_f += int(np.count_nonzero((ref_f > 0) & (ref_f < 1)))
    assert max_dj <= 1e-6 and max_df <= 1e-6, (max_dj, max_df)
    assert n_values > 300 and n_partial_f > 100  # the comparison is not vacuous


def test_dice_matches_monai_on_non_empty_cases():
    import torch
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=True, reduction="none")
    max_diff, n_cases = 0.0, 0
    for gt, pred in _random_sequences(n=20, seed=1):
        for obj in range(1, int(max(gt.max(), pred.max())) + 1):
            g, p = gt == obj, pred == obj
            keep = g.any(axis=(1, 2))  # MONAI returns NaN for an empty ground truth
            if not keep.any():
                continue
            g, p = g[keep], p[keep]
            ref = metric(torch.from_numpy(p[:, None]).float(), torch.from_numpy(g[:, None]).float())
            ours = dice_score(p, g)
            per_frame = [binary_mask_scores(pi, gi)[0] for pi, gi in zip(p, g)]
            max_diff = max(max_diff, float(np.abs(ref.numpy()[:, 0] - ours).max()),
                           float(np.abs(np.asarray(per_frame) - ours).max()))
            n_cases += int(keep.sum())
    assert n_cases > 100
    assert max_diff <= 1e-6, max_diff
