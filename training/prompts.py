"""Prompt simulation for training: which frames get which prompt, and correction clicks.

SAM2 is trained interactively. For every clip we decide, with a seeded generator:

* how many initial conditioning frames there are (the first frame, plus up to
  ``max_init_cond_frames - 1`` random others);
* whether they are prompted with the ground-truth **mask**, a **box**, or one **point**;
* on which frames (1-2, the conditioning frames first) correction clicks are added. Each
  click is sampled uniformly from the current error region (a positive click in a missed
  area, a negative one in a false positive), or, with a small probability, from the
  ground truth itself.

All randomness comes from an explicit ``torch.Generator``, so a training step is a pure
function of its seed (exact resume needs that). Under DDP every rank uses the same seed and
passes :class:`ObjectRows`: per-object noise is drawn for the global batch of objects and
each rank keeps its own rows, so K ranks draw exactly the prompts one process with the
whole batch would (the plan itself is shared by the batch, as in SAM2).

Points follow SAM2's convention: ``point_coords`` ``[N, P, 2]`` float ``(x, y)`` in pixels
of the model input, ``point_labels`` ``[N, P]`` int32 (1 positive, 0 negative, 2/3 box
corners).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from utils.errors import UserError


@dataclass(frozen=True)
class PromptConfig:
    """How prompts are simulated (defaults: SAM2.1's fine-tuning recipe).

    Attributes:
        prob_point_input: probability that the conditioning frames get clicks (or a box)
            instead of the ground-truth mask.
        prob_box_input: given click input, probability of a box instead of one point
            (so P(box) = ``prob_point_input * prob_box_input``).
        prob_sample_from_gt: probability that a correction click is sampled from the
            ground-truth mask rather than from the prediction's error region.
        max_init_cond_frames: at most this many initial conditioning frames.
        rand_init_cond_frames: draw 1..max conditioning frames (else always max).
        max_frames_to_correct: correction clicks go on at most this many frames.
        rand_frames_to_correct: draw the number between #conditioning frames and max.
        num_correction_clicks: clicks added, one at a time, on each corrected frame.
        add_corrected_frames_as_cond: corrected frames become conditioning frames.
        box_noise: box corner noise as a fraction of the box size ...
        box_noise_bound: ... capped at this many pixels.
    """

    prob_point_input: float = 0.5
    prob_box_input: float = 0.5
    prob_sample_from_gt: float = 0.1
    max_init_cond_frames: int = 2
    rand_init_cond_frames: bool = True
    max_frames_to_correct: int = 2
    rand_frames_to_correct: bool = True
    num_correction_clicks: int = 7
    add_corrected_frames_as_cond: bool = True
    box_noise: float = 0.1
    box_noise_bound: float = 20.0

    def __post_init__(self):
        # UserError: these come from config overrides (model.prompts.x=...), so one line, no traceback
        for name in ("prob_point_input", "prob_box_input", "prob_sample_from_gt", "box_noise", "box_noise_bound"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value):
                raise UserError(f"model.prompts.{name} must be a number, got {value!r}")
            if name.startswith("prob_") and not 0.0 <= value <= 1.0:
                raise UserError(f"model.prompts.{name} must lie in [0, 1], got {value}")
            if value < 0:
                raise UserError(f"model.prompts.{name} must be >= 0, got {value}")
        for name in ("max_init_cond_frames", "max_frames_to_correct", "num_correction_clicks"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool)) or value < (0 if name == "num_correction_clicks" else 1):
                low = 0 if name == "num_correction_clicks" else 1
                raise UserError(f"model.prompts.{name} must be an integer >= {low}, got {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class PromptPlan:
    """The prompts of one clip (shared by all objects of the batch, as in SAM2).

    Attributes:
        kind: ``"mask"``, ``"box"`` or ``"point"``.
        init_cond_frames: initial conditioning frames, the first one first.
        frames_to_correct: frames that receive correction clicks (empty for mask input).
        mask_inputs: ``{t: bool [N, 1, H, W]}`` on conditioning frames (mask input).
        point_inputs: ``{t: {"point_coords": [N, P, 2], "point_labels": [N, P]}}``.
    """

    kind: str
    init_cond_frames: List[int]
    frames_to_correct: List[int]
    mask_inputs: Dict[int, torch.Tensor] = field(default_factory=dict)
    point_inputs: Dict[int, dict] = field(default_factory=dict)

    def processing_order(self, num_frames: int) -> List[int]:
        """Conditioning frames first, then the others in temporal order."""
        rest = [t for t in range(num_frames) if t not in self.init_cond_frames]
        return list(self.init_cond_frames) + rest


@dataclass(frozen=True)
class ObjectRows:
    """Where this process's N object rows sit in the global batch over all DDP ranks."""

    offset: int = 0
    total: int = 0


def rand_rows(shape, generator: torch.Generator, rows: Optional[ObjectRows] = None) -> torch.Tensor:
    """Uniform noise ``[N, ...]``: without ``rows`` a plain draw, with them this process's
    rows of the draw for all ``rows.total`` objects (the same stream on every rank)."""
    if rows is None:
        return torch.rand(shape, generator=generator, device=generator.device)
    full = torch.rand((rows.total, *shape[1:]), generator=generator, device=generator.device)
    return full[rows.offset : rows.offset + shape[0]]


def draw_uniform(generator: torch.Generator) -> float:
    """One uniform draw in [0, 1) from ``generator``."""
    return float(torch.rand((), generator=generator, device=generator.device).item())


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in [low, high] (both inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator, device=generator.device).item())


