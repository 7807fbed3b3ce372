"""Batching clips the way SAM2 trains: time-major images, every object its own batch row.

SAM2 tracks each object independently, so a batch of ``B`` clips with ``N_b`` objects each
becomes ``O = sum(N_b)`` object rows. ``obj_to_frame_idx[t, o] = (t, b)`` tells which image
(time ``t`` of clip ``b``) object row ``o`` reads its features from; this is the layout of
SAM2's ``BatchedVideoDatapoint``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import List, Sequence

import torch

from data.vos_dataset import VideoClip


@dataclass
class ClipBatch:
    """A batch of clips.

    Attributes:
        images: ``[T, B, 3, H, W]`` float32.
        masks: ``[T, O, H, W]`` bool, ``O`` = total objects over the batch, clip-major order
            (all objects of clip 0, then of clip 1, ...).
        obj_to_frame_idx: ``[T, O, 2]`` int32, ``(t, b)`` per object row and time.
        object_ids: ``[O]`` int64, ids in the annotation PNGs.
        obj_batch_idx: ``[O]`` int64, clip index ``b`` of each object row.
        frame_indices: ``[T, B]`` int64, file frame numbers.
        strides: ``[B]`` int64, temporal stride of each clip.
        video_names: ``B`` names.
    """

    images: torch.Tensor
    masks: torch.Tensor
    obj_to_frame_idx: torch.Tensor
    object_ids: torch.Tensor
    obj_batch_idx: torch.Tensor
    frame_indices: torch.Tensor
    strides: torch.Tensor
    video_names: List[str]

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
    def flat_images(self) -> torch.Tensor:
        """``[B*T, 3, H, W]``, clip-major (index ``b * T + t``)."""
        return self.images.transpose(0, 1).flatten(0, 1)

    @property
    def flat_obj_to_img_idx(self) -> torch.Tensor:
        """``[T, O]`` row of :attr:`flat_images` that each object reads at each time."""
        t, b = self.obj_to_frame_idx.unbind(-1)
        return b * self.num_frames + t

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
    num_objects = int(obj_batch_idx.numel())
    time = torch.arange(num_frames, dtype=torch.int32)[:, None].expand(num_frames, num_objects)
    batch = obj_batch_idx.to(torch.int32)[None, :].expand(num_frames, num_objects)
    return ClipBatch(
        images=images,
        masks=masks.reshape(num_frames, num_objects, height, width),
        obj_to_frame_idx=torch.stack([time, batch], dim=-1).contiguous(),
        object_ids=torch.cat([clip.object_ids.to(torch.int64) for clip in clips]),
        obj_batch_idx=obj_batch_idx,
        frame_indices=torch.stack([clip.frame_indices for clip in clips], dim=1),
        strides=torch.tensor([clip.stride for clip in clips], dtype=torch.int64),
        video_names=[clip.video_name for clip in clips],
    )
