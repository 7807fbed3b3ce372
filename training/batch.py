"""What one training forward produces (typed containers, with shapes); its input is
:class:`data.collate.ClipBatch`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch


@dataclass
class FrameOutputs:
    """What the model predicted on one frame, for every prompting step.

    A frame without correction clicks has one step; a corrected frame has
    ``1 + num_correction_clicks``. M is 3 for multimask steps and 1 otherwise.

    Attributes:
        multimasks: per step, float ``[N, M, H, W]`` mask logits at image resolution.
        ious: per step, float ``[N, M]`` predicted IoUs.
        object_score_logits: per step, float ``[N, 1]`` object-presence logits.
        final_masks: float ``[N, 1, H, W]``, the mask that went into memory (logits).
    """

    multimasks: List[torch.Tensor] = field(default_factory=list)
    ious: List[torch.Tensor] = field(default_factory=list)
    object_score_logits: List[torch.Tensor] = field(default_factory=list)
    final_masks: torch.Tensor | None = None

    def add_step(self, multimasks, ious, object_score_logits) -> None:
        self.multimasks.append(multimasks.float())
        self.ious.append(ious.float())
        self.object_score_logits.append(object_score_logits.float())


@dataclass
class ClipOutputs:
    """Outputs of one forward pass over a batch of clips.

    Attributes:
        frames: ``FrameOutputs`` in temporal order (length T).
        prompt_kind: ``"mask"``, ``"box"`` or ``"point"``.
        cond_frames: the frames that were conditioning frames.
    """

    frames: List[FrameOutputs]
    prompt_kind: str
    cond_frames: List[int]

    def final_masks(self) -> torch.Tensor:
        """float ``[T, N, H, W]`` logits of the masks that went into memory."""
        return torch.stack([f.final_masks[:, 0] for f in self.frames])
