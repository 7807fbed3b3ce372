"""SAM2's loss terms on hand-made tensors with known values."""

from __future__ import annotations

import math

import pytest
import torch

from training.batch import ClipOutputs, FrameOutputs
from training.losses import (
    LossWeights,
    SAM2VideoLoss,
    dice_loss,
    iou_prediction_loss,
    mask_iou,
    object_score_loss,
    sigmoid_focal_loss,
)

LN2 = math.log(2.0)
BIG = 50.0  # a logit whose sigmoid is 1 to float precision


def _mask(values):
    """[1, 1, H, W] float from a nested list."""
    return torch.tensor(values, dtype=torch.float32)[None, None]


def test_focal_loss_known_values():
    logits = torch.zeros(1, 1, 2, 2)
    targets = _mask([[1, 1], [0, 0]])
    # p = 0.5 everywhere: ce = ln 2, (1 - p_t)^2 = 1/4; alpha 0.25 on positives, 0.75 on negatives
    expected = (2 * 0.25 * 0.25 * LN2 + 2 * 0.75 * 0.25 * LN2) / 4
    assert sigmoid_focal_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    # without alpha: mean of ce * 1/4
    assert sigmoid_focal_loss(logits, targets, alpha=-1).item() == pytest.approx(0.25 * LN2, rel=1e-6)
    # gamma 0, no alpha: plain BCE
    logits = torch.full((1, 1, 1, 1), 2.0)
    assert sigmoid_focal_loss(logits, _mask([[1]]), alpha=-1, gamma=0).item() == pytest.approx(
        math.log1p(math.exp(-2.0)), rel=1e-6
    )
    # confident and right: ~0
    assert sigmoid_focal_loss(_mask([[BIG, -BIG]]), _mask([[1, 0]])).item() < 1e-12


def test_dice_loss_known_values():
    targets = _mask([[1, 1], [0, 0]])
    # p = 0.5: intersection 1, |P| = 2, |G| = 2 -> 1 - (2 + 1) / (4 + 1)
    assert dice_loss(torch.zeros(1, 1, 2, 2), targets).item() == pytest.approx(0.4, rel=1e-6)
    perfect = (targets * 2 - 1) * BIG
    assert dice_loss(perfect, targets).item() == pytest.approx(0.0, abs=1e-6)
    # all wrong: intersection 0, |P| = 2, |G| = 2 -> 1 - 1/5
    assert dice_loss(-perfect, targets).item() == pytest.approx(0.8, rel=1e-6)


def test_iou_prediction_loss_known_values():
    targets = _mask([[1, 1, 0]])
    logits = _mask([[1.0, -1.0, 1.0]])  # prediction {0, 2}, truth {0, 1}: IoU 1/3
    assert mask_iou(logits, targets).item() == pytest.approx(1 / 3)
    loss = iou_prediction_loss(logits, targets, torch.tensor([[0.5]]))
    assert loss.item() == pytest.approx(1 / 6, rel=1e-6)
    # both empty: union 0 counts as IoU 0 (as in SAM2)
    assert mask_iou(-torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 0.0


def test_object_score_loss_known_values():
    present = torch.tensor([[1.0], [0.0]])
    assert object_score_loss(torch.zeros(2, 1), present).tolist() == pytest.approx([LN2, LN2])
    loss = object_score_loss(torch.tensor([[2.0], [2.0]]), present)
    assert loss.tolist() == pytest.approx([math.log1p(math.exp(-2)), 2 + math.log1p(math.exp(-2))], rel=1e-6)


def _clip(steps_per_frame):
    frames = []
    for steps in steps_per_frame:
        f = FrameOutputs()
        for multimasks, ious, scores in steps:
            f.add_step(multimasks, ious, scores)
        frames.append(f)
    return ClipOutputs(frames=frames, prompt_kind="mask", cond_frames=[0])


def test_best_of_multimask_and_all_iou_supervised():
    target = _mask([[1, 1], [0, 0]])
    good = (target * 2 - 1) * BIG
    candidates = torch.cat([torch.zeros_like(good), good, -good], dim=1)  # [1, 3, 2, 2]
    ious = torch.tensor([[0.0, 1.0, 1.0]])
    loss_fn = SAM2VideoLoss()
    out = loss_fn.step_losses(candidates, target, ious, torch.tensor([[BIG]]), num_objects=1)
    assert out["loss_mask"].item() < 1e-12 and out["loss_dice"].item() == pytest.approx(0.0, abs=1e-6)
    # actual IoUs: candidate 0 (logit 0 -> empty prediction) 0, candidate 1: 1, candidate 2: 0
    assert out["loss_iou"].item() == pytest.approx((0 + 0 + 1) / 3, rel=1e-6)
    only_best = SAM2VideoLoss(supervise_all_iou=False).step_losses(candidates, target, ious, torch.tensor([[BIG]]), 1)
    assert only_best["loss_iou"].item() == pytest.approx(0.0, abs=1e-6)


def test_no_mask_loss_where_the_object_is_absent():
    target = torch.zeros(1, 1, 2, 2)
    wild = torch.randn(1, 3, 2, 2) * 10
    out = SAM2VideoLoss().step_losses(wild, target, torch.rand(1, 3), torch.zeros(1, 1), num_objects=1)
    assert out["loss_mask"].item() == 0 and out["loss_dice"].item() == 0 and out["loss_iou"].item() == 0
    assert out["loss_class"].item() == pytest.approx(LN2)


def test_clip_loss_sums_steps_and_frames_and_weights_terms():
    target = _mask([[1, 1], [0, 0]])
    zeros = torch.zeros(1, 1, 2, 2)
    step = (zeros, torch.tensor([[0.5]]), torch.zeros(1, 1))
    outputs = _clip([[step], [step, step]])  # 3 steps in all
    masks = torch.cat([target, target])[:, 0][:, None]  # [T=2, N=1, 2, 2]
    losses = SAM2VideoLoss(LossWeights(mask=20, dice=1, iou=1, cls=1))(outputs, masks)
    focal = (2 * 0.25 * 0.25 * LN2 + 2 * 0.75 * 0.25 * LN2) / 4
    expected = {"loss_mask": 3 * focal, "loss_dice": 3 * 0.4, "loss_iou": 3 * 0.5, "loss_class": 3 * LN2}
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-6), key
    total = 20 * expected["loss_mask"] + expected["loss_dice"] + expected["loss_iou"] + expected["loss_class"]
    assert losses["loss_total"].item() == pytest.approx(total, rel=1e-6)
    # normalised by the number of objects (e.g. the DDP-averaged count)
    halved = SAM2VideoLoss()(outputs, masks, num_objects=2)
    assert halved["loss_total"].item() == pytest.approx(total / 2, rel=1e-6)


def test_loss_gradients_flow_to_logits_ious_and_scores():
    target = _mask([[1, 0], [0, 0]])
    logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
    ious = torch.full((1, 3), 0.5, requires_grad=True)
    scores = torch.zeros(1, 1, requires_grad=True)
    SAM2VideoLoss()(_clip([[(logits, ious, scores)]]), target[:, 0][:, None])["loss_total"].backward()
    assert logits.grad.abs().sum() > 0 and ious.grad.abs().sum() > 0 and scores.grad.abs().sum() > 0
    assert torch.isfinite(logits.grad).all()
