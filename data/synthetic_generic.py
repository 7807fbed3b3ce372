"""Generic (non-surgical) synthetic videos: the pretraining domain, as SA-V is to EndoVis.

``data/synthetic.py --domain generic``. Where a surgical video (data/synthetic_scene.py) has
reddish tissue and grey instruments that enter from a border and pivot about a trocar, a
generic video has:

* a natural-ish scene of any hue: value noise through a random 3-colour palette, with
  stripes and unlabelled blobs (distractors) baked in, seen through a camera that pans
  (70% of videos; ~0.2-0.8% of the side per frame, 1-3% in fast videos) and zooms a little;
* 1-3 free-floating objects of varied shape (ellipse, rectangle, polygon, star) and texture
  (gradient, stripes, checks, noise, spots) in any colour. Each moves with momentum and
  bounces inside the frame, rotates, and changes scale (about x0.5-1.8 over the video);
* motion ``slow`` (``smooth``: 0.3-1.2% of the side per frame) or ``fast``, where each
  object is ``fast`` (3-7%, smooth turns) or ``erratic`` (2-5%, direction and speed
  redrawn every 3-8 frames).

Masks are exact: an object's pixels are painted exactly on its filled polygon (no
anti-aliasing), later objects over earlier ones; the final light blur of the whole frame
softens edges by about one pixel, as in the surgical videos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Tuple

import cv2
import numpy as np

from data.synthetic_scene import fractal_noise

SHAPES = ("ellipse", "rectangle", "polygon", "star")
TEXTURES = ("gradient", "stripes", "checks", "noise", "spots")
# Object speed ranges, fraction of the shorter frame side per frame.
_SPEED_RANGE = {"smooth": (0.003, 0.012), "fast": (0.03, 0.07), "erratic": (0.02, 0.05)}
_SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices


@dataclass
class GenericObject:
    """One object's look and trajectory (arrays of length T).

    outline: ``[K, 2]`` polygon in px at scale 1, around (0, 0); texture: ``[S, S, 3]``
    float32 RGB whose centre is the outline's (0, 0).
    """

    shape: str
    texture_kind: str
    outline: np.ndarray
    texture: np.ndarray
    centres: np.ndarray  # [T, 2] xy in frame px
    angles: np.ndarray  # [T] radians
    scales: np.ndarray  # [T]
    motion: str
    speed: float  # px / frame
    hidden: List[int] = field(default_factory=list)  # not used: objects stay in view

    def transform(self, t: int) -> np.ndarray:
        """``[2, 3]`` affine map from object px (scale 1) to frame px at frame ``t``."""
        c, s = np.cos(self.angles[t]) * self.scales[t], np.sin(self.angles[t]) * self.scales[t]
        return np.array([[c, -s, self.centres[t, 0]], [s, c, self.centres[t, 1]]])


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """Any hue, varied saturation and value: ``[3]`` float32 RGB."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(40, 256), rng.integers(60, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def shape_outline(rng: np.random.Generator, shape: str, radius: float) -> np.ndarray:
    """``[K, 2]`` vertices of a ``shape`` of about ``radius`` px around (0, 0)."""
    if shape == "ellipse":
        a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        points = np.stack([np.cos(a), rng.uniform(0.4, 1.0) * np.sin(a)], axis=1)
    elif shape == "rectangle":
        h = rng.uniform(0.3, 1.0)
        points = np.array([[-1, -h], [1, -h], [1, h], [-1, h]], float) / np.hypot(1, h)
    elif shape == "polygon":
        a = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 9))))
        points = rng.uniform(0.6, 1.0, a.size)[:, None] * np.stack([np.cos(a), np.sin(a)], axis=1)
    else:  # star
        k = int(rng.integers(4, 7))
        a = np.linspace(0, 2 * np.pi, 2 * k, endpoint=False)
        r = np.where(np.arange(2 * k) % 2 == 0, 1.0, rng.uniform(0.35, 0.6))
        points = r[:, None] * np.stack([np.cos(a), np.sin(a)], axis=1)
    return points * radius


def texture_patch(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """An ``[size, size, 3]`` float32 RGB texture of ``kind`` in random colours, lit from one side."""
    a, b = random_colour(rng), random_colour(rng)
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) - size / 2) / max(size, 1)
    theta = rng.uniform(0, 2 * np.pi)
    along = np.cos(theta) * xx + np.sin(theta) * yy  # [-0.7, 0.7]
    if kind == "gradient":
        mix = np.clip(along + 0.5, 0, 1)
    elif kind == "stripes":
        mix = (np.sin(2 * np.pi * rng.uniform(2, 6) * along) > 0).astype(np.float32)
    elif kind == "checks":
        cells = rng.uniform(3, 7)
        mix = ((np.floor((xx + 1) * cells) + np.floor((yy + 1) * cells)) % 2).astype(np.float32)
    elif kind == "noise":
        mix = fractal_noise(rng, size, size, (2, 4, 8))
    else:  # spots
        mix = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(4, 12))):
            centre = rng.uniform(0, size, 2)
            cv2.circle(mix, (int(centre[0]), int(centre[1])), max(1, int(rng.uniform(0.04, 0.12) * size)), 1.0, -1)
    patch = a + (b - a) * mix[..., None]
    light = 0.8 + 0.4 * np.clip(0.5 - (np.cos(theta + 1.0) * xx + np.sin(theta + 1.0) * yy), 0, 1)
    return np.clip(patch * light[..., None], 0, 255).astype(np.float32)


