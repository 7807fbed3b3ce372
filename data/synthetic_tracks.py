"""Instrument trajectories for the synthetic videos: trocar points, tip curves, motion, retraction.

Each instrument pivots about its own trocar point outside the frame (beyond one border), so
its shaft always enters from the border; the tip follows a smooth random curve at a set
speed (``slow`` ~0.4-1% of the frame side per frame; ``fast`` 3-6%; ``irregular`` 1.5-3.5%
with sudden jumps of 15-30%) and two jaws open and close.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from data.synthetic_scene import InstrumentLook

# Tip speed ranges, fraction of the shorter frame side per frame.
_SPEED_RANGE = {"slow": (0.004, 0.010), "fast": (0.03, 0.06), "irregular": (0.015, 0.035)}
_JUMP_PROB, _JUMP_RANGE = 0.12, (0.15, 0.30)


@dataclass
class InstrumentTrack:
    """Pre-computed trajectory of one instrument over the video (all arrays length T)."""

    look: InstrumentLook
    pivot: np.ndarray  # [2] xy outside the frame, or [T, 2] when the tool changes trocar
    tips: np.ndarray  # [T, 2] xy
    openings: np.ndarray  # [T] radians
    motion: str
    speed: float  # px / frame of the tip along its path
    hidden: List[int] = field(default_factory=list)  # frames when fully retracted
    drawn: Optional[np.ndarray] = None  # [T] bool; False = out of view (None: always drawn)

    def pivot_at(self, t: int) -> np.ndarray:
        return self.pivot if self.pivot.ndim == 1 else self.pivot[t]

    def resampled(self, times: np.ndarray) -> "InstrumentTrack":
        """The track read at (fractional) times ``times`` ``[T']`` of its own timeline."""
        grid = np.arange(len(self.tips))
        tips = np.stack([np.interp(times, grid, self.tips[:, k]) for k in (0, 1)], axis=1)
        return InstrumentTrack(self.look, self.pivot, tips, np.interp(times, grid, self.openings), self.motion,
                               self.speed)


def pivot_side(pivot: np.ndarray, height: int, width: int) -> int:
    """Border of a trocar point: 0 top, 1 right, 2 bottom, 3 left."""
    x, y = pivot
    return 0 if y < 0 else 1 if x > width else 2 if y > height else 3


def pivot_on_side(side: int, along: float, height: int, width: int, margin: float) -> np.ndarray:
    if side == 0:
        return np.array([along * width, -margin])
    if side == 1:
        return np.array([width + margin, along * height])
    if side == 2:
        return np.array([along * width, height + margin])
    return np.array([-margin, along * height])


def entry_point(pivot: np.ndarray, tip: np.ndarray, height: int, width: int, inset: float) -> np.ndarray:
    """The point ``inset`` px past where the segment pivot -> tip enters the frame (or the tip)."""
    d = tip - pivot
    enter = 0.0
    for axis, size in ((0, width), (1, height)):
        if abs(d[axis]) > 1e-9:
            a, b = (0 - pivot[axis]) / d[axis], (size - pivot[axis]) / d[axis]
            enter = max(enter, min(a, b))
    return pivot + d * min(enter + inset / max(float(np.hypot(*d)), 1e-6), 1.0)


def _pivot_point(rng: np.random.Generator, height: int, width: int, margin: float) -> np.ndarray:
    side = int(rng.integers(0, 4))
    return pivot_on_side(side, rng.uniform(0.15, 0.85), height, width, margin)


def tip_curve(rng: np.random.Generator, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """A smooth random curve in the central region and its cumulative arc length."""
    u = np.linspace(0.0, 1.0, 4096)
    centre = rng.uniform([0.4 * width, 0.4 * height], [0.6 * width, 0.6 * height])
    curve = np.repeat(centre[None, :], u.size, axis=0)
    for axis, extent in ((0, width), (1, height)):
        for _ in range(3):
            amplitude = rng.uniform(0.04, 0.12) * extent
            curve[:, axis] += amplitude * np.sin(2 * np.pi * (rng.uniform(0.5, 3.0) * u + rng.random()))
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(curve, axis=0).T))])
    return curve, arc


