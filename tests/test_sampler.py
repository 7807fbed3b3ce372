"""Temporal samplers: stride statistics, short-video fallback, reversal, motion adaptivity."""

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from data.motion_sampler import MotionAdaptiveTemporalSampler, estimate_motion, object_centroids
from data.samplers import ClipIndices, MultiScaleTemporalSampler, UniformTemporalSampler
from utils.errors import UserError


@dataclass
class FakeVideo:
    name: str
    num_frames: int


@dataclass
class MovingSquareVideo:
    """A square of side ``size`` moving ``speed`` px/frame to the right (wrapping)."""

    name: str
    num_frames: int
    speed: float
    size: int = 8
    side: int = 64

    def load_label(self, index: int) -> np.ndarray:
        label = np.zeros((self.side, self.side), np.uint8)
        x = int(round(index * self.speed)) % (self.side - self.size)
        label[20:20 + self.size, x:x + self.size] = 1
        return label


def _check_clip(clip: ClipIndices, num_frames: int, video_frames: int) -> None:
    assert len(clip.frame_indices) == num_frames
    assert all(0 <= i < video_frames for i in clip.frame_indices)
    diffs = np.diff(clip.frame_indices)
    assert set(np.abs(diffs).tolist()) <= {clip.stride}
    assert (diffs < 0).all() if clip.reversed else (diffs > 0).all()


def test_multiscale_stride_frequencies_match_probs():
    sampler = MultiScaleTemporalSampler(8, temporal_scales=[1, 2], scale_probs=[0.9, 0.1])
    rng = np.random.default_rng(0)
    video = FakeVideo("long", 100)
    draws = 6000
    counts = Counter()
    for _ in range(draws):
        clip = sampler.sample(video, rng)
        _check_clip(clip, 8, 100)
        counts[clip.stride] += 1
    assert abs(counts[1] / draws - 0.9) < 0.02
    assert abs(counts[2] / draws - 0.1) < 0.02


def test_multiscale_three_scales_and_normalised_probs():
    sampler = MultiScaleTemporalSampler(4, temporal_scales=[1, 2, 4], scale_probs=[2, 1, 1])
    assert sampler.scale_probs == pytest.approx([0.5, 0.25, 0.25])
    rng = np.random.default_rng(1)
    draws = 5000
    counts = Counter(sampler.sample(FakeVideo("v", 50), rng).stride for _ in range(draws))
    for stride, prob in zip([1, 2, 4], [0.5, 0.25, 0.25]):
        assert abs(counts[stride] / draws - prob) < 0.02


def test_short_video_falls_back_to_largest_fitting_stride():
    sampler = MultiScaleTemporalSampler(8, temporal_scales=[1, 2, 4], scale_probs=[0.0, 0.0, 1.0])
    rng = np.random.default_rng(0)
    # stride 4 needs 29 frames; 20 frames fit stride 2 ((20 - 1) // 7 = 2).
    for _ in range(50):
        clip = sampler.sample(FakeVideo("short", 20), rng)
        assert clip.requested_stride == 4 and clip.stride == 2
        _check_clip(clip, 8, 20)
    # exactly 8 frames: only stride 1 fits, and the clip is the whole video.
    clip = sampler.sample(FakeVideo("eight", 8), rng)
    assert clip.stride == 1 and clip.frame_indices == list(range(8))


def test_too_short_video_raises_clear_error():
    rng = np.random.default_rng(0)
    for sampler in (MultiScaleTemporalSampler(8), UniformTemporalSampler(8)):
        with pytest.raises(UserError, match="tiny.*7 annotated frames.*8 frames"):
            sampler.sample(FakeVideo("tiny", 7), rng)


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_reverse_time_probability(prob):
    sampler = MultiScaleTemporalSampler(8, reverse_time_prob=prob)
    rng = np.random.default_rng(2)
    draws = 5000
    clips = [sampler.sample(FakeVideo("v", 40), rng) for _ in range(draws)]
    for clip in clips[:200]:
        _check_clip(clip, 8, 40)
    rate = sum(c.reversed for c in clips) / draws
    assert abs(rate - prob) < 0.02


def test_uniform_sampler_is_consecutive_and_covers_all_starts():
    sampler = UniformTemporalSampler(4)
    rng = np.random.default_rng(3)
    starts = Counter()
    for _ in range(2000):
        clip = sampler.sample(FakeVideo("v", 10), rng)
        _check_clip(clip, 4, 10)
        assert clip.stride == 1
        starts[clip.frame_indices[0]] += 1
    assert sorted(starts) == list(range(7))


