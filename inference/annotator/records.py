"""Plain records of the annotator: objects, prompts, the tracking job, errors, a shared frame source."""

from __future__ import annotations

import errno
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, Optional

import cv2
import numpy as np

from data.mask_io import davis_palette

_JPEG_CACHE = 8


class AnnotatorError(Exception):
    """A request that cannot be served; ``status`` is the HTTP code (4xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def disk_error(exc: OSError, folder, what: str) -> AnnotatorError:
    """A failed write as one line naming the folder and the cause (507 for a full disk)."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return AnnotatorError(507 if full else 500, f"cannot {what} in {folder}: {exc.strerror or exc} "
                                                 f"(errno {exc.errno}); nothing was changed")


@dataclass
class AnnotatedObject:
    id: int
    name: str
    type: str = ""

    @property
    def color(self) -> List[int]:
        return [int(c) for c in davis_palette()[self.id]]

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "type": self.type, "color": self.color}


@dataclass
class FramePrompt:
    """One object's input on one frame: clicks, a box and/or a mask (video pixels)."""

    points: List[List[float]] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    box: Optional[List[float]] = None
    mask: Optional[np.ndarray] = None

    def empty(self) -> bool:
        return not self.points and self.box is None and self.mask is None


@dataclass
class TrackJob:
    direction: str
    obj_ids: List[int]
    total: int
    done: int = 0
    frame: Optional[int] = None
    running: bool = True
    cancelled: bool = False
    error: Optional[str] = None
    seconds: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("direction", "obj_ids", "total", "done", "frame", "running",
                                               "cancelled", "error", "seconds")}


class LockedSource:
    """A frame source safe to read from the page's requests and the tracking thread at once."""

    def __init__(self, source):
        self._source, self._lock, self._cache_lock = source, threading.Lock(), threading.Lock()
        for name in ("name", "height", "width", "fps", "fps_source", "live"):
            setattr(self, name, getattr(source, name, None))
        self._jpeg: "OrderedDict[int, bytes]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._source)

    def frame_name(self, idx: int) -> str:
        return self._source.frame_name(idx)

    def read(self, idx: int) -> np.ndarray:
        with self._lock:
            return self._source.read(idx)

    def jpeg(self, idx: int) -> bytes:
        """The frame as JPEG for the page; the last few are kept (stepping back and forth)."""
        with self._cache_lock:
            if idx in self._jpeg:
                return self._jpeg[idx]
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(self.read(idx), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        with self._cache_lock:
            self._jpeg[idx] = buf.tobytes()
            while len(self._jpeg) > _JPEG_CACHE:
                self._jpeg.popitem(last=False)
        return buf.tobytes()
