"""Temporal samplers: which frames of a video form one training clip.

A sampler is stateless. ``sampler.sample(video, rng)`` takes anything with ``num_frames``
(and ``name``; the motion-adaptive sampler also needs ``load_label``) plus an explicit
``numpy.random.Generator`` and returns :class:`ClipIndices`. Given the same generator state
it returns the same clip, so training resumes exactly from ``(seed, epoch, index)``.

* :class:`UniformTemporalSampler`: SAM2's sampler, consecutive frames (stride 1) from a
  uniformly drawn start.
* :class:`MultiScaleTemporalSampler`: TSMS's TS sampler. A stride is drawn from
  ``temporal_scales`` with ``scale_probs``; when the video is too short for it, the largest
  stride that fits is used instead.
* ``MotionAdaptiveTemporalSampler`` (``data/motion_sampler.py``): strides chosen from
  ground-truth motion so that clips cover a target range of motion magnitudes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence

import numpy as np

from utils.errors import UserError

log = logging.getLogger(__name__)


class SizedVideo(Protocol):
    name: str

    @property
    def num_frames(self) -> int: ...


@dataclass(frozen=True)
class ClipIndices:
    """Frames of one sampled clip.

    Attributes:
        frame_indices: ``T`` positions into the video's annotated frames, in clip order
            (descending when ``reversed``).
        stride: the temporal stride actually used (gap between consecutive frame indices).
        reversed: whether time was reversed.
        requested_stride: the stride that was drawn before any short-video fallback.
    """

    frame_indices: List[int]
    stride: int
    reversed: bool = False
    requested_stride: Optional[int] = None


def clip_span(num_frames: int, stride: int) -> int:
    """How many video frames a clip of ``num_frames`` at ``stride`` covers."""
    return (num_frames - 1) * stride + 1


def largest_fitting_stride(video_frames: int, clip_frames: int) -> int:
    """The largest stride whose clip fits in a video of ``video_frames`` (0 when none fits)."""
    if video_frames < clip_frames:
        return 0
    if clip_frames <= 1:
        return max(video_frames, 1)
    return (video_frames - 1) // (clip_frames - 1)


def _check_probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


class TemporalSampler:
    """Base class: ``num_frames`` per clip and an optional probability of reversing time."""

    def __init__(self, num_frames: int, reverse_time_prob: float = 0.0):
        if int(num_frames) < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = int(num_frames)
        self.reverse_time_prob = _check_probability("reverse_time_prob", reverse_time_prob)

    def sample(self, video: SizedVideo, rng: np.random.Generator) -> ClipIndices:
        raise NotImplementedError

    def _too_short(self, video: SizedVideo) -> UserError:
        return UserError(
            f"video {getattr(video, 'name', '?')} has {video.num_frames} annotated frames; "
            f"a clip of {self.num_frames} frames does not fit even at stride 1"
        )

    def _make_clip(
        self, start: int, stride: int, rng: np.random.Generator, requested: Optional[int] = None
    ) -> ClipIndices:
        indices = [start + i * stride for i in range(self.num_frames)]
        # Always draw, so that the random stream does not depend on reverse_time_prob == 0.
        reverse = bool(rng.random() < self.reverse_time_prob)
        if reverse:
            indices = indices[::-1]
        return ClipIndices(
            frame_indices=indices,
            stride=stride,
            reversed=reverse,
            requested_stride=stride if requested is None else requested,
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class UniformTemporalSampler(TemporalSampler):
    """SAM2's sampler: ``num_frames`` consecutive frames (stride 1) from a uniform start."""

    def sample(self, video: SizedVideo, rng: np.random.Generator) -> ClipIndices:
        if video.num_frames < self.num_frames:
            raise self._too_short(video)
        start = int(rng.integers(0, video.num_frames - self.num_frames + 1))
        return self._make_clip(start, 1, rng)


class MultiScaleTemporalSampler(TemporalSampler):
    """TS sampler of TSMS-SAM2: a clip at a stride drawn from ``temporal_scales``.

    Args:
        num_frames: frames per clip (8 in the paper).
        temporal_scales: candidate strides (paper: ``[1, 2]``).
        scale_probs: their probabilities (paper: ``[0.9, 0.1]``); normalised if they do not
            sum to exactly 1.
        reverse_time_prob: probability of playing the clip backwards.

    When the drawn stride ``s`` needs more frames than the video has, the clip falls back to
    the largest stride that fits, ``(num_video_frames - 1) // (num_frames - 1)`` (< ``s``).
    Only a video shorter than ``num_frames`` raises :class:`UserError`.
    """

    def __init__(
        self,
        num_frames: int,
        temporal_scales: Sequence[int] = (1, 2),
        scale_probs: Optional[Sequence[float]] = (0.9, 0.1),
        reverse_time_prob: float = 0.0,
    ):
        super().__init__(num_frames, reverse_time_prob)
        scales = [int(s) for s in temporal_scales]
        if not scales or min(scales) < 1:
            raise ValueError(f"temporal_scales must be positive integers, got {scales}")
        if scale_probs is None:
            probs = np.full(len(scales), 1.0 / len(scales))
        else:
            probs = np.asarray([float(p) for p in scale_probs], dtype=np.float64)
        if probs.shape != (len(scales),):
            raise ValueError(
                f"scale_probs has {probs.size} entries but temporal_scales has {len(scales)}"
            )
        if (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"scale_probs must be non-negative with a positive sum, got {probs}")
        self.temporal_scales = scales
        self.scale_probs = (probs / probs.sum()).tolist()

    def sample(self, video: SizedVideo, rng: np.random.Generator) -> ClipIndices:
        requested = self.temporal_scales[int(rng.choice(len(self.temporal_scales), p=self.scale_probs))]
        fit = largest_fitting_stride(video.num_frames, self.num_frames)
        if fit < 1:
            raise self._too_short(video)
        stride = min(requested, fit)
        if stride != requested:
            log.debug(
                "video %s (%d frames) too short for stride %d; using stride %d",
                getattr(video, "name", "?"), video.num_frames, requested, stride,
            )
        span = clip_span(self.num_frames, stride)
        start = int(rng.integers(0, video.num_frames - span + 1))
        return self._make_clip(start, stride, rng, requested=requested)
