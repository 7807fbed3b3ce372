"""SAM2's training losses: focal + dice on the best multimask, IoU-prediction L1, object BCE.

For every frame and every prompting step of a clip (see :class:`training.batch.FrameOutputs`):

* ``loss_mask``: sigmoid focal loss (alpha 0.25, gamma 2), mean over pixels;
* ``loss_dice``: 1 - (2|P∩G| + 1) / (|P| + |G| + 1) on sigmoid probabilities;
* ``loss_iou``: L1 between the predicted IoU and the IoU of the binarised mask
  (all M outputs supervised, SAM2's ``supervise_all_iou``);
* ``loss_class``: BCE of the object-score logit against "the object is present".

With several (M=3) candidate masks, the mask and dice losses count only the candidate with
the lowest ``20 * focal + dice``. Mask, dice and IoU losses are zero on frames where the
object is absent. Every term is divided by the number of objects (averaged over DDP ranks)
and summed over objects, steps and frames; the total is the weighted sum
(default weights 20, 1, 1, 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn.functional as F

from training.batch import ClipOutputs

LOSS_KEYS = ("loss_mask", "loss_dice", "loss_iou", "loss_class")
TOTAL_KEY = "loss_total"


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-mask focal loss, mean over pixels.

    Args:
        logits, targets: ``[N, M, H, W]`` (targets in {0, 1}).
        alpha: weight of positives (negatives get ``1 - alpha``); < 0 disables it.
    Returns:
        ``[N, M]``.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.flatten(2).mean(dim=-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-mask soft dice loss. ``[N, M, H, W]`` -> ``[N, M]``."""
    prob = logits.sigmoid().flatten(2)
    targets = targets.flatten(2)
    inter = (prob * targets).sum(-1)
    return 1 - (2 * inter + smooth) / (prob.sum(-1) + targets.sum(-1) + smooth)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with ``targets > 0``, ``[N, M, H, W]`` -> ``[N, M]``.

    An empty union counts as IoU 0, as in SAM2.
    """
    pred = logits.flatten(2) > 0
    gt = targets.flatten(2) > 0
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return inter / union.clamp(min=1.0)


def iou_prediction_loss(logits: torch.Tensor, targets: torch.Tensor, pred_ious: torch.Tensor) -> torch.Tensor:
    """Per-mask L1 between predicted and actual IoU. ``[N, M]``."""
    return (pred_ious - mask_iou(logits, targets).detach()).abs()


def object_score_loss(object_score_logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Per-object BCE of the presence logit. ``[N, 1]``, ``[N, 1]`` -> ``[N]``."""
    return F.binary_cross_entropy_with_logits(object_score_logits, present, reduction="none").mean(dim=1)


@dataclass(frozen=True)
class LossWeights:
    mask: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    cls: float = 1.0


class SAM2VideoLoss(torch.nn.Module):
    """SAM2's multi-step multimask loss over a clip (see the module docstring).

    Args:
        weights: weights of focal (mask), dice, IoU and object-score terms.
        focal_alpha, focal_gamma: focal-loss parameters.
        supervise_all_iou: IoU loss on all M candidates (SAM2.1 recipe) or only the best.
    """

    def __init__(self, weights: LossWeights = LossWeights(), focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 supervise_all_iou: bool = True):
        super().__init__()
        self.weights = weights
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.supervise_all_iou = supervise_all_iou

    def step_losses(self, multimasks, targets, ious, object_score_logits, num_objects: float) -> Dict[str, torch.Tensor]:
        """Losses of one prompting step.

        Args:
            multimasks: ``[N, M, H, W]`` logits; targets: ``[N, 1, H, W]`` in {0, 1};
            ious: ``[N, M]``; object_score_logits: ``[N, 1]``.
        """
        targets = targets.float()
        expanded = targets.expand_as(multimasks)
        focal = sigmoid_focal_loss(multimasks, expanded, self.focal_alpha, self.focal_gamma)
        dice = dice_loss(multimasks, expanded)
        iou = iou_prediction_loss(multimasks, expanded, ious)
        present = targets.flatten(1).amax(dim=1, keepdim=True)  # [N, 1]
        if multimasks.shape[1] > 1:
            best = torch.argmin(self.weights.mask * focal + self.weights.dice * dice, dim=1, keepdim=True)
            focal = focal.gather(1, best)
            dice = dice.gather(1, best)
            iou = iou.mean(dim=1, keepdim=True) if self.supervise_all_iou else iou.gather(1, best)
        return {
            "loss_mask": (focal * present).sum() / num_objects,
            "loss_dice": (dice * present).sum() / num_objects,
            "loss_iou": (iou * present).sum() / num_objects,
            "loss_class": object_score_loss(object_score_logits, present).sum() / num_objects,
        }

    def total(self, losses: Dict[str, torch.Tensor]) -> torch.Tensor:
        w = self.weights
        return (w.mask * losses["loss_mask"] + w.dice * losses["loss_dice"]
                + w.iou * losses["loss_iou"] + w.cls * losses["loss_class"])

    def forward(self, outputs: ClipOutputs, masks: torch.Tensor, num_objects: float | None = None) -> Dict[str, torch.Tensor]:
        """Loss of a batch of clips.

        Args:
            outputs: the model's per-frame, per-step outputs.
            masks: ``[T, N, H, W]`` ground truth.
            num_objects: the normaliser (defaults to N; pass the DDP-averaged count).
        Returns:
            ``{"loss_mask", "loss_dice", "loss_iou", "loss_class", "loss_total"}`` scalars.
        """
        if len(outputs.frames) != masks.shape[0]:
            raise ValueError(f"{len(outputs.frames)} frame outputs for {masks.shape[0]} target frames")
        num_objects = float(max(num_objects if num_objects is not None else masks.shape[1], 1))
        zero = masks.new_zeros((), dtype=torch.float32)
        sums = {k: zero for k in LOSS_KEYS}
        for frame, target in zip(outputs.frames, masks):
            target = target.unsqueeze(1)
            for multimasks, ious, scores in zip(frame.multimasks, frame.ious, frame.object_score_logits):
                for k, v in self.step_losses(multimasks, target, ious, scores, num_objects).items():
                    sums[k] = sums[k] + v
        sums[TOTAL_KEY] = self.total(sums)
        return sums