def _choose(candidates: List[int], k: int, generator: torch.Generator) -> List[int]:
    """k distinct elements of ``candidates`` in random order."""
    perm = torch.randperm(len(candidates), generator=generator, device=generator.device).tolist()
    return [candidates[i] for i in perm[:k]]


def sample_click(gt: torch.Tensor, pred: Optional[torch.Tensor], generator: torch.Generator,
                 rows: Optional[ObjectRows] = None):
    """One click per object, uniform over the error region of ``pred`` against ``gt``.

    Args:
        gt: bool ``[N, 1, H, W]``.
        pred: bool ``[N, 1, H, W]``, or None to sample a positive click inside ``gt``.

    A click in a missed area (false negative) is positive, one in a false positive is
    negative. Where the prediction is already perfect (or ``gt`` is empty and there is no
    prediction) the click is a negative one on the background.

    Returns:
        ``(points [N, 1, 2] float (x, y), labels [N, 1] int32)``.
    """
    if pred is None:
        pred = torch.zeros_like(gt)
    n, _, h, w = gt.shape
    false_neg = gt & ~pred
    false_pos = pred & ~gt
    perfect = ~(false_neg | false_pos).flatten(1).any(dim=1)
    negative_region = false_pos | (perfect[:, None, None, None] & ~gt)
    # Channel 0: negative candidates, channel 1: positive ones; the argmax of uniform
    # noise restricted to the candidates is a uniform draw among them.
    regions = torch.cat([negative_region, false_neg], dim=1).float()  # [N, 2, H, W]
    noise = rand_rows(regions.shape, generator, rows).to(gt.device)
    flat = (noise * regions).flatten(1)
    idx = flat.argmax(dim=1)
    labels = (idx // (h * w)).to(torch.int32)
    pix = idx % (h * w)
    points = torch.stack([pix % w, pix // w], dim=1).float()
    return points[:, None, :], labels[:, None]


def sample_box(gt: torch.Tensor, generator: torch.Generator, noise: float = 0.1, noise_bound: float = 20.0,
               rows: Optional[ObjectRows] = None):
    """A noisy bounding box per object, as two corner points (labels 2 and 3).

    Args:
        gt: bool ``[N, 1, H, W]``. An empty mask gives the degenerate box at (0, 0).

    Returns:
        ``(points [N, 2, 2] float, labels [N, 2] int32)``.
    """
    n, _, h, w = gt.shape
    in_row = gt[:, 0].any(dim=2)  # [N, H]
    in_col = gt[:, 0].any(dim=1)  # [N, W]
    ar_h = torch.arange(h, device=gt.device)
    ar_w = torch.arange(w, device=gt.device)
    present = in_row.any(dim=1)
    y0 = torch.where(in_row, ar_h, h).amin(dim=1)
    y1 = torch.where(in_row, ar_h, -1).amax(dim=1)
    x0 = torch.where(in_col, ar_w, w).amin(dim=1)
    x1 = torch.where(in_col, ar_w, -1).amax(dim=1)
    box = torch.stack([x0, y0, x1, y1], dim=1).float()
    box = torch.where(present[:, None], box, torch.zeros_like(box))
    if noise > 0:
        bw, bh = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
        max_dx = torch.clamp(bw * noise, max=noise_bound)
        max_dy = torch.clamp(bh * noise, max=noise_bound)
        jitter = rand_rows((n, 4), generator, rows).to(gt.device) * 2 - 1
        box = box + jitter * torch.stack([max_dx, max_dy, max_dx, max_dy], dim=1)
        upper = torch.tensor([w - 1, h - 1, w - 1, h - 1], device=gt.device, dtype=box.dtype)
        box = torch.minimum(torch.clamp(box, min=0), upper)
    labels = torch.tensor([2, 3], dtype=torch.int32, device=gt.device).expand(n, 2).contiguous()
    return box.view(n, 2, 2), labels


def add_click(point_inputs: Optional[dict], points: torch.Tensor, labels: torch.Tensor) -> dict:
    """Append clicks to SAM2-style point inputs (a new dict; inputs are not modified)."""
    if point_inputs is None:
        return {"point_coords": points, "point_labels": labels}
    return {
        "point_coords": torch.cat([point_inputs["point_coords"], points], dim=1),
        "point_labels": torch.cat([point_inputs["point_labels"], labels], dim=1),
    }


def plan_prompts(gt_masks: torch.Tensor, config: PromptConfig, generator: torch.Generator,
                 rows: Optional[ObjectRows] = None) -> PromptPlan:
    """Draw the prompts of one clip.

    Args:
        gt_masks: bool ``[T, N, H, W]`` ground truth of the N objects on T frames.
        rows: under DDP, where these N objects sit in the global batch (see :func:`rand_rows`).
    """
    num_frames = gt_masks.shape[0]
    use_clicks = draw_uniform(generator) < config.prob_point_input
    num_cond = config.max_init_cond_frames
    if config.rand_init_cond_frames and num_cond > 1:
        num_cond = _randint(1, num_cond, generator)
    num_cond = min(num_cond, max(1, num_frames - 1))  # keep a frame that is tracked from memory (a loss)
    init_cond = [0] + _choose(list(range(1, num_frames)), num_cond - 1, generator)

    kind = "mask"
    frames_to_correct: List[int] = []
    plan_masks, plan_points = {}, {}
    if use_clicks:
        use_box = draw_uniform(generator) < config.prob_box_input
        kind = "box" if use_box else "point"
        for t in init_cond:
            gt = gt_masks[t].unsqueeze(1)
            if use_box:
                points, labels = sample_box(gt, generator, config.box_noise, config.box_noise_bound, rows)
            else:
                points, labels = sample_click(gt, None, generator, rows)
            plan_points[t] = {"point_coords": points, "point_labels": labels}
        num_correct = max(config.max_frames_to_correct, num_cond)
        if config.rand_frames_to_correct and num_correct > num_cond:
            num_correct = _randint(num_cond, num_correct, generator)
        others = [t for t in range(num_frames) if t not in init_cond]
        frames_to_correct = init_cond + _choose(others, num_correct - num_cond, generator)
    else:
        for t in init_cond:
            plan_masks[t] = gt_masks[t].unsqueeze(1)
    return PromptPlan(kind, init_cond, frames_to_correct, plan_masks, plan_points)