def _trajectory(rng, num_frames: int, height: int, width: int, motion: str, speed: float) -> np.ndarray:
    """Centres ``[T, 2]``: momentum with random turns, reflected inside the central 80% of the frame."""
    low, high = np.array([0.1 * width, 0.1 * height]), np.array([0.9 * width, 0.9 * height])
    position = rng.uniform([0.25 * width, 0.25 * height], [0.75 * width, 0.75 * height])
    heading, step = rng.uniform(0, 2 * np.pi), speed
    turn = 0.08 if motion == "smooth" else 0.15
    next_change = int(rng.integers(3, 9))
    out = np.zeros((num_frames, 2))
    for t in range(num_frames):
        out[t] = position
        if motion == "erratic" and t == next_change:
            heading, step = rng.uniform(0, 2 * np.pi), speed * rng.uniform(0.5, 1.5)
            next_change = t + int(rng.integers(3, 9))
        heading += rng.normal(0, turn)
        velocity = step * np.array([np.cos(heading), np.sin(heading)])
        position = position + velocity
        for k in (0, 1):  # bounce off the box
            if position[k] < low[k] or position[k] > high[k]:
                position[k] = 2 * (low[k] if position[k] < low[k] else high[k]) - position[k]
                velocity[k] = -velocity[k]
        position = np.clip(position, low, high)
        heading = float(np.arctan2(velocity[1], velocity[0]))
    return out


def plan_objects(rng: np.random.Generator, num_frames: int, height: int, width: int, speed: str) -> List[GenericObject]:
    """1-3 random objects and their trajectories for one video of ``speed`` (slow or fast)."""
    side = float(min(height, width))
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        shape = SHAPES[int(rng.integers(0, len(SHAPES)))]
        kind = TEXTURES[int(rng.integers(0, len(TEXTURES)))]
        radius = float(rng.uniform(0.07, 0.2) * side)
        outline = shape_outline(rng, shape, radius)
        texture = texture_patch(rng, kind, int(2 * radius) + 4)
        motion = "smooth" if speed == "slow" else ("fast" if rng.random() < 0.5 else "erratic")
        object_speed = float(rng.uniform(*_SPEED_RANGE[motion]) * side)
        centres = _trajectory(rng, num_frames, height, width, motion, object_speed)
        t = np.arange(num_frames)
        spin = rng.normal(0, np.radians(2.0 if motion == "smooth" else 8.0))
        angles = rng.uniform(0, 2 * np.pi) + spin * t
        pulse = rng.uniform(0.0, 0.35) * np.sin(2 * np.pi * rng.uniform(0.01, 0.06 if motion == "smooth" else 0.12) * t
                                                 + rng.uniform(0, 2 * np.pi))
        trend = rng.uniform(-0.3, 0.3) * t / max(num_frames - 1, 1)
        scales = np.clip(np.exp(pulse + trend), 0.5, 1.8)
        objects.append(GenericObject(shape, kind, outline, texture, centres, angles, scales, motion, object_speed))
    return objects


