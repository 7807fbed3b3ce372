"""Prompts for video segmentation: parsing, validation and application to the predictor.

A :class:`Prompt` is one object's input on one frame: a mask, a box, points, or a box with
points. Sources:

* ``--prompt_type mask --mask_path first.png``: palette values become object ids;
* ``--prompt_type box --box x1 y1 x2 y2`` (object 1);
* ``--prompt_type point --points "x,y,label;x,y,label"`` (object 1; label 1 = positive);
* ``--prompts prompts.json``: any mix, per object and frame (format in docs/usage.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
from data.mask_io import read_label_png  # re-exported: callers read prompt masks with it
from utils.errors import UserError

PROMPT_TYPES = ("mask", "box", "point")


@dataclass
class Prompt:
    """One object's prompt on one frame. Coordinates are video pixels (x, y).

    ``mask``: bool ``[H, W]``; ``box``: ``[x1, y1, x2, y2]``; ``points``: ``[[x, y], ...]``
    with ``labels`` (1 positive, 0 negative).
    """

    obj_id: int
    frame_idx: int = 0
    mask: Optional[np.ndarray] = None
    box: Optional[List[float]] = None
    points: Optional[List[List[float]]] = None
    labels: Optional[List[int]] = None

    def validate(self, height: int, width: int, num_frames: Optional[int]) -> None:
        where = f"prompt for object {self.obj_id} on frame {self.frame_idx}"
        if not 0 < self.obj_id < 256:
            raise UserError(f"{where}: object ids must lie in 1..255 (palette PNG outputs)")
        if self.frame_idx < 0 or (num_frames is not None and self.frame_idx >= num_frames):
            raise UserError(f"{where}: frame index outside the video (0..{(num_frames or 1) - 1})")
        if self.mask is None and self.box is None and not self.points:
            raise UserError(f"{where}: needs a mask, a box or points")
        if self.mask is not None:
            if self.mask.shape != (height, width):
                raise UserError(
                    f"{where}: mask is {self.mask.shape[1]}x{self.mask.shape[0]} but the video is {width}x{height}"
                )
            if not self.mask.any():
                raise UserError(f"{where}: the mask is empty")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
                raise UserError(f"{where}: box {self.box} is outside the {width}x{height} frame or has no area")
        for x, y in self.points or []:
            if not (0 <= x <= width and 0 <= y <= height):
                raise UserError(f"{where}: point ({x}, {y}) is outside the {width}x{height} frame")


def parse_points(text: str) -> tuple:
    """``"x,y,label;x,y,label"`` -> (points, labels)."""
    points, labels = [], []
    for chunk in filter(None, (c.strip() for c in text.split(";"))):
        parts = [p.strip() for p in chunk.split(",")]
        try:
            if len(parts) != 3:
                raise ValueError
            x, y, label = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise UserError(f"cannot parse point {chunk!r} in --points {text!r}; expected 'x,y,label;x,y,label'") from None
        if label not in (0, 1):
            raise UserError(f"point label must be 1 (positive) or 0 (negative), got {label} in {chunk!r}")
        points.append([x, y])
        labels.append(label)
    if not points:
        raise UserError(f"--points {text!r} holds no points")
    return points, labels


def masks_from_label_png(path: Path, frame_idx: int = 0) -> List[Prompt]:
    """One mask prompt per non-zero id in a palette PNG."""
    labels = read_label_png(path)
    ids = [int(i) for i in np.unique(labels) if i != 0]
    if not ids:
        raise UserError(f"mask {path} is empty (no non-zero object ids)")
    return [Prompt(obj_id=i, frame_idx=frame_idx, mask=labels == i) for i in ids]


ENTRY_KEYS = ("obj_id", "frame", "mask", "mask_value", "box", "points")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_entry(entry, where: str) -> None:
    """The prompts-JSON schema of one entry (docs/usage.md); each breach is one line naming the key."""
    if not isinstance(entry, dict):
        raise UserError(f"{where} must be an object with keys {', '.join(ENTRY_KEYS)}")
    unknown = [k for k in entry if k not in ENTRY_KEYS]
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ENTRY_KEYS)}")
    if "obj_id" not in entry:
        raise UserError(f"{where}: 'obj_id' is required")
    for key in ("obj_id", "frame", "mask_value"):
        if key in entry and not _is_int(entry[key]):
            raise UserError(f"{where}: {key!r} must be an integer, got {entry[key]!r}")
    if "mask" in entry and not isinstance(entry["mask"], str):
        raise UserError(f"{where}: 'mask' must be a PNG path (a string), got {entry['mask']!r}")
    if "box" in entry:
        box = entry["box"]
        if not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))):
            raise UserError(f"{where}: 'box' must be 4 numbers [x1, y1, x2, y2], got {box!r}")
    if "points" in entry:
        points = entry["points"]
        if not isinstance(points, list) or not points:
            raise UserError(f"{where}: 'points' must be a non-empty list of [x, y, label]")
        for point in points:
            if not (isinstance(point, list) and len(point) == 3 and _is_number(point[0]) and _is_number(point[1])):
                raise UserError(f"{where}: point {point!r} must be [x, y, label] with numbers x, y")
            if not _is_int(point[2]) or point[2] not in (0, 1):
                raise UserError(f"{where}: point {point!r} has label {point[2]!r}; labels are 1 (positive) or 0 (negative)")


def prompts_from_json(path: Path) -> List[Prompt]:
    """Read ``{"prompts": [{"obj_id": 1, "frame": 0, "mask"|"box"|"points": ...}, ...]}``.

    ``mask`` is a PNG path (relative to the JSON file) whose non-zero pixels, or pixels equal
    to ``mask_value`` if given, are the object; ``points`` is ``[[x, y, label], ...]``.
    Unknown keys, labels other than 0/1 and non-integer ids or frames are errors.
    """
    try:
        spec = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"prompts file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"prompts file {path} is not valid JSON: {exc}") from exc
    if isinstance(spec, dict):
        unknown = [k for k in spec if k != "prompts"]
        if unknown:
            raise UserError(f"prompts file {path}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                            f"expected only 'prompts'")
    entries = spec.get("prompts") if isinstance(spec, dict) else spec
    if not isinstance(entries, list) or not entries:
        raise UserError(f"prompts file {path} must hold a non-empty list under 'prompts'")
    prompts = []
    for n, entry in enumerate(entries):
        _check_entry(entry, f"prompts file {path}: entry {n}")
        prompt = Prompt(obj_id=entry["obj_id"], frame_idx=entry.get("frame", 0))
        if "mask" in entry:
            labels = read_label_png(Path(path).parent / entry["mask"])
            value = entry.get("mask_value")
            prompt.mask = labels == value if value is not None else labels != 0
        if "box" in entry:
            prompt.box = [float(v) for v in entry["box"]]
        if "points" in entry:
            prompt.points = [[float(p[0]), float(p[1])] for p in entry["points"]]
            prompt.labels = [int(p[2]) for p in entry["points"]]
        prompts.append(prompt)
    return prompts


@dataclass(frozen=True)
class PromptSpec:
    """How the prompts of one video are given (``predict_video.py``'s prompt flags).

    ``json_path`` (``--prompts``) wins over the rest; otherwise ``prompt_type`` picks
    ``mask_path``, ``box`` (object 1) or ``points`` (object 1, ``"x,y,label;..."``), all on
    ``frame``.
    """

    prompt_type: str = "mask"
    mask_path: Optional[str] = None
    box: Optional[Sequence[float]] = None
    points: Optional[str] = None
    frame: int = 0
    json_path: Optional[str] = None

    @property
    def wants_vos_annotations(self) -> bool:
        """A mask prompt with no mask given: take the first-frame ground truth of a VOS tree."""
        return self.prompt_type == "mask" and not self.mask_path and not self.json_path


def build_prompts(spec: PromptSpec) -> List[Prompt]:
    """The prompts a :class:`PromptSpec` describes."""
    if spec.json_path:
        return prompts_from_json(Path(spec.json_path))
    if spec.prompt_type not in PROMPT_TYPES:
        raise UserError(f"unknown prompt type {spec.prompt_type!r}; choose one of {', '.join(PROMPT_TYPES)}")
    frame = spec.frame
    if spec.prompt_type == "mask":
        if not spec.mask_path:
            raise UserError("--prompt_type mask needs --mask_path (or a VOS dataset folder with Annotations)")
        return masks_from_label_png(Path(spec.mask_path), frame)
    if spec.prompt_type == "box":
        if not spec.box:
            raise UserError("--prompt_type box needs --box x1 y1 x2 y2")
        return [Prompt(obj_id=1, frame_idx=frame, box=list(spec.box))]
    if not spec.points:
        raise UserError('--prompt_type point needs --points "x,y,label;..."')
    points, labels = parse_points(spec.points)
    return [Prompt(obj_id=1, frame_idx=frame, points=points, labels=labels)]
