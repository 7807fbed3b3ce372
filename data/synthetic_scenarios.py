"""Scenario videos, where memory and temporal sampling matter, and their events.

=============  ==========================================================================
``basic``      the default videos: 1-3 instruments, ``slow`` or ``fast`` motion, random
               retractions (no events recorded)
``occlusion``  the top-most instrument retracts out of view for 10-40 frames, then comes
               back through another trocar (another border) on a new path
``crossing``   two identical instruments from opposite borders; their tips meet at one frame
``jumps``      fast / irregular motion, dropped frames (time skips of 2-8 frames) and
               camera jerks (the whole view shifts by 3-6% of the side, then settles)
``long``       at least 200 frames: static phases (almost no motion) and bursts (x4-6 speed)
``distractor`` at least 64 frames: a look-alike instrument moves onto where the target (the
               top-most one) was while the target is retracted for 20-40 frames; the
               target then comes back through its own trocar
``sustained``  at least 96 frames of sustained mixed motion: slow and fast phases alternate
               to the end (fast: x5-8 speed, some with sudden jumps), no static phase
``appearance`` slow motion under smoke, blur (defocus) and specular flashes; masks unchanged
=============  ==========================================================================

Events are dicts with frame indices of the written video (inclusive windows)::

    {"type": "occluded", "obj_id": 2, "start": 30, "end": 56}   the object's mask is empty
    {"type": "reappear", "obj_id": 2, "frame": 57}              ... and non-empty again
    {"type": "crossing", "obj_ids": [1, 2], "frame": 20}        the tips meet
    {"type": "dropped_frames", "frame": 9, "skipped": 4}        4 frames missing before 9
    {"type": "camera_jerk", "frame": 14, "shift_px": [5.1, -2.0]}
    {"type": "static" | "burst" | "smoke" | "blur", "start": s, "end": e}
    {"type": "flash", "frame": f}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List

import cv2
import numpy as np

from data.synthetic_scene import InstrumentLook, fractal_noise
from data.synthetic_tracks import (InstrumentTrack, entry_point, jaw_openings, pivot_on_side, pivot_side,
                                   plan_instruments, tip_curve, walk)

SCENARIOS = ("basic", "occlusion", "crossing", "jumps", "long", "appearance", "sustained", "distractor", "mixed")
MIXED_CYCLE = ("occlusion", "crossing", "jumps", "long", "appearance")
MIN_FRAMES = {"basic": 1, "occlusion": 40, "crossing": 16, "jumps": 16, "long": 200, "appearance": 24,
              "sustained": 96, "distractor": 64}
SPEED = {"occlusion": "slow", "crossing": "slow", "jumps": "fast", "long": "slow", "appearance": "slow",
         "sustained": "fast", "distractor": "slow"}

Effect = Callable[[np.ndarray, int], np.ndarray]  # (float32 [H, W, 3] image, frame) -> image


@dataclass
class ScenarioPlan:
    """Everything a video needs besides the background: tracks, camera, effects, events.

    camera: ``[T, 2]`` xy shift of the whole view in px; background_times: ``[T]`` the
    background's clock (it runs on through dropped frames).
    """

    tracks: List[InstrumentTrack]
    camera: np.ndarray
    background_times: np.ndarray
    effects: List[Effect] = field(default_factory=list)
    events: List[Dict] = field(default_factory=list)


def video_scenarios(num_videos: int, scenario: str) -> List[str]:
    """Scenario of each video: all the same, or cycling through :data:`MIXED_CYCLE` for ``mixed``."""
    if scenario == "mixed":
        return [MIXED_CYCLE[i % len(MIXED_CYCLE)] for i in range(num_videos)]
    return [scenario] * num_videos


def scenario_length(scenario: str, num_frames: int) -> int:
    """Frames of a video of this scenario: ``num_frames``, raised to the scenario's minimum."""
    return max(int(num_frames), MIN_FRAMES[scenario])


def plan_basic(rng, num_frames: int, height: int, width: int, speed: str) -> ScenarioPlan:
    """The default video: random instruments of one speed, no camera motion, no events."""
    return _plan(num_frames, plan_instruments(rng, num_frames, height, width, speed))


