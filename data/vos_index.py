"""Index of a VOS-layout tree: which videos exist and which frames carry annotations."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from data.mask_io import (IMAGE_EXTENSIONS, MASK_EXTENSION, check_label_png, image_size, list_frames, read_label_png,
                          read_rgb)
from utils.errors import UserError
from utils.io import printable_name

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class VideoRecord:
    """One video of a VOS tree, restricted to the frames that have both an image and a mask.

    ``frame_paths[i]`` and ``mask_paths[i]`` belong to the i-th annotated frame in numeric
    order; ``frame_ids[i]`` is the number in its file name (``00042.jpg`` -> 42). Samplers
    index frames by position ``i`` (0..num_frames-1), never by file number.
    """

    name: str
    frame_paths: tuple
    mask_paths: tuple
    frame_ids: tuple = field(default=())

    @property
    def num_frames(self) -> int:
        return len(self.frame_paths)

    @property
    def key(self) -> str:
        """A string that identifies this video's annotations (used as a cache key)."""
        if not self.mask_paths:
            return self.name
        return f"{Path(self.mask_paths[0]).parent}:{self.num_frames}"

    def load_label(self, index: int) -> np.ndarray:
        """Object-id map of frame ``index``: ``[H, W]`` uint8, 0 = background."""
        return read_label_png(self.mask_paths[index])

    def load_rgb(self, index: int) -> np.ndarray:
        """RGB image of frame ``index``: ``[H, W, 3]`` uint8."""
        return read_rgb(self.frame_paths[index])


def _read_video_list(video_list: Union[None, PathLike, Sequence[str]]) -> Optional[List[str]]:
    if video_list is None:
        return None
    if isinstance(video_list, (str, os.PathLike)):
        path = Path(video_list)
        if not path.is_file():
            raise UserError(f"video list file not found: {path}")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [str(v) for v in video_list]


def _size_text(hw) -> str:
    return f"{hw[1]}x{hw[0]}"


def check_video_sizes(name: str, pairs) -> None:
    """Every frame and mask of a video has one size, from the file headers only (cheap), so a
    frame or mask of another size is named here rather than crashing a batch mid-epoch. An
    RGB annotation fails here too, naming the file."""
    size, first = None, None
    for frame, mask in pairs:
        for path, hw in ((frame, image_size(frame)), (mask, check_label_png(mask))):
            if size is None:
                size, first = hw, path
            elif hw != size:
                raise UserError(f"video {name}: {path} is {_size_text(hw)} but {first} is {_size_text(size)}; every "
                                f"frame and mask of a video must have one size")


def scan_vos_root(
    root: PathLike,
    video_list: Union[None, PathLike, Sequence[str]] = None,
    image_dir: str = "JPEGImages",
    mask_dir: str = "Annotations",
) -> List[VideoRecord]:
    """List the videos of a VOS tree, sorted by name.

    Args:
        root: directory holding ``JPEGImages/`` and ``Annotations/``.
        video_list: optional subset, either a list of names or a text file with one name
            per line (e.g. ``ImageSets/fast.txt`` of the synthetic generator).
    Frames are ``.jpg``/``.jpeg``/``.png`` files sorted numerically; only frames with a
    mask of the same stem are kept. Videos with no annotated frame are skipped with a warning.
    Every kept mask must be a single-channel id PNG (:func:`data.mask_io.read_label_png`).
    """
    root = Path(root)
    images_root, masks_root = root / image_dir, root / mask_dir
    for required in (images_root, masks_root):
        if not required.is_dir():
            raise UserError(f"not a VOS tree, missing directory: {required}")
    wanted = _read_video_list(video_list)
    names = sorted(p.name for p in images_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if wanted is not None:
        missing = [v for v in wanted if v not in names]
        if missing:
            raise UserError(f"videos not found under {images_root}: {', '.join(missing[:5])}")
        names = [n for n in names if n in set(wanted)]
    videos = []
    for name in names:
        printable_name(name, f"video folder name in {images_root}")  # names go into log lines
        frames = list_frames(images_root / name, IMAGE_EXTENSIONS)
        mask_folder = masks_root / name
        masks_by_stem = {}
        if mask_folder.is_dir():
            masks_by_stem = {p.stem: p for p in list_frames(mask_folder, (MASK_EXTENSION,))}
        kept = [(f, masks_by_stem[f.stem]) for f in frames if f.stem in masks_by_stem]
        if not kept:
            log.warning("skipping video %s: no frame has an annotation in %s", name, mask_folder)
            continue
        check_video_sizes(name, kept)
        frame_ids = []
        for position, (frame, _) in enumerate(kept):
            frame_ids.append(int(frame.stem) if frame.stem.isdigit() else position)
        videos.append(
            VideoRecord(
                name=name,
                frame_paths=tuple(str(f) for f, _ in kept),
                mask_paths=tuple(str(m) for _, m in kept),
                frame_ids=tuple(frame_ids),
            )
        )
    if not videos:
        raise UserError(f"no annotated videos found under {root}")
    return videos