def walk(rng, curve, arc, num_frames: int, speed: float, irregular: bool, side: float) -> np.ndarray:
    """Tip positions ``[T, 2]``: walk along the curve at ``speed`` px/frame, bouncing at ends."""
    total = arc[-1]
    variation = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.02, 0.08) * np.arange(num_frames) + rng.random() * 6)
    steps = speed * variation * (1 if rng.random() < 0.5 else -1)
    if irregular:
        jumps = rng.random(num_frames) < _JUMP_PROB
        sizes = rng.uniform(*_JUMP_RANGE, size=num_frames) * side * rng.choice([-1.0, 1.0], size=num_frames)
        steps = steps + np.where(jumps, sizes, 0.0)
    steps[0] = 0.0
    position = rng.uniform(0, total) + np.cumsum(steps)
    folded = np.mod(position, 2 * total)
    folded = np.where(folded > total, 2 * total - folded, folded)
    return np.stack([np.interp(folded, arc, curve[:, 0]), np.interp(folded, arc, curve[:, 1])], axis=1)


def _retraction(rng, num_frames: int, transition: int, allow_start_hidden: bool) -> np.ndarray:
    """Retraction weight ``[T]`` in [0, 1] (1 = fully out of view) with one hidden window."""
    weight = np.zeros(num_frames)
    if rng.random() < 0.4 or num_frames < 2 * transition + 6:
        return weight
    duration = int(rng.integers(3, max(4, num_frames // 6)))
    low = -duration if allow_start_hidden else transition + 1
    start = int(rng.integers(low, max(low + 1, num_frames - duration - transition)))
    t = np.arange(num_frames)
    ramp_in = np.clip((t - (start - transition)) / max(transition, 1), 0, 1)
    ramp_out = np.clip(((start + duration + transition) - t) / max(transition, 1), 0, 1)
    ramp = np.minimum(ramp_in, ramp_out)
    return ramp * ramp * (3 - 2 * ramp)  # smoothstep


def jaw_openings(rng: np.random.Generator, num_frames: int, period_range) -> np.ndarray:
    """Jaw opening ``[T]`` in radians: a cosine cycle of random period, phase and amplitude."""
    period = rng.uniform(*period_range)
    phase = rng.uniform(0, 2 * np.pi)
    return np.radians(rng.uniform(30, 55)) * 0.5 * (1 - np.cos(2 * np.pi * np.arange(num_frames) / period + phase))


def plan_instruments(rng: np.random.Generator, num_frames: int, height: int, width: int, speed: str,
                     retract: bool = True, count: Optional[int] = None) -> List[InstrumentTrack]:
    """Random instruments (1-3, or ``count``) and their trajectories for one video of the given speed.

    ``retract=False``: no random retraction (the scenarios place their own events).
    """
    side = float(min(height, width))
    margin = 0.2 * side
    tracks = []
    for index in range(int(rng.integers(1, 4)) if count is None else count):
        look = InstrumentLook.random(rng, side)
        pivot = _pivot_point(rng, height, width, margin)
        motion = "smooth" if speed == "slow" else ("fast" if rng.random() < 0.5 else "irregular")
        tip_speed = float(rng.uniform(*_SPEED_RANGE["slow" if motion == "smooth" else motion]) * side)
        curve, arc = tip_curve(rng, height, width)
        tips = walk(rng, curve, arc, num_frames, tip_speed, motion == "irregular", side)
        inside = 0.3 * margin  # tip this close to the pivot puts the whole tool outside the frame
        reach = np.hypot(*(tips - pivot).T)
        # Retract and re-insert at a pace that matches the motion kind (3x / 1.5x the tip speed).
        pace = (3.0 if motion == "smooth" else 1.5) * tip_speed
        transition = int(np.clip(round((reach.mean() - inside) / pace), 1, 40))
        weight = _retraction(rng, num_frames, transition, index > 0) if retract else np.zeros(num_frames)
        scale = 1.0 - weight * (1.0 - inside / np.maximum(reach, inside))
        tips = pivot + (tips - pivot) * scale[:, None]
        openings = jaw_openings(rng, num_frames, (14, 30) if speed == "slow" else (4, 10))
        hidden = [int(t) for t in np.flatnonzero(weight > 0.999)]
        tracks.append(InstrumentTrack(look, pivot, tips, openings, motion, tip_speed, hidden))
    return tracks


