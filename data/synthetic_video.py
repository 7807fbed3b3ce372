"""Synthetic surgical-like videos with exact masks, written in the VOS layout.

Each video (random stream ``numpy.random.default_rng([seed, video_index])``) has:

* a reddish tissue background with vessels, fat and specular highlights, drifting slowly;
* 1-3 instruments. Each pivots about its own trocar point outside the frame (beyond one
  border), so its shaft always enters from the border; the tip follows a smooth random curve
  at a set speed and two jaws open and close. Later objects are drawn on top of earlier
  ones (occlusion), and each instrument may retract out of view and come back;
* motion ``slow`` (smooth, ~0.4-1% of the frame side per frame) or ``fast``, where each
  instrument is either ``fast`` (smooth, 3-6%) or ``irregular`` (1.5-3.5% with sudden jumps
  of 15-30% of the side). ``--speed mixed`` alternates slow (even index) and fast (odd).

Output (``write_synthetic_dataset``)::

    <out>/JPEGImages/<video>/00000.jpg     frames (JPEG, quality 95)
    <out>/Annotations/<video>/00000.png    palette PNGs, value = object id (1..3), 0 = background
    <out>/Prompts/<video>/00000.png        first-frame annotation, for inference
    <out>/videos/<video>.mp4               the frames as an mp4 (cv2, 'mp4v')
    <out>/ImageSets/{all,slow,fast}.txt    video names by speed
    <out>/meta.json                        settings and per-video / per-object motion
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from data.mask_io import frame_file_name, write_label_png, write_rgb
from data.synthetic_scene import (
    InstrumentLook, TissueBackground, cast_shadow, fill_polygons, instrument_polygons, polygons_bbox,
    shade_instrument,
)
from utils.cli import UserError
from utils.io import atomic_dir

log = logging.getLogger(__name__)

GENERATOR_NAME = "tsms-sam2-synthetic"
GENERATOR_VERSION = 1
SPEEDS = ("slow", "fast", "mixed")

# Tip speed ranges, fraction of the shorter frame side per frame.
_SPEED_RANGE = {"slow": (0.004, 0.010), "fast": (0.03, 0.06), "irregular": (0.015, 0.035)}
_JUMP_PROB, _JUMP_RANGE = 0.12, (0.15, 0.30)


@dataclass
class SyntheticFrame:
    """One rendered frame.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB.
        label: ``[H, W]`` uint8 visible object id per pixel (0 = background).
        full_masks: ``[K, H, W]`` bool, each object's silhouette before occlusion.
    """

    image: np.ndarray
    label: np.ndarray
    full_masks: np.ndarray


@dataclass
class InstrumentTrack:
    """Pre-computed trajectory of one instrument over the video (all arrays length T)."""

    look: InstrumentLook
    pivot: np.ndarray  # [2] xy, outside the frame
    tips: np.ndarray  # [T, 2] xy
    openings: np.ndarray  # [T] radians
    motion: str
    speed: float  # px / frame of the tip along its path
    hidden: List[int] = field(default_factory=list)  # frames when fully retracted


def _pivot_point(rng: np.random.Generator, height: int, width: int, margin: float) -> np.ndarray:
    side = int(rng.integers(0, 4))
    along = rng.uniform(0.15, 0.85)
    if side == 0:
        return np.array([along * width, -margin])
    if side == 1:
        return np.array([width + margin, along * height])
    if side == 2:
        return np.array([along * width, height + margin])
    return np.array([-margin, along * height])


def _tip_curve(rng: np.random.Generator, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
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


def _walk(rng, curve, arc, num_frames: int, speed: float, irregular: bool, side: float) -> np.ndarray:
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


def plan_instruments(rng: np.random.Generator, num_frames: int, height: int, width: int, speed: str) -> List[InstrumentTrack]:
    """Random instruments and their trajectories for one video of the given speed."""
    side = float(min(height, width))
    margin = 0.2 * side
    tracks = []
    for index in range(int(rng.integers(1, 4))):
        look = InstrumentLook.random(rng, side)
        pivot = _pivot_point(rng, height, width, margin)
        motion = "smooth" if speed == "slow" else ("fast" if rng.random() < 0.5 else "irregular")
        tip_speed = float(rng.uniform(*_SPEED_RANGE["slow" if motion == "smooth" else motion]) * side)
        curve, arc = _tip_curve(rng, height, width)
        tips = _walk(rng, curve, arc, num_frames, tip_speed, motion == "irregular", side)
        inside = 0.3 * margin  # tip this close to the pivot puts the whole tool outside the frame
        reach = np.hypot(*(tips - pivot).T)
        # Retract and re-insert at a pace that matches the motion kind (3x / 1.5x the tip speed).
        pace = (3.0 if motion == "smooth" else 1.5) * tip_speed
        transition = int(np.clip(round((reach.mean() - inside) / pace), 1, 40))
        retract = _retraction(rng, num_frames, transition, allow_start_hidden=index > 0)
        scale = 1.0 - retract * (1.0 - inside / np.maximum(reach, inside))
        tips = pivot + (tips - pivot) * scale[:, None]
        period = rng.uniform(14, 30) if speed == "slow" else rng.uniform(4, 10)
        phase = rng.uniform(0, 2 * np.pi)
        openings = np.radians(rng.uniform(30, 55)) * 0.5 * (1 - np.cos(2 * np.pi * np.arange(num_frames) / period + phase))
        hidden = [int(t) for t in np.flatnonzero(retract > 0.999)]
        tracks.append(InstrumentTrack(look, pivot, tips, openings, motion, tip_speed, hidden))
    return tracks


def render_video(
    rng: np.random.Generator, num_frames: int, height: int, width: int, speed: str
) -> Tuple[List[InstrumentTrack], Iterator[SyntheticFrame]]:
    """Plan one video and return its tracks and a lazy iterator over its frames."""
    if speed not in ("slow", "fast"):
        raise ValueError(f"video speed must be slow or fast, got {speed!r}")
    background = TissueBackground(rng, height, width, drift=0.01 if speed == "slow" else 0.03)
    tracks = plan_instruments(rng, num_frames, height, width, speed)
    noise_pad = 16
    noise = rng.normal(0.0, 2.0, size=(height + noise_pad, width + noise_pad, 3)).astype(np.float32)
    offsets = rng.integers(0, noise_pad, size=(num_frames, 2))
    side = min(height, width)
    shadow_blur = max(3, int(0.03 * side)) | 1
    shadow_offset = (int(round(0.012 * side)), int(round(0.02 * side)))

    def frames() -> Iterator[SyntheticFrame]:
        for t in range(num_frames):
            image = background.frame(t)
            label = np.zeros((height, width), np.uint8)
            full = np.zeros((len(tracks), height, width), bool)
            for obj, track in enumerate(tracks, start=1):
                parts = instrument_polygons(track.pivot, track.tips[t], track.openings[t], track.look)
                bbox = polygons_bbox(parts, height, width)
                if bbox[0] >= bbox[1] or bbox[2] >= bbox[3]:
                    continue  # entirely outside the frame
                part_map = fill_polygons(parts, height, width)
                mask = part_map > 0
                full[obj - 1] = mask
                cast_shadow(image, mask.view(np.uint8), shadow_offset, shadow_blur, 0.35)
                (ys, xs), colours = shade_instrument(part_map, track.pivot, track.tips[t], track.look, bbox)
                image[ys, xs] = colours
                label[mask] = obj
            cv2.multiply(image, background.vignette, dst=image)
            image = cv2.GaussianBlur(image, (3, 3), 0.6)
            oy, ox = offsets[t]
            cv2.add(image, noise[oy:oy + height, ox:ox + width], dst=image)
            yield SyntheticFrame(cv2.convertScaleAbs(image), label, full)

    return tracks, frames()


def video_speeds(num_videos: int, speed: str) -> List[str]:
    """Speed of each video: all the same, or alternating slow/fast for ``mixed``."""
    if speed not in SPEEDS:
        raise UserError(f"--speed must be one of {', '.join(SPEEDS)}, got {speed!r}")
    if speed == "mixed":
        return ["slow" if i % 2 == 0 else "fast" for i in range(num_videos)]
    return [speed] * num_videos


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output path exists and is not a directory: {out}")
    if out.is_dir() and any(out.iterdir()):
        meta = out / "meta.json"
        try:
            ours = json.loads(meta.read_text()).get("generator") == GENERATOR_NAME
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise UserError(f"output directory is not empty and was not written by this generator: {out}")


def write_synthetic_dataset(
    out: Union[str, os.PathLike],
    num_videos: int,
    num_frames: int,
    seed: int = 0,
    speed: str = "mixed",
    size: Sequence[int] = (512, 512),
    fps: float = 10.0,
    write_mp4: bool = True,
    progress: bool = True,
) -> Dict:
    """Generate ``num_videos`` videos into ``out`` (replaced atomically); returns ``meta.json``.

    The same arguments give byte-identical JPEG/PNG/JSON files.
    """
    height, width = (int(v) for v in size)
    if num_videos < 1 or num_frames < 1:
        raise UserError("--num_videos and --num_frames must be >= 1")
    if height < 32 or width < 32:
        raise UserError(f"--size must be at least 32 x 32, got {height} x {width}")
    out = Path(out)
    _check_output(out)
    speeds = video_speeds(num_videos, speed)
    meta: Dict = {
        "generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "seed": int(seed),
        "num_videos": int(num_videos), "num_frames": int(num_frames), "size": [height, width],
        "speed": speed, "fps": float(fps), "videos": {},
    }
    bar = tqdm(total=num_videos * num_frames, desc="synthetic", unit="frame", disable=not progress)
    with atomic_dir(out) as tmp:
        for index, video_speed in enumerate(speeds):
            name = f"video_{index:04d}"
            rng = np.random.default_rng([int(seed), index])
            tracks, frames = render_video(rng, num_frames, height, width, video_speed)
            meta["videos"][name] = _write_video(tmp, name, frames, fps, write_mp4, bar)
            meta["videos"][name].update(
                speed=video_speed,
                objects={
                    str(i): {"motion": tr.motion, "tip_speed_px": round(tr.speed, 3), "hidden_frames": tr.hidden}
                    for i, tr in enumerate(tracks, start=1)
                },
            )
        sets = tmp / "ImageSets"
        sets.mkdir()
        names = list(meta["videos"])
        (sets / "all.txt").write_text("".join(f"{n}\n" for n in names))
        for kind in ("slow", "fast"):
            (sets / f"{kind}.txt").write_text(
                "".join(f"{n}\n" for n in names if meta["videos"][n]["speed"] == kind)
            )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    bar.close()
    log.info("wrote %d synthetic videos to %s", num_videos, out)
    return meta


def _write_video(root: Path, name: str, frames: Iterator[SyntheticFrame], fps: float, write_mp4: bool, bar) -> Dict:
    image_dir = root / "JPEGImages" / name
    mask_dir = root / "Annotations" / name
    prompt_dir = root / "Prompts" / name
    for directory in (image_dir, mask_dir, prompt_dir):
        directory.mkdir(parents=True)
    writer: Optional[cv2.VideoWriter] = None
    visible_frames: Dict[str, int] = {}
    for t, frame in enumerate(frames):
        write_rgb(image_dir / frame_file_name(t, "jpg"), frame.image)
        write_label_png(mask_dir / frame_file_name(t, "png"), frame.label)
        if t == 0:
            write_label_png(prompt_dir / frame_file_name(0, "png"), frame.label)
        for obj in np.unique(frame.label):
            if obj:
                visible_frames[str(int(obj))] = visible_frames.get(str(int(obj)), 0) + 1
        if write_mp4:
            if writer is None:
                (root / "videos").mkdir(exist_ok=True)
                height, width = frame.label.shape
                path = root / "videos" / f"{name}.mp4"
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
                if not writer.isOpened():
                    raise OSError(f"cv2 could not open an mp4 writer for {path}")
            writer.write(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        bar.update(1)
    if writer is not None:
        writer.release()
    return {"num_frames": t + 1, "visible_frames": visible_frames}