def plan_scenario(rng: np.random.Generator, scenario: str, num_frames: int, height: int, width: int) -> ScenarioPlan:
    """Plan one video of ``scenario`` (not ``basic``/``mixed``) with ``num_frames`` frames."""
    planners = {"occlusion": _occlusion, "crossing": _crossing, "jumps": _jumps, "long": _long,
                "appearance": _appearance, "sustained": _sustained,
                "distractor": _distractor}
    if num_frames < MIN_FRAMES[scenario]:
        raise ValueError(f"a {scenario} video needs at least {MIN_FRAMES[scenario]} frames, got {num_frames}")
    plan = planners[scenario](rng, num_frames, height, width)
    plan.events.sort(key=lambda e: (e.get("frame", e.get("start")), e["type"]))
    return plan


def _plan(num_frames: int, tracks, events=None, camera=None, times=None, effects=None) -> ScenarioPlan:
    """A plan with a still camera and the real clock unless given."""
    return ScenarioPlan(tracks, np.zeros((num_frames, 2)) if camera is None else camera,
                        np.arange(num_frames) if times is None else times, effects or [], events or [])


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _occlusion(rng, num_frames, height, width) -> ScenarioPlan:
    side = float(min(height, width))
    tracks = plan_instruments(rng, num_frames, height, width, "slow", retract=False)
    obj = len(tracks)  # the top-most one: nothing else is drawn over it
    track = tracks[-1]
    duration = int(rng.integers(10, min(40, num_frames - 24) + 1))
    ramp = int(rng.integers(3, 7))
    start = int(rng.integers(ramp + 4, num_frames - duration - ramp - 4 + 1))
    end = start + duration - 1
    new_side = (pivot_side(track.pivot, height, width) + int(rng.integers(1, 4))) % 4
    new_pivot = pivot_on_side(new_side, rng.uniform(0.15, 0.85), height, width, 0.2 * side)
    curve, arc = tip_curve(rng, height, width)
    new_tips = walk(rng, curve, arc, num_frames, track.speed, False, side)
    t = np.arange(num_frames)
    after = t > end
    pivots = np.where(after[:, None], new_pivot, track.pivot)
    tips = np.where(after[:, None], new_tips, track.tips)
    # Leave by the border just before the window and come in by the new border right after it;
    # the tip stays 8% inside the frame during both ramps, so the tool stays visible.
    out = np.maximum(_smoothstep((t - (start - ramp - 1)) / ramp) * (t < start),
                     _smoothstep(((end + ramp + 1) - t) / ramp) * after)
    for k in np.flatnonzero(out > 0):
        door = entry_point(pivots[k], tips[k], height, width, 0.08 * side)
        tips[k] = tips[k] + (door - tips[k]) * out[k]
    drawn = ~((t >= start) & (t <= end))
    tracks[-1] = InstrumentTrack(track.look, pivots, tips, track.openings, track.motion, track.speed,
                                 [int(k) for k in np.flatnonzero(~drawn)], drawn)
    events = [{"type": "occluded", "obj_id": obj, "start": start, "end": end},
              {"type": "reappear", "obj_id": obj, "frame": end + 1}]
    return _plan(num_frames, tracks, events)


