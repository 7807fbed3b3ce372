"""Batching clips the way SAM2 trains: time-major images, every object its own batch row.

SAM2 tracks each object independently, so a batch of ``B`` clips with ``N_b`` objects each
becomes ``O = sum(N_b)`` object rows. ``obj_to_frame_idx[t, o] = (t, b)`` tells which image
(time ``t`` of clip ``b``) object row ``o`` reads its features from; this is the layout of
SAM2's ``BatchedVideoDatapoint``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import List, Optional, Sequence

import torch

from data.vos_dataset import VideoClip


@dataclass
class ClipBatch:
    """A batch of clips: the one container the data loader yields and training consumes.

    Attributes:
        images: ``[T, B, 3, H, W]`` float32, normalised.
        masks: ``[T, O, H, W]`` bool, ``O`` = total objects over the batch, clip-major order
            (all objects of clip 0, then of clip 1, ...).
        obj_batch_idx: ``[O]`` int64, clip index ``b`` of each object row.
        object_ids: ``[O]`` int64, ids in the annotation PNGs.
        frame_indices: ``[T, B]`` int64, file frame numbers.
        strides: ``[B]`` int64, temporal stride of each clip.
        video_names: ``B`` names.
    """

    images: torch.Tensor
    masks: torch.Tensor
    obj_batch_idx: torch.Tensor
    object_ids: Optional[torch.Tensor] = None
    frame_indices: Optional[torch.Tensor] = None
    strides: Optional[torch.Tensor] = None
    video_names: List[str] = field(default_factory=list)

    def __post_init__(self):
        if self.images.dim() != 5:
            raise ValueError(f"images must be [T, B, 3, H, W], got {tuple(self.images.shape)}")
        if self.masks.dim() != 4 or self.masks.shape[0] != self.images.shape[0]:
            raise ValueError(f"masks must be [T, O, H, W] with T={self.images.shape[0]}, got {tuple(self.masks.shape)}")
        if tuple(self.obj_batch_idx.shape) != (self.masks.shape[1],):
            raise ValueError(f"obj_batch_idx must be [O={self.masks.shape[1]}], got {tuple(self.obj_batch_idx.shape)}")

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_objects(self) -> int:
        return int(self.masks.shape[1])

    @property
    def obj_to_frame_idx(self) -> torch.Tensor:
        """``[T, O, 2]`` int32, ``(t, b)`` per object row and time (SAM2's
        ``BatchedVideoDatapoint`` layout)."""
        time = torch.arange(self.num_frames, dtype=torch.int32)[:, None].expand(self.num_frames, self.num_objects)
        clip = self.obj_batch_idx.to(torch.int32)[None, :].expand(self.num_frames, self.num_objects)
        return torch.stack([time, clip.cpu()], dim=-1)

    def _map(self, fn) -> "ClipBatch":
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = fn(value) if isinstance(value, torch.Tensor) else value
        return ClipBatch(**values)

    def to(self, device, non_blocking: bool = False) -> "ClipBatch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "ClipBatch":
        return self._map(torch.Tensor.pin_memory)


def collate_clips(clips: Sequence[VideoClip]) -> ClipBatch:
    """Stack :class:`VideoClip` items (same ``T`` and ``H x W``) into a :class:`ClipBatch`."""
    if not clips:
        raise ValueError("cannot collate an empty list of clips")
    shape = tuple(clips[0].frames.shape)
    for clip in clips[1:]:
        if tuple(clip.frames.shape) != shape:
            raise ValueError(
                f"clips differ in shape: {shape} ({clips[0].video_name}) vs "
                f"{tuple(clip.frames.shape)} ({clip.video_name}); use a fixed resolution and num_frames"
            )
    num_frames, _, height, width = shape
    images = torch.stack([clip.frames for clip in clips], dim=1)
    masks = torch.cat([clip.masks for clip in clips], dim=1)
    obj_batch_idx = torch.cat(
        [torch.full((clip.num_objects,), b, dtype=torch.int64) for b, clip in enumerate(clips)]
    )
    return ClipBatch(
        images=images,
        masks=masks.reshape(num_frames, int(obj_batch_idx.numel()), height, width),
        obj_batch_idx=obj_batch_idx,
        object_ids=torch.cat([clip.object_ids.to(torch.int64) for clip in clips]),
        frame_indices=torch.stack([clip.frame_indices for clip in clips], dim=1),
        strides=torch.tensor([clip.stride for clip in clips], dtype=torch.int64),
        video_names=[clip.video_name for clip in clips],
    )
