"""Reading and writing VOS-layout files: palette PNG masks, frames, numeric frame order.

A VOS (DAVIS-style) tree looks like::

    <root>/JPEGImages/<video>/00000.jpg   (or .png)
    <root>/Annotations/<video>/00000.png  palette PNG, pixel value = object id, 0 = background

Everything here is plain numpy / PIL / cv2 so that preparation scripts, the dataset, the
synthetic generator, inference and evaluation all read and write the same bytes.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable, List, Sequence, Union

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.errors import UserError

log = logging.getLogger(__name__)

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


def natural_key(name: str):
    """Sort key that orders embedded numbers numerically: ``2.jpg`` < ``10.jpg``, ``frame9`` < ``frame10``.

    The one sort used for frames, videos and classes everywhere (training, inference, evaluation).
    """
    return [(0, int(tok), tok) if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", str(name)) if tok]


def sort_frame_names(names: Iterable[str]) -> List[str]:
    """Sort file names by frame number (``2.jpg`` before ``10.jpg``; ``frame9`` before ``frame10``)."""
    return sorted(names, key=natural_key)


def frame_number(name: str) -> int:
    """The last run of digits in a file stem (``frame042.png`` -> 42, ``00007.jpg`` -> 7)."""
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise ValueError(f"no frame number in file name: {name}")
    return int(digits[-1])


def list_frames(directory: PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[Path]:
    """Image files of ``directory`` (non-recursive, hidden files skipped), in :func:`natural_key` order.

    Two files with one stem (``00000.jpg`` and ``00000.png``) would give one output name for
    two frames: a :class:`UserError`. Stems that are not all numbers get a warning stating the order.
    """
    directory = Path(directory)
    names = sort_frame_names(
        entry.name
        for entry in os.scandir(directory)
        if entry.is_file() and not entry.name.startswith(".")
        and entry.name.lower().endswith(tuple(extensions))
    )
    by_stem = {}
    for name in names:
        stem = Path(name).stem
        if stem in by_stem:
            raise UserError(f"{directory}: {by_stem[stem]} and {name} are two frames with one name {stem!r}; "
                            f"keep one of them")
        by_stem[stem] = name
    if names and not all(Path(n).stem.isdigit() for n in names):
        shown = ", ".join(names[:3]) + (f", ..., {names[-1]}" if len(names) > 3 else "")
        log.warning("%s: frame names are not all numbers; using natural order (numbers inside names "
                    "compared as numbers): %s", directory, shown)
    return [directory / name for name in names]


LABEL_MODES = ("P", "L", "1", "I;16", "I;16B", "I;16L", "I")


def check_label_png(path: PathLike) -> tuple:
    """Check, from the header only, that ``path`` is a single-channel integer PNG of object
    ids; returns its size ``(H, W)``."""
    return _open_label(path, decode=False)


def image_size(path: PathLike) -> tuple:
    """``(H, W)`` of an image from its header (nothing decoded); a :class:`UserError` naming
    the file when it cannot be read."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise UserError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from exc
    return int(height), int(width)


def read_label_png(path: PathLike) -> np.ndarray:
    """Read an object-id mask as ``[H, W]`` uint8 (0 = background): the one reader of label PNGs.

    Accepted: palette (``P``), grayscale (``L``), 1-bit (``1``) and 16/32-bit grayscale
    (``I;16``, ``I``) PNGs whose values lie in 0..255 (our palette outputs hold 1..255).
    A value above 255 is refused, never wrapped; RGB, RGBA and other modes are refused.
    Every refusal is a :class:`UserError` naming the file.
    """
    return _open_label(path, decode=True)


def _open_label(path: PathLike, decode: bool):
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode not in LABEL_MODES:
                raise UserError(
                    f"{path}: mask has mode {mode}; expected a single-channel palette (P), grayscale (L) or "
                    f"16-bit PNG whose pixel values are object ids (RGB/RGBA colour masks are not supported)"
                )
            if not decode:
                return image.size[1], image.size[0]
            array = np.array(image)
    except FileNotFoundError:
        raise UserError(f"mask file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"cannot read mask {path}: {exc}") from exc
    if array.dtype != np.uint8 and array.dtype != bool:
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 255:
            raise UserError(f"{path}: mask holds object id {high if high > 255 else low}; ids must lie in 0..255 "
                            f"(values are never wrapped, which would merge objects)")
    return array.astype(np.uint8)


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
    ok, data = cv2.imencode(path.suffix.lower() or ".png", bgr, params)
    if not ok:
        raise ValueError(f"cannot encode an image as {path.suffix}: {path}")
    with open(path, "wb") as f:  # not cv2.imwrite: its False says nothing of a full disk
        f.write(data.tobytes())


def frame_file_name(index: int, extension: str) -> str:
    """VOS file name of a frame: ``00042.jpg``."""
    return f"{int(index):05d}.{extension.lstrip('.')}"