def _distractor(rng, num_frames, height, width) -> ScenarioPlan:
    side = float(min(height, width))
    look = InstrumentLook.random(rng, side)
    target, other = plan_instruments(rng, num_frames, height, width, "slow", retract=False, count=2)
    target.look = other.look = look  # identical tools: only memory of where the target was tells them apart
    duration = int(rng.integers(20, min(40, num_frames - 30) + 1))
    ramp = int(rng.integers(3, 7))
    start = int(rng.integers(ramp + 6, num_frames - duration - ramp - 6 + 1))
    end = start + duration - 1
    t = np.arange(num_frames)
    # The target leaves by its border before the window and comes back the same way after it.
    out = np.maximum(_smoothstep((t - (start - ramp - 1)) / ramp), 0) * (t < start) \
        + _smoothstep(((end + ramp + 1) - t) / ramp) * (t > end)
    last_seen = target.tips[start - ramp - 1].copy()
    for k in np.flatnonzero(out > 0):
        door = entry_point(target.pivot, target.tips[k], height, width, 0.08 * side)
        target.tips[k] = target.tips[k] + (door - target.tips[k]) * out[k]
    target.drawn = ~((t >= start) & (t <= end))
    target.hidden = [int(k) for k in np.flatnonzero(~target.drawn)]
    # The look-alike's tip moves onto the target's last place during the window, then leaves.
    third = max(duration // 3, 1)
    pull = np.clip(np.minimum((t - start + 1) / third, (end + 1 - t) / third), 0, 1) * ((t >= start) & (t <= end))
    pull = _smoothstep(pull)
    other.tips = other.tips + (last_seen - other.tips) * pull[:, None]
    events = [{"type": "occluded", "obj_id": 2, "start": start, "end": end},
              {"type": "reappear", "obj_id": 2, "frame": end + 1},
              {"type": "distractor", "obj_id": 1, "start": start, "end": end,
               "target_place_px": [round(float(v), 2) for v in last_seen]}]
    return _plan(num_frames, [other, target], events)


def _crossing(rng, num_frames, height, width) -> ScenarioPlan:
    side = float(min(height, width))
    look = InstrumentLook.random(rng, side)  # both tools look the same
    meet_frame = int(rng.integers(num_frames // 3, 2 * num_frames // 3 + 1))
    meet = rng.uniform([0.4 * width, 0.4 * height], [0.6 * width, 0.6 * height])
    speed = min(rng.uniform(0.008, 0.016), 0.3 / max(meet_frame, num_frames - 1 - meet_frame, 1)) * side
    horizontal = rng.random() < 0.5  # shafts from left/right (tips sweep vertically) or top/bottom
    t = np.arange(num_frames) - meet_frame
    sides = (3, 1) if horizontal else (0, 2)
    tracks = []
    for k, pivot_border in enumerate(sides):
        pivot = pivot_on_side(pivot_border, rng.uniform(0.3, 0.7), height, width, 0.2 * side)
        sweep = np.array([rng.uniform(-0.3, 0.3), 1.0 if k == 0 else -1.0])
        sweep = (sweep if horizontal else sweep[::-1]) / np.hypot(*sweep)
        tips = meet + t[:, None] * speed * sweep
        openings = jaw_openings(rng, num_frames, (14, 30))
        tracks.append(InstrumentTrack(look, pivot, tips, openings, "crossing", float(speed)))
    return _plan(num_frames, tracks, [{"type": "crossing", "obj_ids": [1, 2], "frame": meet_frame}])


def _jumps(rng, num_frames, height, width) -> ScenarioPlan:
    side = float(min(height, width))
    steps = np.ones(num_frames, int)
    drops = rng.random(num_frames) < 0.08
    drops[0] = False
    steps[drops] = rng.integers(3, 10, size=int(drops.sum()))
    times = np.cumsum(steps) - 1
    tracks = [tr.resampled(times) for tr in plan_instruments(rng, int(times[-1]) + 1, height, width, "fast",
                                                              retract=False)]
    jerks = rng.random(num_frames) < 0.06
    jerks[0] = False
    angles, sizes = rng.uniform(0, 2 * np.pi, num_frames), rng.uniform(0.03, 0.06, num_frames) * side
    camera, shift = np.zeros((num_frames, 2)), np.zeros(2)
    events = []
    for k in range(num_frames):
        shift *= 0.85  # the view settles back after a jerk
        if jerks[k]:
            shift = np.clip(shift + sizes[k] * np.array([np.cos(angles[k]), np.sin(angles[k])]),
                            -0.07 * side, 0.07 * side)
            events.append({"type": "camera_jerk", "frame": k, "shift_px": [round(float(v), 2) for v in shift]})
        camera[k] = shift
        if drops[k]:
            events.append({"type": "dropped_frames", "frame": k, "skipped": int(steps[k] - 1)})
    return _plan(num_frames, tracks, events, camera, times)


def _long(rng, num_frames, height, width) -> ScenarioPlan:
    rates, events, k, kind = np.ones(num_frames), [], 0, "normal"
    while k < num_frames:
        kind = [c for c in ("static", "normal", "burst") if c != kind][int(rng.integers(0, 2))]  # never twice
        length = int(rng.integers(*{"static": (15, 41), "normal": (10, 31), "burst": (5, 13)}[kind]))
        end = min(k + length, num_frames) - 1
        rates[k:end + 1] = {"static": rng.uniform(0.0, 0.05), "normal": 1.0, "burst": rng.uniform(4, 6)}[kind]
        if kind != "normal":
            events.append({"type": kind, "start": k, "end": end})
        k = end + 1
    times = np.concatenate([[0.0], np.cumsum(rates[:-1])])
    tracks = [tr.resampled(times) for tr in plan_instruments(rng, int(np.ceil(times[-1])) + 2, height, width, "slow",
                                                              retract=False)]
    return _plan(num_frames, tracks, events)


def _sustained(rng, num_frames, height, width) -> ScenarioPlan:
    """Slow phases (10-20 frames) and fast ones (8-16 frames at x5-8, half of them with
    jumps of 10-20% of the side) alternate to the end; each fast phase is a ``burst`` event."""
    side = float(min(height, width))
    steps, events, k, fast = np.ones(num_frames), [], 0, bool(rng.random() < 0.5)
    while k < num_frames:
        end = min(k + int(rng.integers(*((8, 17) if fast else (10, 21)))), num_frames) - 1
        if fast:
            steps[k:end + 1] = rng.uniform(5, 8)
            events.append({"type": "burst", "start": k, "end": end})
        k, fast = end + 1, not fast
    tracks = plan_instruments(rng, int(np.ceil(steps.sum())) + 2, height, width, "slow", retract=False)
    for track in tracks:  # per instrument: jumps in some fast phases (in its own time, so the curve is kept)
        jumpy = np.zeros(num_frames)
        for event in events:
            if rng.random() < 0.5:
                frame = int(rng.integers(event["start"], event["end"] + 1))
                jumpy[frame] = rng.uniform(0.10, 0.20) * side / max(track.speed, 1e-6) * rng.choice([-1.0, 1.0])
        times = np.clip(np.concatenate([[0.0], np.cumsum(steps[:-1] + jumpy[1:])]), 0, len(track.tips) - 1)
        resampled = track.resampled(times)
        track.tips, track.openings = resampled.tips, resampled.openings
    return _plan(num_frames, tracks, events)


def _windows(rng, num_frames: int, count: int, lengths) -> List[tuple]:
    out = []
    for _ in range(count):
        length = int(rng.integers(*lengths))
        start = int(rng.integers(1, max(2, num_frames - length)))
        out.append((start, min(start + length, num_frames) - 1))
    return out


def _appearance(rng, num_frames, height, width) -> ScenarioPlan:
    side = float(min(height, width))
    tracks = plan_instruments(rng, num_frames, height, width, "slow", retract=False)
    alpha, sigma, flash = np.zeros(num_frames), np.zeros(num_frames), np.zeros(num_frames)
    events = []
    for start, end in _windows(rng, num_frames, int(rng.integers(1, 3)), (8, max(9, min(30, num_frames // 2)))):
        peak = rng.uniform(0.45, 0.75)
        ramp = np.sin(np.pi * (np.arange(start, end + 1) - start + 0.5) / (end - start + 1))
        alpha[start:end + 1] = np.maximum(alpha[start:end + 1], peak * ramp)
        events.append({"type": "smoke", "start": start, "end": end})
    for start, end in _windows(rng, num_frames, int(rng.integers(1, 3)), (2, 7)):
        sigma[start:end + 1] = rng.uniform(0.01, 0.02) * side
        events.append({"type": "blur", "start": start, "end": end})
    for frame in rng.choice(np.arange(1, num_frames), size=int(rng.integers(1, 4)), replace=False):
        flash[frame] = rng.uniform(0.5, 0.8)
        events.append({"type": "flash", "frame": int(frame)})
    pad = max(8, int(0.25 * side))
    smoke = fractal_noise(rng, height + pad, width + pad, (2, 4, 8))
    smoke = (0.35 + 0.65 * smoke).astype(np.float32)
    drift = rng.uniform(0.2, 0.6, size=2) * pad / max(num_frames, 1)
    colour = np.float32(rng.uniform(195, 225))

    def effect(image: np.ndarray, t: int) -> np.ndarray:
        if alpha[t] > 0:
            oy, ox = (int(v) % pad for v in drift * t)
            a = cv2.merge([smoke[oy:oy + height, ox:ox + width] * np.float32(alpha[t])] * 3)
            image = image * (1.0 - a) + a * colour
        if flash[t] > 0:
            image = image + (np.float32(255.0) - image) * np.float32(flash[t])
        if sigma[t] > 0:
            image = cv2.GaussianBlur(image, (0, 0), float(sigma[t]))
        return image

    return _plan(num_frames, tracks, events, effects=[effect])
