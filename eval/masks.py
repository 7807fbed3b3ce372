"""Reading saved masks: the two directory layouts and the in-memory frame types.

Layouts, detected per video and independently for predictions and ground truth:

* **palette** (DAVIS): ``<root>/<video>/<frame>.png``, one single-channel PNG per frame
  whose pixel value is the object id (0 = background), read by the project's one label reader
  :func:`data.mask_io.read_label_png` (P, L, 1-bit and 16-bit PNGs; ids above 255 and
  RGB/RGBA are refused, naming the file).
* **per-object**: ``<root>/<video>/<object_id>/<frame>.png``, one binary mask per object
  (any non-zero pixel is foreground), with integer folder names 1..255 (``0`` is the
  background, not an object; ``7`` and ``007`` together are refused). Masks may overlap. An
  object folder that lacks a frame present in a sibling folder is empty in that frame.

Frames are matched across the two sides by file stem; order is natural ("2" < "10").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import cv2
import numpy as np

from data.mask_io import natural_key, read_label_png
from utils.errors import UserError


MASK_SUFFIX = ".png"


def size_text(shape: Tuple[int, ...]) -> str:
    """``(H, W)`` as ``"WxH"``, the way image sizes are usually written."""
    return f"{shape[1]}x{shape[0]}"


# --------------------------------------------------------------------------- frames


class LabelFrame:
    """One frame as an object-id map ``[H, W]`` (uint8, 0 = background); objects are disjoint."""

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self._ids: Optional[List[int]] = None

    @property
    def shape(self) -> Tuple[int, int]:
        return self.labels.shape

    def object_ids(self) -> List[int]:
        """Ids with at least one pixel, background excluded."""
        if self._ids is None:
            # OpenCV's uint8 histogram is ~10x faster than np.bincount (no int64 copy); its
            # float32 counts may round for huge images but stay > 0 exactly when an id is present.
            hist = cv2.calcHist([np.ascontiguousarray(self.labels)], [0], None, [256], [0, 256]).ravel()
            self._ids = [int(i) for i in np.flatnonzero(hist[1:]) + 1]
        return self._ids

    def mask(self, object_id: int) -> np.ndarray:
        return self.labels == object_id

    def union_mask(self, object_ids: Iterable[int]) -> np.ndarray:
        lut = np.zeros(256, dtype=bool)
        lut[[i for i in object_ids if 0 < i < 256]] = True
        return lut[self.labels]


class MaskSetFrame:
    """One frame as per-object binary masks ``{object_id: bool [H, W]}``; masks may overlap."""

    def __init__(self, masks: Dict[int, np.ndarray], shape: Tuple[int, int]):
        self.masks = masks
        self._shape = tuple(shape)

    @property
    def shape(self) -> Tuple[int, int]:
        return self._shape

    def object_ids(self) -> List[int]:
        return sorted(i for i, m in self.masks.items() if m.any())

    def mask(self, object_id: int) -> np.ndarray:
        m = self.masks.get(object_id)
        return np.zeros(self._shape, dtype=bool) if m is None else m

    def union_mask(self, object_ids: Iterable[int]) -> np.ndarray:
        out = np.zeros(self._shape, dtype=bool)
        for i in object_ids:
            if i in self.masks:
                out |= self.masks[i]
        return out


def empty_frame(shape: Tuple[int, int]) -> LabelFrame:
    """An all-background frame (a missing prediction scored as empty)."""
    return LabelFrame(np.zeros(shape, dtype=np.uint8))


# --------------------------------------------------------------------------- videos


@dataclass
class VideoMasks:
    """Where one video's masks are on disk.

    ``layout`` is "palette" (``frames``: stem -> file) or "objects" (``objects``: id ->
    stem -> file). A video without any mask file has layout "empty".
    """

    name: str
    path: Path
    layout: str
    frames: Dict[str, Path] = field(default_factory=dict)
    objects: Dict[int, Dict[str, Path]] = field(default_factory=dict)

    def frame_names(self) -> List[str]:
        if self.layout == "objects":
            names = set().union(*(f.keys() for f in self.objects.values()))
        else:
            names = set(self.frames)
        return sorted(names, key=natural_key)

    def has_frame(self, stem: str) -> bool:
        if self.layout == "objects":
            return any(stem in f for f in self.objects.values())
        return stem in self.frames

    def frame_file(self, stem: str) -> Path:
        """The file (palette) or object folder entry (per-object) that names this frame."""
        if self.layout == "objects":
            return next(f[stem] for f in self.objects.values() if stem in f)
        return self.frames[stem]

    def load(self, stem: str, reference: Optional[Tuple[Tuple[int, int], Path]] = None):
        """Read frame ``stem`` as a :class:`LabelFrame` or :class:`MaskSetFrame`.

        ``reference`` is ``(shape, file)`` of the ground-truth frame; a mask of another
        size raises :class:`UserError` naming both files and both sizes.
        """
        if self.layout == "objects":
            masks, shape, first = {}, None, None
            for object_id, files in self.objects.items():
                if stem not in files:
                    continue
                mask = read_label_png(files[stem]) != 0
                if shape is None:
                    shape, first = mask.shape, files[stem]
                elif mask.shape != shape:
                    raise UserError(f"size mismatch: {files[stem]} is {size_text(mask.shape)} but "
                                    f"{first} is {size_text(shape)}")
                masks[object_id] = mask
                _check_size(files[stem], mask.shape, reference)
            return MaskSetFrame(masks, shape)
        labels = read_label_png(self.frames[stem])
        _check_size(self.frames[stem], labels.shape, reference)
        return LabelFrame(labels)


def _check_size(path: Path, shape, reference) -> None:
    if reference is not None and tuple(shape) != tuple(reference[0]):
        ref_shape, ref_path = reference
        raise UserError(f"size mismatch: prediction {path} is {size_text(shape)} but ground truth "
                        f"{ref_path} is {size_text(ref_shape)}")


def scan_video(path: Path, name: Optional[str] = None) -> VideoMasks:
    """Detect the layout of one video folder and index its mask files."""
    path = Path(path)
    name = name or path.name
    pngs, object_dirs = {}, {}
    for entry in path.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() == MASK_SUFFIX:
            pngs[entry.stem] = entry
        elif entry.is_dir() and entry.name.isdigit():
            object_id = int(entry.name)
            if object_id == 0:
                raise UserError(f"{entry}: per-object folder 0 is the background, not an object id; "
                                f"object folders are named 1..255")
            if object_id in object_dirs:
                raise UserError(f"{path}: two per-object folders name object {object_id}; keep one")
            files = {f.stem: f for f in entry.iterdir()
                     if f.is_file() and f.suffix.lower() == MASK_SUFFIX and not f.name.startswith(".")}
            if files:
                object_dirs[object_id] = files
    if pngs and object_dirs:
        raise UserError(f"{path}: mixes frame PNGs with per-object folders; use one layout per video")
    if object_dirs:
        if any(i > 255 for i in object_dirs):
            raise UserError(f"{path}: object ids above 255 are not supported")
        return VideoMasks(name, path, "objects", objects=dict(sorted(object_dirs.items())))
    return VideoMasks(name, path, "palette" if pngs else "empty", frames=pngs)


def list_videos(root: Path) -> List[str]:
    """Names of the video folders under ``root`` (hidden folders skipped), naturally sorted."""
    return sorted((d.name for d in Path(root).iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=natural_key)