def test_samplers_are_deterministic_given_rng_state():
    video = FakeVideo("v", 60)
    sampler = MultiScaleTemporalSampler(8, reverse_time_prob=0.5)
    a = [sampler.sample(video, np.random.default_rng([5, 0, i])) for i in range(20)]
    b = [sampler.sample(video, np.random.default_rng([5, 0, i])) for i in range(20)]
    assert a == b


def test_bad_sampler_arguments():
    with pytest.raises(ValueError):
        MultiScaleTemporalSampler(8, temporal_scales=[1, 2], scale_probs=[1.0])
    with pytest.raises(ValueError):
        MultiScaleTemporalSampler(8, temporal_scales=[0])
    with pytest.raises(ValueError):
        MultiScaleTemporalSampler(8, reverse_time_prob=1.5)


def test_object_centroids_and_motion_estimate():
    label = np.zeros((10, 10), np.uint8)
    label[2:4, 2:4] = 1
    label[6:8, 0:4] = 2
    stats = object_centroids(label)
    assert stats[1] == pytest.approx((2.5, 2.5, 4.0))
    assert stats[2] == pytest.approx((6.5, 1.5, 8.0))
    video = MovingSquareVideo("sq", 20, speed=2.0)
    motion = estimate_motion((video.load_label(i) for i in range(20)), downsample=1)
    # 2 px / frame for an 8 px square: 0.25 object sizes per frame.
    assert motion.step_motion == pytest.approx(np.full(19, 0.25))
    assert motion.clip_motion(list(range(0, 15, 2))) == pytest.approx(0.5)


def test_motion_estimate_fills_steps_without_objects():
    labels = [np.zeros((8, 8), np.uint8) for _ in range(4)]
    labels[0][0:2, 0:2] = 1
    labels[1][0:2, 1:3] = 1  # moves 1 px = 0.5 sizes; frames 2-3 empty
    motion = estimate_motion(labels, downsample=1, min_area=1)
    assert motion.step_motion == pytest.approx([0.5, 0.5, 0.5])


def test_motion_adaptive_chooses_long_strides_for_slow_and_short_for_fast_videos():
    sampler = MotionAdaptiveTemporalSampler(
        4, temporal_scales=[1, 2, 3, 4], motion_range=[0.3, 0.5], bandwidth=0.2, downsample=1
    )
    slow = MovingSquareVideo("slow", 40, speed=1.0)  # 0.125 sizes / frame
    fast = MovingSquareVideo("fast", 40, speed=3.2)  # 0.4 sizes / frame
    sampler.prepare([slow, fast])
    rng = np.random.default_rng(0)
    slow_strides = Counter(sampler.sample(slow, rng).stride for _ in range(1000))
    fast_strides = Counter(sampler.sample(fast, rng).stride for _ in range(1000))
    assert fast_strides.most_common(1)[0][0] == 1
    assert slow_strides[3] + slow_strides[4] > 800  # 0.375 and 0.5 sizes / step
    assert slow_strides[1] < 50


def test_motion_adaptive_clip_motion_covers_target_range():
    sampler = MotionAdaptiveTemporalSampler(
        4, temporal_scales=list(range(1, 9)), motion_range=[0.1, 0.8], bandwidth=0.15, downsample=1
    )
    video = MovingSquareVideo("v", 60, speed=1.0, size=10, side=80)  # 0.1 sizes / frame: 0.1 * stride
    rng = np.random.default_rng(1)
    motions = []
    for _ in range(2000):
        clip = sampler.sample(video, rng)
        _check_clip(clip, 4, 60)
        motions.append(sampler.motion(video).clip_motion(clip.frame_indices))
    motions = np.array(motions)
    assert ((motions > 0.099) & (motions < 0.801)).all()
    # log-uniform target: roughly as many clips below the geometric midpoint as above it
    below = (motions < np.sqrt(0.1 * 0.8)).mean()
    assert 0.35 < below < 0.65
    assert len(set(np.round(motions, 3))) == 8  # every stride is used


def test_motion_adaptive_short_video_and_errors():
    sampler = MotionAdaptiveTemporalSampler(8, temporal_scales=[2, 3], downsample=1)
    rng = np.random.default_rng(0)
    clip = sampler.sample(MovingSquareVideo("eight", 8, speed=1.0), rng)  # only stride 1 fits
    assert clip.stride == 1 and clip.frame_indices == list(range(8))
    with pytest.raises(UserError, match="does not fit"):
        sampler.sample(MovingSquareVideo("seven", 7, speed=1.0), rng)
