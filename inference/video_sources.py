"""Video sources that decode frames lazily: frame folders, video files and live streams.

Every source yields RGB ``uint8`` arrays ``[H, W, 3]`` and names each frame (the file stem
for folders, ``00000``-style indices otherwise), so masks can be written under the same
names as the ground truth. Nothing is preloaded: a 1-hour video costs no more memory than a
10-second one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Union

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from data.mask_io import list_frames, natural_key
from models.frames import EndOfStream
from utils.errors import UserError


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
_ARRIVALS_KEPT = 256  # arrival times kept for latency figures


class ImageFolderSource:
    """A folder of frame images, sorted by the last number in each file name."""

    live = False

    def __init__(self, folder: Union[str, Path]):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"video folder not found: {self.folder}")
        self.paths = list_frames(self.folder, IMAGE_EXTS)
        if not self.paths:
            raise UserError(f"no frames ({'/'.join(IMAGE_EXTS)}) in {self.folder}")
        self.name = self.folder.resolve().name  # `--video_path .` is named after the real folder
        self.origin = str(self.folder)
        first = self.read(0)
        self.height, self.width = first.shape[:2]
        self.fps, self.fps_source = _folder_fps(self.folder)

    def __len__(self) -> int:
        return len(self.paths)

    def frame_name(self, idx: int) -> str:
        return self.paths[idx].stem

    def read(self, idx: int) -> np.ndarray:
        path = self.paths[idx]
        try:
            with Image.open(path) as img:
                rgb = np.array(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"corrupt or unreadable frame {idx} ({path}): {exc}") from exc
        if getattr(self, "height", None) is not None and rgb.shape[:2] != (self.height, self.width):
            raise UserError(
                f"frame {idx} ({path}) is {rgb.shape[1]}x{rgb.shape[0]}, the video is {self.width}x{self.height}"
            )
        return rgb


def _folder_fps(folder: Path):
    """(fps, where it came from) of a frame folder: ``meta.json``'s ``"fps"`` if it has one,
    else 30 marked as a default (a folder of images does not say)."""
    meta = folder / "meta.json"
    if not meta.is_file():
        return 30.0, "default"
    try:
        fps = json.loads(meta.read_text(encoding="utf-8")).get("fps")
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{meta}: not a JSON object with an \"fps\" number ({exc})") from None
    if fps is None:
        return 30.0, "default"
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
        raise UserError(f"{meta}: \"fps\" must be a number in (0, 1000], got {fps!r}")
    return float(fps), "meta.json"


class VideoFileSource:
    """A video file decoded with OpenCV; sequential reads are cheap, seeks re-position."""

    live = False

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"video file not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise UserError(f"cannot open video file {self.path} (unsupported or corrupt)")
        self._count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self.fps_source = "video" if self._cap.get(cv2.CAP_PROP_FPS) else "default"
        self._next = 0
        self.name = self.path.stem
        self.origin = str(self.path)
        first = self.read(0)
        self.height, self.width = first.shape[:2]
        if self._count <= 0:
            raise UserError(f"video file {self.path} reports no frames")

    def __len__(self) -> int:
        return self._count

    def frame_name(self, idx: int) -> str:
        return f"{idx:05d}"

    def read(self, idx: int) -> np.ndarray:
        if idx != self._next:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise UserError(f"corrupt or unreadable frame {idx} in {self.path}")
        self._next = idx + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()


class StreamSource:
    """A live source: frames arrive one by one and can only be read in order.

    ``frames`` is a camera index, a stream URL (both through OpenCV), or any iterable of
    RGB arrays (e.g. a generator fed by an acquisition card). ``arrival_time(idx)`` is when
    frame ``idx`` was received, for latency figures.
    """

    live = True

    def __init__(self, frames: Union[int, str, Iterable[np.ndarray]], name: str = "stream", keep: int = 4):
        self.name = name
        self.fps = 30.0
        self._cap = None
        if isinstance(frames, (int, str)):
            self._cap = cv2.VideoCapture(frames)
            if not self._cap.isOpened():
                raise UserError(f"cannot open live source {frames!r}")
            self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
            self._iter: Iterator[np.ndarray] = self._capture_frames()
        else:
            self._iter = iter(frames)
        self._keep = keep
        self._buffer = {}
        self._arrivals = {}
        self._received = 0
        self.ended = False
        first = self.read(0)
        self.height, self.width = first.shape[:2]

    def _capture_frames(self) -> Iterator[np.ndarray]:
        while True:
            ok, bgr = self._cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __len__(self) -> int:
        return self._received  # frames received so far; the total is unknown

    def frame_name(self, idx: int) -> str:
        return f"{idx:05d}"

    def arrival_time(self, idx: int) -> Optional[float]:
        return self._arrivals.get(idx)

    def read(self, idx: int) -> np.ndarray:
        if idx in self._buffer:
            return self._buffer[idx]
        if idx < self._received:
            raise RuntimeError(f"live frame {idx} was already dropped; streams cannot be rewound")
        while self._received <= idx:
            try:
                frame = next(self._iter)
            except StopIteration:
                self.ended = True
                raise EndOfStream(self._received) from None
            frame = np.ascontiguousarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise UserError(f"live frame {self._received} is not an RGB uint8 image (shape {frame.shape})")
            self._arrivals[self._received] = time.perf_counter()
            self._buffer[self._received] = frame
            self._received += 1
            stale = self._received - 1 - self._keep  # one frame in, one frame out: bounded
            self._buffer.pop(stale, None)
            self._arrivals.pop(stale - _ARRIVALS_KEPT, None)
        return self._buffer[idx]

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


def is_live_spec(spec: str) -> bool:
    return spec.isdigit() or "://" in spec


def open_video_source(spec, live: bool = False):
    """Open a source from a CLI-style spec: folder, video file, camera index or URL.

    ``live=True`` reads a folder or file as if it were a stream (in order, once).
    Iterables of frames are always live.
    """
    if not isinstance(spec, (str, Path)):
        return StreamSource(spec)
    spec = str(spec)
    if is_live_spec(spec):
        return StreamSource(int(spec) if spec.isdigit() else spec, name="camera" if spec.isdigit() else "stream")
    path = Path(spec)
    if path.is_dir():
        source = ImageFolderSource(path)
    elif path.is_file():
        if path.suffix.lower() not in VIDEO_EXTS:
            raise UserError(f"unsupported video file {path} (expected one of {', '.join(VIDEO_EXTS)} or a frame folder)")
        source = VideoFileSource(path)
    else:
        raise UserError(f"video not found: {path}")
    if live:
        frames = (source.read(i) for i in range(len(source)))
        return StreamSource(frames, name=source.name)
    return source


def list_video_dirs(images_root: Union[str, Path]) -> List[Path]:
    """Video folders of a VOS ``JPEGImages`` folder, in natural order; hidden folders (staging
    left by a killed run, ``.git``...) are never videos."""
    root = Path(images_root)
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))
