"""The tensors one training step consumes and produces (typed containers, with shapes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch


@dataclass
class TrainBatch:
    """A batch of clips, objects flattened across clips (SAM2's layout).

    Attributes:
        images: float ``[T, V, 3, H, W]``, normalised, ``H == W == model.image_size``.
        masks: bool ``[T, N, H, W]``, ground truth of the N objects of all V clips.
        obj_to_clip: long ``[N]``, the clip (index into V) each object belongs to.
    """

    images: torch.Tensor
    masks: torch.Tensor
    obj_to_clip: torch.Tensor

    def __post_init__(self):
        if self.images.dim() != 5:
            raise ValueError(f"images must be [T, V, 3, H, W], got {tuple(self.images.shape)}")
        if self.masks.dim() != 4 or self.masks.shape[0] != self.images.shape[0]:
            raise ValueError(f"masks must be [T, N, H, W] with T={self.images.shape[0]}, got {tuple(self.masks.shape)}")
        if self.obj_to_clip.shape != (self.masks.shape[1],):
            raise ValueError(f"obj_to_clip must be [N={self.masks.shape[1]}], got {tuple(self.obj_to_clip.shape)}")

    @property
    def num_frames(self) -> int:
        return self.images.shape[0]

    @property
    def num_clips(self) -> int:
        return self.images.shape[1]

    @property
    def num_objects(self) -> int:
        return self.masks.shape[1]

    def to(self, device, non_blocking: bool = False) -> "TrainBatch":
        return TrainBatch(
            images=self.images.to(device, non_blocking=non_blocking),
            masks=self.masks.to(device, non_blocking=non_blocking),
            obj_to_clip=self.obj_to_clip.to(device, non_blocking=non_blocking),
        )


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