class GenericBackground:
    """A palette-mapped noise scene with stripes and distractor blobs, viewed by a panning camera."""

    def __init__(self, rng: np.random.Generator, num_frames: int, height: int, width: int, speed: str):
        side = min(height, width)
        self.height, self.width = height, width
        self.pad = int(round(0.3 * side)) + 4
        ch, cw = height + 2 * self.pad, width + 2 * self.pad
        palette = np.stack([random_colour(rng) for _ in range(3)])
        value = fractal_noise(rng, ch, cw, (2, 4, 8, 16, 32))
        canvas = np.stack([np.interp(value, [0.0, 0.5, 1.0], palette[:, k]) for k in range(3)], axis=-1)
        if rng.random() < 0.5:  # stripes: fences, furrows, planks
            yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32) / side
            theta = rng.uniform(0, np.pi)
            stripes = np.sin(2 * np.pi * rng.uniform(3, 10) * (np.cos(theta) * xx + np.sin(theta) * yy)) > 0.3
            canvas = canvas * (1 - 0.35 * stripes[..., None]) + 0.35 * stripes[..., None] * random_colour(rng)
        blobs = np.zeros((ch, cw, 3), np.float32)
        alpha = np.zeros((ch, cw), np.float32)
        for _ in range(int(rng.integers(3, 9))):  # unlabelled things that look like objects
            centre = rng.uniform([0, 0], [cw, ch])
            axes = rng.uniform(0.04, 0.15, 2) * side
            one = np.zeros((ch, cw), np.float32)
            cv2.ellipse(one, (int(centre[0]), int(centre[1])), (int(axes[0]) + 1, int(axes[1]) + 1),
                        float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
            blobs[one > 0] = random_colour(rng)
            alpha = np.maximum(alpha, one)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 0.01 * side + 0.5)[..., None] * 0.8
        canvas = canvas * (1 - alpha) + blobs * alpha
        canvas += (rng.random((ch, cw, 1), dtype=np.float32) - 0.5) * 20.0
        self.canvas = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
        # Camera: a pan with momentum, reflected within the canvas margin, and a slow zoom.
        self.camera = np.zeros((num_frames, 2))
        if rng.random() < 0.7:
            pan = rng.uniform(*((0.002, 0.008) if speed == "slow" else (0.01, 0.03))) * side
            heading, position, limit = rng.uniform(0, 2 * np.pi), np.zeros(2), 0.6 * self.pad
            for t in range(num_frames):
                self.camera[t] = position
                heading += rng.normal(0, 0.05)
                position = position + pan * np.array([np.cos(heading), np.sin(heading)])
                for k in (0, 1):
                    if abs(position[k]) > limit:
                        position[k] = np.sign(position[k]) * (2 * limit - abs(position[k]))
                        heading = np.pi - heading if k == 0 else -heading
        zoom = rng.uniform(0.0, 0.08)
        self.zooms = 1.0 + zoom * np.sin(2 * np.pi * rng.uniform(0.005, 0.03) * np.arange(num_frames)
                                         + rng.uniform(0, 2 * np.pi))
        self.gains = 1.0 + rng.uniform(0.0, 0.1) * np.sin(2 * np.pi * rng.uniform(0.01, 0.05) * np.arange(num_frames))

    def frame(self, t: int) -> np.ndarray:
        """The view at frame ``t``: ``[H, W, 3]`` float32 RGB."""
        s = self.zooms[t]
        cx, cy = self.pad + self.width / 2 + self.camera[t, 0], self.pad + self.height / 2 + self.camera[t, 1]
        matrix = np.array([[s, 0, cx - s * self.width / 2], [0, s, cy - s * self.height / 2]], np.float32)
        view = cv2.warpAffine(self.canvas, matrix, (self.width, self.height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        return view.astype(np.float32) * np.float32(self.gains[t])


def render_generic_video(
    rng: np.random.Generator, num_frames: int, height: int, width: int, speed: str
) -> Tuple[List[GenericObject], np.ndarray, Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Plan one generic video; returns its objects, the camera ``[T, 2]`` and lazy frames
    ``(image uint8 [H, W, 3], label uint8 [H, W], full masks bool [K, H, W])``."""
    if speed not in ("slow", "fast"):
        raise ValueError(f"video speed must be slow or fast, got {speed!r}")
    background = GenericBackground(rng, num_frames, height, width, speed)
    objects = plan_objects(rng, num_frames, height, width, speed)
    noise_pad = 16
    noise = rng.normal(0.0, 2.5, size=(height + noise_pad, width + noise_pad, 3)).astype(np.float32)
    offsets = rng.integers(0, noise_pad, size=(num_frames, 2))

    def frames():
        for t in range(num_frames):
            image = background.frame(t)
            label = np.zeros((height, width), np.uint8)
            full = np.zeros((len(objects), height, width), bool)
            for obj, item in enumerate(objects, start=1):
                matrix = item.transform(t)
                points = item.outline @ matrix[:, :2].T + matrix[:, 2]
                mask = np.zeros((height, width), np.uint8)
                cv2.fillPoly(mask, [np.round(points * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
                mask = mask.astype(bool)
                if not mask.any():
                    continue
                # texture px -> object px (centre at size/2) -> frame px
                size = item.texture.shape[0]
                to_frame = matrix @ np.array([[1, 0, -size / 2], [0, 1, -size / 2], [0, 0, 1]])
                painted = cv2.warpAffine(item.texture, to_frame.astype(np.float32), (width, height),
                                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                image[mask] = painted[mask]
                full[obj - 1] = mask
                label[mask] = obj
            image = cv2.GaussianBlur(image, (3, 3), 0.6)
            oy, ox = offsets[t]
            cv2.add(image, noise[oy:oy + height, ox:ox + width], dst=image)
            yield cv2.convertScaleAbs(image), label, full

    return objects, background.camera, frames()
