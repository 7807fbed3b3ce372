"""Reading and writing VOS-layout files: palette PNG masks, frames, numeric frame order.

A VOS (DAVIS-style) tree looks like::

    <root>/JPEGImages/<video>/00000.jpg   (or .png)
    <root>/Annotations/<video>/00000.png  palette PNG, pixel value = object id, 0 = background

Everything here is plain numpy / PIL / cv2 so that preparation scripts, the dataset, the
synthetic generator, inference and evaluation all read and write the same bytes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, List, Sequence, Union

import cv2
import numpy as np
from PIL import Image

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MASK_EXTENSION = ".png"
JPEG_QUALITY = 95


def davis_palette() -> np.ndarray:
    """The 256-colour DAVIS palette as a ``[256, 3]`` uint8 array (bit-interleaved VOC map)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (r, g, b)
    return palette


def _numeric_key(name: str):
    """Sort key: the stem as an int when it is one, else natural order of its digit runs."""
    stem = Path(name).stem
    if stem.isdigit():
        return (0, int(stem), stem)
    parts = re.split(r"(\d+)", stem)
    return (1, 0, [int(p) if p.isdigit() else p for p in parts])


def sort_frame_names(names: Iterable[str]) -> List[str]:
    """Sort file names by frame number (``2.jpg`` before ``10.jpg``; ``frame9`` before ``frame10``)."""
    return sorted(names, key=_numeric_key)


def frame_number(name: str) -> int:
    """The last run of digits in a file stem (``frame042.png`` -> 42, ``00007.jpg`` -> 7)."""
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise ValueError(f"no frame number in file name: {name}")
    return int(digits[-1])


def list_frames(directory: PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[Path]:
    """Image files of ``directory`` (non-recursive), sorted numerically."""
    directory = Path(directory)
    names = [
        entry.name
        for entry in os.scandir(directory)
        if entry.is_file() and not entry.name.startswith(".")
        and entry.name.lower().endswith(tuple(extensions))
    ]
    return [directory / name for name in sort_frame_names(names)]


def read_label_png(path: PathLike) -> np.ndarray:
    """Read an object-id mask: palette (``P``) or grayscale (``L``) PNG -> ``[H, W]`` uint8.

    RGB annotations are rejected: their colours are not object ids.
    """
    with Image.open(path) as image:
        if image.mode in ("P", "L"):
            return np.array(image, dtype=np.uint8)
        if image.mode in ("I", "I;16"):
            return np.array(image).astype(np.uint8)
        raise ValueError(
            f"{path}: annotation PNG has mode {image.mode}; expected a palette (P) or "
            f"grayscale (L) PNG whose pixel values are object ids"
        )


def write_label_png(path: PathLike, label: np.ndarray) -> None:
    """Write ``label`` (``[H, W]`` integer object ids, 0 = background) as a DAVIS palette PNG."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError("object ids must lie in 0..255 for a palette PNG")
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    image.putpalette(davis_palette().reshape(-1).tolist())
    image.save(path, format="PNG", optimize=False)


def read_rgb(path: PathLike) -> np.ndarray:
    """Read an image as ``[H, W, 3]`` uint8 RGB; raises ``FileNotFoundError`` when unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(2, "cannot read image", str(path))
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_rgb(path: PathLike, rgb: np.ndarray, jpeg_quality: int = JPEG_QUALITY) -> None:
    """Write ``[H, W, 3]`` uint8 RGB as JPEG or PNG, chosen by the file extension."""
    path = Path(path)
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    if not cv2.imwrite(str(path), bgr, params):
        raise OSError(f"failed to write image: {path}")


def frame_file_name(index: int, extension: str) -> str:
    """VOS file name of a frame: ``00042.jpg``."""
    return f"{int(index):05d}.{extension.lstrip('.')}"
