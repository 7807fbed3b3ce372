"""A training dataset over any VOS-layout tree: one sampled clip per item.

``dataset[idx]`` draws a clip with the temporal sampler, picks up to ``max_num_objects``
objects, loads frames and masks and applies clip-consistent transforms. Everything random
comes from ``numpy.random.default_rng([seed, epoch, idx])``, so an item is a pure function
of ``(seed, epoch, idx)``: resuming training needs only the epoch, the position in the index
order and the seed, whatever the number of DataLoader workers.

Object choice: objects are the non-zero ids on the clip's frames (optionally restricted to
``used_object_ids``). SAM2 prompts every object on the first clip frame, so by default only
objects visible on that frame are candidates; when the first frame shows none, the clip is
redrawn (up to ``max_retries`` times), then objects visible anywhere in the clip are used,
and as a last resort the clip has zero objects (``N = 0``). A chosen object may be absent on
later frames: its mask there is empty (it left the view or is occluded).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from data.samplers import ClipIndices, TemporalSampler
from data.transforms import ClipTransforms
from data.vos_index import VideoRecord, scan_vos_root

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


@dataclass
class VideoClip:
    """One training clip.

    Attributes:
        frames: ``[T, 3, H, W]`` float32 (normalized when the transforms normalize, else in [0, 1]).
        masks: ``[T, N, H, W]`` bool, one channel per object.
        object_ids: ``[N]`` int64, the objects' ids in the annotation PNGs.
        frame_indices: ``[T]`` int64, file frame numbers (``00042.jpg`` -> 42) in clip order.
        video_name: name of the video folder.
        stride: temporal stride of the clip (1 = consecutive annotated frames).
        reversed: whether the clip plays backwards.
    """

    frames: torch.Tensor
    masks: torch.Tensor
    object_ids: torch.Tensor
    frame_indices: torch.Tensor
    video_name: str
    stride: int
    reversed: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_objects(self) -> int:
        return int(self.masks.shape[1])


class VOSDataset(Dataset):
    """Clips from a VOS tree (``<root>/JPEGImages``, ``<root>/Annotations``).

    Args:
        root: VOS root, or its parent when ``split`` is given (``<root>/<split>``).
        sampler: a temporal sampler (``data.samplers`` / ``data.motion_sampler``).
        transforms: a :class:`ClipTransforms`; ``None`` returns frames in [0, 1] at full size.
        split: optional sub-directory of ``root``.
        video_list: names or a text file of names to keep (default: all videos).
        used_object_ids: only these ids count as objects (default: all non-zero ids).
        max_num_objects: at most this many objects per clip (random subset, sorted by id).
        multiplier: each video appears this many times per epoch.
        seed: base seed; see the module docstring.
        first_frame_objects: require chosen objects to be visible on the first clip frame.
        max_retries: clip redraws when the first frame has no object.
    """

    def __init__(
        self,
        root: PathLike,
        sampler: TemporalSampler,
        transforms: Optional[ClipTransforms] = None,
        split: Optional[str] = None,
        video_list: Union[None, PathLike, Sequence[str]] = None,
        used_object_ids: Optional[Sequence[int]] = None,
        max_num_objects: int = 3,
        multiplier: int = 1,
        seed: int = 0,
        first_frame_objects: bool = True,
        max_retries: int = 10,
    ):
        root = os.path.join(os.fspath(root), split) if split else os.fspath(root)
        if int(multiplier) < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier}")
        if int(max_num_objects) < 1:
            raise ValueError(f"max_num_objects must be >= 1, got {max_num_objects}")
        self.root = root
        self.videos: List[VideoRecord] = scan_vos_root(root, video_list=video_list)
        self.sampler = sampler
        self.transforms = transforms
        self.used_object_ids = None if used_object_ids is None else sorted(int(i) for i in used_object_ids)
        self.max_num_objects = int(max_num_objects)
        self.multiplier = int(multiplier)
        self.seed = int(seed)
        self.first_frame_objects = bool(first_frame_objects)
        self.max_retries = int(max_retries)
        self.epoch = 0
        log.info("VOS dataset %s: %d videos x %d", root, len(self.videos), self.multiplier)
        prepare = getattr(sampler, "prepare", None)
        if callable(prepare):
            prepare(self.videos)

    def __len__(self) -> int:
        return len(self.videos) * self.multiplier

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` reproduces."""
        self.epoch = int(epoch)

    def rng_for(self, index: int, epoch: Optional[int] = None) -> np.random.Generator:
        """The generator used for item ``index`` of ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else int(epoch)
        return np.random.default_rng([self.seed, epoch, int(index)])

    def __getitem__(self, index: int) -> VideoClip:
        return self.get_clip(index)

    def get_clip(self, index: int, epoch: Optional[int] = None) -> VideoClip:
        """Clip ``index`` of ``epoch``; identical on every call with the same arguments."""
        if isinstance(index, torch.Tensor):
            index = int(index.item())
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of length {len(self)}")
        rng = self.rng_for(index, epoch)
        video = self.videos[index % len(self.videos)]
        clip, labels, object_ids = self._choose_clip(video, rng)
        frames = np.stack([video.load_rgb(i) for i in clip.frame_indices])  # [T, H, W, 3]
        if frames.shape[1:3] != labels.shape[1:3]:
            raise ValueError(
                f"video {video.name}: frames are {frames.shape[1:3]} but masks are {labels.shape[1:3]}"
            )
        frames_t = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
        ids = np.asarray(object_ids, dtype=np.int64)
        masks_t = torch.from_numpy(labels[:, None, :, :] == ids[None, :, None, None])
        if self.transforms is not None:
            frames_f, masks_t = self.transforms(frames_t, masks_t, rng)
        else:
            frames_f = frames_t.float().div_(255.0)
        frame_numbers = [video.frame_ids[i] for i in clip.frame_indices]
        return VideoClip(
            frames=frames_f,
            masks=masks_t,
            object_ids=torch.from_numpy(ids),
            frame_indices=torch.tensor(frame_numbers, dtype=torch.int64),
            video_name=video.name,
            stride=int(clip.stride),
            reversed=bool(clip.reversed),
        )

    def _present_ids(self, label: np.ndarray) -> List[int]:
        ids = np.flatnonzero(np.bincount(label.reshape(-1), minlength=256))
        ids = [int(i) for i in ids if i != 0]
        if self.used_object_ids is not None:
            allowed = set(self.used_object_ids)
            ids = [i for i in ids if i in allowed]
        return ids

    def _choose_clip(self, video: VideoRecord, rng: np.random.Generator):
        """Sample a clip and its objects; returns ``(ClipIndices, labels [T,H,W], ids)``."""
        candidates: List[int] = []
        for _ in range(self.max_retries + 1 if self.first_frame_objects else 1):
            clip: ClipIndices = self.sampler.sample(video, rng)
            labels = np.stack([video.load_label(i) for i in clip.frame_indices])
            if not self.first_frame_objects:
                break
            candidates = self._present_ids(labels[0])
            if candidates:
                break
        if not candidates:
            candidates = sorted({i for label in labels for i in self._present_ids(label)})
            if self.first_frame_objects:
                log.debug("video %s: no object on a first clip frame; using %s", video.name, candidates)
        if len(candidates) > self.max_num_objects:
            chosen = rng.choice(len(candidates), size=self.max_num_objects, replace=False)
            candidates = sorted(candidates[i] for i in chosen)
        return clip, labels, candidates
