"""Drawing for the synthetic surgical videos: tissue background and instrument-like objects.

Pure numpy + cv2. Object masks are filled with ``cv2.fillConvexPoly`` without anti-aliasing
(``LINE_8``, 4-bit sub-pixel coordinates), and the image is painted exactly on those mask
pixels, so masks and pixels agree; only the final light blur of the whole frame softens
edges by about one pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

_SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices
_SCALE = float(1 << _SHIFT)

# Part codes inside one instrument.
SHAFT, WRIST, JAW = 1, 2, 3


def _noise_field(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1]: a ``cells``-wide random grid resized bicubically."""
    grid = rng.random((max(cells * height // max(width, 1), 2), max(cells, 2))).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def fractal_noise(rng: np.random.Generator, height: int, width: int, octaves=(3, 6, 12, 24, 48)) -> np.ndarray:
    total = np.zeros((height, width), np.float32)
    weight_sum = 0.0
    for level, cells in enumerate(octaves):
        weight = 0.55**level
        total += weight * _noise_field(rng, height, width, cells)
        weight_sum += weight
    total /= weight_sum
    low, high = np.percentile(total, [1, 99])
    return np.clip((total - low) / max(high - low, 1e-6), 0.0, 1.0)


class TissueBackground:
    """Reddish tissue with vessels, fat, fine texture and moving specular highlights.

    A canvas larger than the frame is drawn once per video; each frame is a slowly drifting
    and "breathing" view of it plus time-varying highlights.
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int, drift: float):
        self.height, self.width = height, width
        self.pad = int(round(0.08 * max(height, width))) + 2
        ch, cw = height + 2 * self.pad, width + 2 * self.pad
        base = fractal_noise(rng, ch, cw)[..., None]
        fat = np.clip((fractal_noise(rng, ch, cw, (2, 4, 8)) - 0.62) * 4.0, 0.0, 1.0)[..., None]
        dark = np.array(rng.uniform([95, 18, 22], [130, 35, 40]), np.float32)
        light = np.array(rng.uniform([200, 85, 80], [235, 125, 115]), np.float32)
        fat_colour = np.array(rng.uniform([205, 150, 95], [235, 185, 125]), np.float32)
        canvas = dark + (light - dark) * base
        canvas = canvas * (1 - 0.7 * fat) + fat_colour * 0.7 * fat
        vessels = np.zeros((ch, cw), np.float32)
        for _ in range(int(rng.integers(4, 9))):
            point = rng.uniform([0, 0], [cw, ch])
            heading = rng.uniform(0, 2 * np.pi)
            points = [point.copy()]
            for _ in range(int(rng.integers(8, 20))):
                heading += rng.normal(0, 0.35)
                point = point + 0.04 * max(ch, cw) * np.array([np.cos(heading), np.sin(heading)])
                points.append(point.copy())
            poly = np.round(np.array(points) * _SCALE).astype(np.int32)
            thickness = int(rng.integers(1, 4))
            cv2.polylines(vessels, [poly], False, 1.0, thickness, cv2.LINE_AA, _SHIFT)
        vessels = cv2.GaussianBlur(vessels, (0, 0), 1.2)[..., None]
        canvas = canvas * (1 - 0.55 * vessels) + np.array([85, 8, 18], np.float32) * 0.55 * vessels
        canvas += (rng.random((ch, cw, 1), dtype=np.float32) - 0.5) * 14.0
        glare = self._highlight_layer(rng, ch, cw)
        # One uint8 RGBA canvas (A = specular glare), so each frame needs a single warp.
        self.canvas = np.dstack([np.clip(canvas + 0.5, 0, 255), np.clip(glare * 255 + 0.5, 0, 255)]).astype(np.uint8)
        self.drift = drift * min(height, width)
        self.drift_freq = rng.uniform(0.01, 0.03, size=2)
        self.drift_phase = rng.uniform(0, 2 * np.pi, size=3)
        self.breath_freq = rng.uniform(0.03, 0.06)
        self.highlight_freq = rng.uniform(0.05, 0.15)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        radius2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
        self.vignette = cv2.merge([1.0 - 0.28 * radius2] * 3).astype(np.float32)

    @staticmethod
    def _highlight_layer(rng: np.random.Generator, ch: int, cw: int) -> np.ndarray:
        layer = np.zeros((ch, cw), np.float32)
        size = min(ch, cw)
        for _ in range(int(rng.integers(10, 22))):
            centre = rng.uniform([0, 0], [cw, ch])
            axes = rng.uniform(0.004, 0.02, size=2) * size
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(
                layer, (int(centre[0]), int(centre[1])), (max(int(axes[0]), 1), max(int(axes[1]), 1)),
                angle, 0, 360, float(rng.uniform(0.6, 1.0)), -1, cv2.LINE_AA,
            )
        return cv2.GaussianBlur(layer, (0, 0), 0.004 * size + 0.8)

    def frame(self, t: float, shift=(0.0, 0.0)) -> np.ndarray:
        """Background at time ``t``, the view moved by ``shift`` px (xy): ``[H, W, 3]`` float32 RGB."""
        dx = self.drift * np.sin(2 * np.pi * self.drift_freq[0] * t + self.drift_phase[0]) - shift[0]
        dy = self.drift * np.sin(2 * np.pi * self.drift_freq[1] * t + self.drift_phase[1]) - shift[1]
        scale = 1.0 + 0.015 * np.sin(2 * np.pi * self.breath_freq * t + self.drift_phase[2])
        cx, cy = self.pad + self.width / 2 + dx, self.pad + self.height / 2 + dy
        matrix = np.array(
            [[scale, 0, cx - scale * self.width / 2], [0, scale, cy - scale * self.height / 2]], np.float32
        )
        size = (self.width, self.height)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        rgba = cv2.warpAffine(self.canvas, matrix, size, flags=flags, borderMode=cv2.BORDER_REFLECT)
        view = rgba[..., :3].astype(np.float32)
        flicker = (0.75 + 0.25 * np.sin(2 * np.pi * self.highlight_freq * t)) / 255.0
        glare = cv2.merge([rgba[..., 3].astype(np.float32) * np.float32(flicker)] * 3)
        # view + (250 - view) * glare
        return cv2.add(view, cv2.multiply(cv2.subtract(250.0, view), glare))


@dataclass(frozen=True)
class InstrumentLook:
    """Appearance of one instrument: base colours (RGB) and sizes in pixels."""

    shaft_colour: Tuple[float, float, float]
    metal_colour: Tuple[float, float, float]
    half_width: float
    wrist_length: float
    jaw_length: float

    @staticmethod
    def random(rng: np.random.Generator, size: float) -> "InstrumentLook":
        kind = rng.integers(0, 3)
        if kind == 0:  # dark composite shaft (da Vinci style)
            shaft = rng.uniform(30, 55)
        elif kind == 1:  # black plastic
            shaft = rng.uniform(18, 30)
        else:  # bare metal
            shaft = rng.uniform(140, 175)
        tint = rng.uniform(-4, 4, size=3)
        metal = rng.uniform(150, 190)
        return InstrumentLook(
            shaft_colour=tuple(float(shaft + v) for v in tint),
            metal_colour=tuple(float(metal + v) for v in rng.uniform(-5, 5, size=3)),
            half_width=float(rng.uniform(0.035, 0.055) * size),
            wrist_length=float(rng.uniform(0.05, 0.08) * size),
            jaw_length=float(rng.uniform(0.08, 0.12) * size),
        )


def instrument_polygons(
    pivot: np.ndarray, tip: np.ndarray, opening: float, look: InstrumentLook
) -> List[Tuple[int, np.ndarray]]:
    """Convex polygons ``(part code, [K, 2] xy)`` of an instrument from ``pivot`` to ``tip``.

    The shaft runs from behind the pivot to the wrist; two triangular jaws open by
    ``opening`` radians at the tip.
    """
    axis = tip - pivot
    length = float(np.hypot(*axis))
    u = axis / max(length, 1e-6)
    n = np.array([-u[1], u[0]])
    hw = look.half_width
    wrist_start = tip - u * look.wrist_length
    back = pivot - u * 4 * hw
    shaft = np.array([back + n * hw, wrist_start + n * hw, wrist_start - n * hw, back - n * hw])
    whw = 0.85 * hw
    wrist = np.array([wrist_start + n * whw, tip + n * whw, tip - n * whw, wrist_start - n * whw])
    parts = [(SHAFT, shaft), (WRIST, wrist)]
    for sign in (1.0, -1.0):
        angle = sign * opening / 2
        direction = np.cos(angle) * u + np.sin(angle) * n
        apex = tip + direction * look.jaw_length
        base_out = tip + sign * n * 0.75 * hw
        base_in = tip - sign * n * 0.1 * hw
        parts.append((JAW, np.array([base_out, apex, base_in])))
    return parts


def fill_polygons(parts: List[Tuple[int, np.ndarray]], height: int, width: int) -> np.ndarray:
    """Rasterise part polygons (no anti-aliasing) into a ``[H, W]`` uint8 part-code map."""
    canvas = np.zeros((height, width), np.uint8)
    for code, poly in parts:
        pts = np.round(np.asarray(poly) * _SCALE).astype(np.int32)
        cv2.fillConvexPoly(canvas, pts, int(code), cv2.LINE_8, _SHIFT)
    return canvas


def polygons_bbox(parts: List[Tuple[int, np.ndarray]], height: int, width: int) -> Tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the polygons clipped to the frame (may be empty)."""
    points = np.concatenate([poly for _, poly in parts])
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
    return max(y0, 0), min(max(y1, 0), height), max(x0, 0), min(max(x1, 0), width)


def shade_instrument(
    part_map: np.ndarray, pivot: np.ndarray, tip: np.ndarray, look: InstrumentLook, bbox=None
) -> Tuple[Tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Metallic cylinder shading for the pixels of ``part_map`` (inside ``bbox`` if given).

    Returns ``((ys, xs), colours [P, 3] float32)`` for the P object pixels.
    """
    y0, y1, x0, x1 = bbox if bbox is not None else (0, part_map.shape[0], 0, part_map.shape[1])
    ys, xs = np.nonzero(part_map[y0:y1, x0:x1])
    codes = part_map[y0:y1, x0:x1][ys, xs]
    ys, xs = ys + y0, xs + x0
    axis = tip - pivot
    u = axis / max(float(np.hypot(*axis)), 1e-6)
    n = np.array([-u[1], u[0]], np.float32)
    across = ((xs - pivot[0]) * n[0] + (ys - pivot[1]) * n[1]) / look.half_width
    across = np.clip(across.astype(np.float32), -1.0, 1.0)
    shade = np.sqrt(np.clip(1.0 - across * across, 0.0, 1.0))
    base = np.where(codes[:, None] == SHAFT, np.float32(look.shaft_colour), np.float32(look.metal_colour))
    colour = base * (0.35 + 0.65 * shade)[:, None]
    specular = np.exp(-(((across - 0.35) / 0.12) ** 2)).astype(np.float32)
    strength = np.where(codes == SHAFT, 70.0 if look.shaft_colour[0] < 100 else 90.0, 110.0).astype(np.float32)
    colour = colour + (specular * strength)[:, None]
    return (ys, xs), np.clip(colour, 0, 255).astype(np.float32)


def cast_shadow(image: np.ndarray, mask: np.ndarray, offset: Tuple[int, int], blur: int, strength: float) -> None:
    """Darken ``image`` in place under a shifted, blurred copy of ``mask`` (soft shadow)."""
    height, width = mask.shape
    dx, dy = offset
    shifted = np.zeros((height, width), np.uint8)
    shifted[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = mask[
        max(-dy, 0):height - max(dy, 0), max(-dx, 0):width - max(dx, 0)
    ]
    shadow = cv2.blur(shifted, (blur, blur)).astype(np.float32) * (-strength)
    shadow += 1.0
    cv2.multiply(image, cv2.merge([shadow] * 3), dst=image)
