"""Motion-adaptive temporal sampling (beyond the paper; its stated future work).

Motion estimate (per video, from ground-truth masks, cached):
    For every object present in two consecutive annotated frames ``t`` and ``t+1``, its
    *normalised shift* is the distance its centroid moved divided by its size,
    ``sqrt(mean(area_t, area_t+1))``. The step motion ``d[t]`` is the mean over those
    objects. Steps with no object present on both frames (entries, exits, empty frames) get
    the video's mean step motion. ``C[t] = d[0] + ... + d[t-1]`` (``C[0] = 0``).

Clip motion:
    A clip with first/last frame ``a < b`` has ``M = (C[b] - C[a]) / (T - 1)``: the path
    length an object travels per sampled step, in object sizes. A larger stride gives a
    larger ``M`` on the same video.

Sampling rule:
    1. Draw a target ``m*`` from the target distribution over ``motion_range = [lo, hi]``
       (``log_uniform`` by default: motion magnitudes span orders of magnitude).
    2. Score every candidate clip (stride ``s`` in ``temporal_scales`` that fits, every
       start) with ``k = exp(-(log M - log m*)^2 / (2 * bandwidth^2))``.
    3. Pick a stride with probability proportional to the *mean* score of its starts (each
       stride gets the same prior, however many starts it has), then a start with probability
       proportional to its score.
    Slow videos are thus pushed to long strides and fast ones to stride 1, and the sampled
    clip motions follow the target distribution as far as the video's strides allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from data.samplers import ClipIndices, TemporalSampler, clip_span


_EPS = 1e-4


@dataclass(frozen=True)
class VideoMotion:
    """Ground-truth motion of one video.

    Attributes:
        step_motion: ``[num_frames - 1]`` normalised object shift between frames t and t+1.
        cumulative: ``[num_frames]`` running sum of ``step_motion`` starting at 0.
    """

    step_motion: np.ndarray
    cumulative: np.ndarray

    def clip_motion(self, frame_indices: Sequence[int]) -> float:
        """Motion per sampled step (object sizes) of a clip given by its frame indices."""
        first, last = min(frame_indices), max(frame_indices)
        steps = max(len(frame_indices) - 1, 1)
        return float(self.cumulative[last] - self.cumulative[first]) / steps


def object_centroids(label: np.ndarray) -> Dict[int, Tuple[float, float, float]]:
    """``{object id: (centroid y, centroid x, area)}`` for every non-zero id of a label map."""
    flat = label.reshape(-1).astype(np.int64)
    height, width = label.shape
    area = np.bincount(flat, minlength=1)
    ys = np.repeat(np.arange(height, dtype=np.float64), width)
    xs = np.tile(np.arange(width, dtype=np.float64), height)
    sum_y = np.bincount(flat, weights=ys, minlength=area.size)
    sum_x = np.bincount(flat, weights=xs, minlength=area.size)
    return {
        int(i): (sum_y[i] / area[i], sum_x[i] / area[i], float(area[i]))
        for i in np.nonzero(area)[0]
        if i != 0
    }


def estimate_motion(labels: Iterable[np.ndarray], downsample: int = 4, min_area: float = 4.0) -> VideoMotion:
    """Per-step normalised centroid motion from a sequence of ``[H, W]`` object-id maps.

    ``downsample`` subsamples pixels (shift / size is scale invariant); objects smaller than
    ``min_area`` subsampled pixels are ignored as noise.
    """
    previous: Optional[Dict[int, Tuple[float, float, float]]] = None
    steps = []
    for label in labels:
        stats = object_centroids(np.asarray(label)[::downsample, ::downsample])
        stats = {k: v for k, v in stats.items() if v[2] >= min_area}
        if previous is not None:
            shifts = []
            for obj, (cy, cx, area) in stats.items():
                if obj in previous:
                    py, px, parea = previous[obj]
                    size = np.sqrt(0.5 * (area + parea))
                    shifts.append(np.hypot(cy - py, cx - px) / size)
            steps.append(float(np.mean(shifts)) if shifts else np.nan)
        previous = stats
    step_motion = np.asarray(steps, dtype=np.float64)
    if step_motion.size:
        defined = ~np.isnan(step_motion)
        fill = float(step_motion[defined].mean()) if defined.any() else 0.0
        step_motion[~defined] = fill
    cumulative = np.concatenate([[0.0], np.cumsum(step_motion)])
    return VideoMotion(step_motion=step_motion, cumulative=cumulative)


class MotionAdaptiveTemporalSampler(TemporalSampler):
    """Choose strides so that clip motion covers ``motion_range`` (rule in the module doc).

    Args:
        num_frames: frames per clip.
        temporal_scales: candidate strides.
        motion_range: ``[lo, hi]`` target clip motion, object sizes per sampled step.
        target_distribution: ``"log_uniform"`` or ``"uniform"`` over ``motion_range``.
        bandwidth: width of the matching kernel, in natural-log units.
        reverse_time_prob: probability of playing the clip backwards.
        downsample: pixel subsampling when estimating motion from masks.

    Videos need ``name``, ``num_frames`` and ``load_label(i) -> [H, W]`` object ids (as
    :class:`data.vos_index.VideoRecord`). Motion is computed once per video and cached on
    the sampler; :meth:`prepare` fills the cache up front (the dataset calls it, so that
    DataLoader workers inherit it).
    """

    def __init__(
        self,
        num_frames: int,
        temporal_scales: Sequence[int] = (1, 2, 3, 4),
        motion_range: Sequence[float] = (0.05, 0.5),
        target_distribution: str = "log_uniform",
        bandwidth: float = 0.25,
        reverse_time_prob: float = 0.0,
        downsample: int = 4,
    ):
        super().__init__(num_frames, reverse_time_prob)
        scales = sorted({int(s) for s in temporal_scales})
        if not scales or scales[0] < 1:
            raise ValueError(f"temporal_scales must be positive integers, got {scales}")
        low, high = (float(v) for v in motion_range)
        if not 0 < low <= high:
            raise ValueError(f"motion_range must satisfy 0 < lo <= hi, got {[low, high]}")
        if target_distribution not in ("log_uniform", "uniform"):
            raise ValueError(f"target_distribution must be log_uniform or uniform, got {target_distribution!r}")
        if float(bandwidth) <= 0:
            raise ValueError("bandwidth must be positive")
        self.temporal_scales = scales
        self.motion_range = [low, high]
        self.target_distribution = target_distribution
        self.bandwidth = float(bandwidth)
        self.downsample = int(downsample)
        self._motion: Dict[str, VideoMotion] = {}
        self._candidates: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @staticmethod
    def _key(video) -> str:
        return getattr(video, "key", None) or f"{video.name}:{video.num_frames}"

    def motion(self, video) -> VideoMotion:
        """The cached :class:`VideoMotion` of ``video`` (computed on first use)."""
        key = self._key(video)
        if key not in self._motion:
            labels = (video.load_label(i) for i in range(video.num_frames))
            self._motion[key] = estimate_motion(labels, downsample=self.downsample)
        return self._motion[key]

    def prepare(self, videos: Iterable) -> None:
        """Estimate and cache the motion of every video (with a progress bar)."""
        videos = list(videos)
        for video in tqdm(videos, desc="motion statistics", unit="video", leave=False):
            self.motion(video)

    def candidates(self, video) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(strides, starts, clip_motions)`` of every clip that fits, as flat arrays."""
        key = self._key(video)
        if key not in self._candidates:
            cumulative = self.motion(video).cumulative
            strides, starts, motions = [], [], []
            steps = max(self.num_frames - 1, 1)
            for stride in self.temporal_scales:
                span = clip_span(self.num_frames, stride)
                if span > video.num_frames:
                    continue
                first = np.arange(video.num_frames - span + 1)
                strides.append(np.full(first.size, stride))
                starts.append(first)
                motions.append((cumulative[first + span - 1] - cumulative[first]) / steps)
            if strides:
                self._candidates[key] = tuple(np.concatenate(a) for a in (strides, starts, motions))
            else:
                self._candidates[key] = (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
        return self._candidates[key]

    def draw_target(self, rng: np.random.Generator) -> float:
        low, high = self.motion_range
        if self.target_distribution == "uniform":
            return float(rng.uniform(low, high))
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))

    def sample(self, video, rng: np.random.Generator) -> ClipIndices:
        if video.num_frames < self.num_frames:
            raise self._too_short(video)
        strides, starts, motions = self.candidates(video)
        if strides.size == 0:  # only strides larger than the video were configured
            return self._make_clip(int(rng.integers(0, video.num_frames - self.num_frames + 1)), 1, rng)
        target = self.draw_target(rng)
        z = (np.log(motions + _EPS) - np.log(target)) / self.bandwidth
        log_score = -0.5 * z * z
        score = np.exp(log_score - log_score.max())  # rescaled so the best candidate scores 1
        unique = np.unique(strides)
        stride_score = np.array([score[strides == s].mean() for s in unique])
        stride = int(unique[rng.choice(unique.size, p=stride_score / stride_score.sum())])
        mask = strides == stride
        start_score = score[mask]
        start = int(starts[mask][rng.choice(start_score.size, p=start_score / start_score.sum())])
        return self._make_clip(start, stride, rng, requested=stride)
