"""EndoVis2018 (Robotic Scene Segmentation) -> VOS layout.

Raw layout (``seq_N`` may also sit one folder deeper, e.g. in the challenge's
``miccai_challenge_2018_release_1``)::

    seq_N/left_frames/frameNNN.png   1280x1024 RGB
    seq_N/labels/frameNNN.png        RGB colour-coded scene classes

Object modes:

* ``scene`` (default): object id = scene class id (table below); ``classes`` keeps a subset.
  A colour outside the table is an error naming the file, the pixel and the colour.
* ``instrument_type``: ISINet's instrument-type annotations. Per-instance binary PNGs in
  ``seq_N/<isinet_folder>/`` (default ``instrument_labels``) whose names contain the frame
  (``frameNNN``) and the class (``classC``, optionally ``instK``); object id = ``C``, all
  instances of a class merged.
* ``instrument_instance``: the same files, one object per ``(class, inst)`` pair, ids 1..K
  in order of first appearance. ISINet numbers instances per frame, so identities are only
  reliable when a class has one instance in view.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from data.endovis import (
    SourceVideo, check_out_dir, check_split_outputs, find_sequence_dir, list_raw_frames, prepare_split, require_dir,
    require_file, resolve_splits,
)
from data.mask_io import frame_number, read_rgb
from utils.errors import UserError

log = logging.getLogger(__name__)

# (name, RGB); the object id is the position + 1. (0, 0, 0) is background.
SCENE_CLASSES: List[Tuple[str, Tuple[int, int, int]]] = [
    ("instrument-shaft", (0, 255, 0)),
    ("instrument-clasper", (0, 255, 255)),
    ("instrument-wrist", (125, 255, 12)),
    ("kidney-parenchyma", (255, 55, 0)),
    ("covered-kidney", (24, 55, 125)),
    ("thread", (187, 155, 25)),
    ("clamps", (0, 255, 125)),
    ("suturing-needle", (255, 255, 125)),
    ("suction-instrument", (123, 15, 175)),
    ("small-intestine", (124, 155, 5)),
    ("ultrasound-probe", (12, 255, 141)),
]
SCENE_CLASS_NAMES: Dict[int, str] = {i + 1: name for i, (name, _) in enumerate(SCENE_CLASSES)}
SPLITS: Dict[str, List[int]] = {
    "train": [1, 3, 4, 6, 7, 10, 11, 12, 13, 14, 16],
    "valid": [2, 5, 9, 15],
}
OBJECT_MODES = ("scene", "instrument_type", "instrument_instance")
_UNKNOWN = 255


def colour_lookup(classes: Optional[Sequence[int]] = None) -> np.ndarray:
    """``[2**24]`` uint8 table from packed RGB to object id (255 = unknown colour).

    Classes not in ``classes`` map to 0 (background) but are still known colours.
    """
    keep = set(SCENE_CLASS_NAMES) if classes is None else {int(c) for c in classes}
    unknown = keep - set(SCENE_CLASS_NAMES)
    if unknown:
        raise UserError(f"unknown EndoVis2018 class ids {sorted(unknown)}; valid ids are 1..{len(SCENE_CLASSES)}")
    table = np.full(1 << 24, _UNKNOWN, np.uint8)
    table[0] = 0
    for class_id, (_, (r, g, b)) in enumerate(SCENE_CLASSES, start=1):
        table[(r << 16) | (g << 8) | b] = class_id if class_id in keep else 0
    return table


def decode_scene_label(rgb: np.ndarray, table: np.ndarray, path) -> np.ndarray:
    """Map an ``[H, W, 3]`` colour label to object ids; an unknown colour raises UserError."""
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    label = table[packed]
    bad = np.argwhere(label == _UNKNOWN)
    if bad.size:
        y, x = (int(v) for v in bad[0])
        colour = tuple(int(v) for v in rgb[y, x])
        raise UserError(
            f"{path}: unknown colour {colour} at pixel (x={x}, y={y}); "
            f"{len(bad)} pixels have colours outside the EndoVis2018 class table"
        )
    return label


def _read_colour_label(path: Path) -> np.ndarray:
    with Image.open(require_file(path)) as image:
        return np.array(image.convert("RGB"), dtype=np.uint8)


def isinet_files(folder: Path) -> Dict[int, List[Tuple[int, int, Path]]]:
    """ISINet per-instance files grouped by frame: ``{frame: [(class, inst, path), ...]}``."""
    grouped: Dict[int, List[Tuple[int, int, Path]]] = {}
    for path in sorted(require_dir(folder).glob("*.png")):
        frame = re.search(r"frame(\d+)", path.name)
        klass = re.search(r"class(\d+)", path.name)
        if not frame or not klass:
            log.warning("ignoring %s: name lacks frameNNN or classC", path)
            continue
        inst = re.search(r"inst(\d+)", path.name)
        grouped.setdefault(int(frame.group(1)), []).append(
            (int(klass.group(1)), int(inst.group(1)) if inst else 0, path)
        )
    return grouped


def _read_binary(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        array = np.array(image)
    return (array.max(axis=2) if array.ndim == 3 else array) > 0


def endovis18_video(
    seq_dir: Path, objects: str = "scene", classes: Optional[Sequence[int]] = None,
    isinet_dir: Optional[Path] = None, table: Optional[np.ndarray] = None,
) -> SourceVideo:
    """A :class:`SourceVideo` for one ``seq_N`` folder (``isinet_dir``: its ISINet folder)."""
    if objects not in OBJECT_MODES:
        raise UserError(f"--objects must be one of {OBJECT_MODES}, got {objects!r}")
    frames = list_raw_frames(seq_dir / "left_frames")
    numbers = [frame_number(p.name) for p in frames]
    names: Dict[int, str]
    if objects == "scene":
        table = colour_lookup(classes) if table is None else table
        labels_dir = require_dir(seq_dir / "labels")
        for path in frames:
            require_file(labels_dir / path.name)
        keep = SCENE_CLASS_NAMES if classes is None else {c: SCENE_CLASS_NAMES[c] for c in classes}
        names = dict(keep)
    else:
        if isinet_dir is None:
            raise UserError("instrument objects need ISINet annotations (--isinet_folder)")
        per_frame = isinet_files(isinet_dir)
        if objects == "instrument_type":
            names = {c: f"class {c}" for files in per_frame.values() for c, _, _ in files}
        else:
            pairs: Dict[Tuple[int, int], int] = {}
            for number in numbers:
                for c, k, _ in sorted(per_frame.get(number, []), key=lambda e: (e[0], e[1])):
                    pairs.setdefault((c, k), len(pairs) + 1)
            if len(pairs) > 255:
                raise UserError(f"{isinet_dir}: more than 255 instrument instances")
            names = {obj: f"class {c} instance {k}" for (c, k), obj in pairs.items()}

    def load(position: int) -> Tuple[np.ndarray, np.ndarray]:
        frame_path = frames[position]
        rgb = read_rgb(frame_path)
        if objects == "scene":
            label_path = seq_dir / "labels" / frame_path.name
            label = decode_scene_label(_read_colour_label(label_path), table, label_path)
        else:
            label = np.zeros(rgb.shape[:2], np.uint8)
            for c, k, path in sorted(per_frame.get(numbers[position], []), key=lambda e: (e[0], e[1])):
                mask = _read_binary(path)
                if mask.shape != label.shape:
                    raise UserError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, frame is "
                                    f"{label.shape[1]}x{label.shape[0]}")
                label[mask] = c if objects == "instrument_type" else pairs[(c, k)]
        if label.shape != rgb.shape[:2]:
            raise UserError(f"{frame_path}: frame is {rgb.shape[1]}x{rgb.shape[0]} but its label is "
                            f"{label.shape[1]}x{label.shape[0]}")
        return rgb, label

    return SourceVideo(
        name=seq_dir.name, source=str(seq_dir.resolve()), frame_numbers=numbers, load=load, object_names=names,
    )


def prepare_endovis18(
    raw_dir, out_dir, splits: Optional[Iterable[str]] = None, objects: str = "scene",
    classes: Optional[Sequence[int]] = None, isinet_root=None, isinet_folder: str = "instrument_labels",
    image_format: str = "jpg", overwrite: bool = False,
) -> Dict[str, Dict]:
    """Convert EndoVis2018 into ``out_dir/<split>/...``; returns ``{split: meta}``.

    Splits are the standard ``train``/``valid`` unless ``splits`` (``NAME=IDS``) are given.
    ISINet folders are looked up as ``<isinet_root or raw_dir>/[*/]seq_N/<isinet_folder>``.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    check_out_dir(out_dir, raw_dir, isinet_root=isinet_root)
    if objects not in OBJECT_MODES:
        raise UserError(f"--objects must be one of {OBJECT_MODES}, got {objects!r}")
    if classes is not None and objects != "scene":
        raise UserError("--classes applies to --objects scene only")
    classes = None if classes is None else sorted({int(c) for c in classes})
    table = colour_lookup(classes) if objects == "scene" else None
    isinet_root = Path(isinet_root) if isinet_root else raw_dir
    plan = resolve_splits(SPLITS if not splits else {}, splits)
    videos = {}
    for split, ids in plan.items():
        videos[split] = []
        for i in ids:
            seq_dir = find_sequence_dir(raw_dir, f"seq_{i}")
            isinet = None
            if objects != "scene":
                isinet = require_dir(find_sequence_dir(isinet_root, f"seq_{i}") / isinet_folder)
            videos[split].append(endovis18_video(seq_dir, objects, classes, isinet, table))
    class_names = SCENE_CLASS_NAMES if objects == "scene" else {}
    if classes is not None:
        class_names = {c: SCENE_CLASS_NAMES[c] for c in classes}
    options = {"objects": objects, "classes": classes}
    if objects != "scene":
        options["isinet_folder"] = isinet_folder
    check_split_outputs(out_dir, videos)
    return {
        split: prepare_split(
            out_dir, split, split_videos, dict(options, sequences=plan[split]), "EndoVis2018",
            class_names, image_format=image_format, overwrite=overwrite,
        )
        for split, split_videos in videos.items()
    }
