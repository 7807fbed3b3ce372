"""The annotator's masks: one compressed label map per frame, plus per-object confidences.

Label maps (``uint8 [H, W]``, value = object id) are kept PNG-compressed, a few kB per
frame, so an hour of video fits in memory while the tracker itself evicts its outputs.
"""

from __future__ import annotations

import threading
from typing import Dict, Iterable, Optional, Sequence

import cv2
import numpy as np
import torch

from inference.writers import logits_to_label_map


def _encode(labels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", labels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("cannot PNG-encode a label map")
    return buf.tobytes()


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


class MaskStore:
    """Thread-safe per-frame label maps and object scores (tracking writes, the page reads)."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self._labels: Dict[int, bytes] = {}
        self.scores: Dict[int, Dict[int, float]] = {}  # obj_id -> frame -> presence logit
        self.ious: Dict[int, Dict[int, float]] = {}  # obj_id -> frame -> predicted IoU
        self._lock = threading.Lock()
        self.version = 0  # bumped on every change (lets the page know what to refetch)

    def labels(self, frame: int) -> np.ndarray:
        with self._lock:
            data = self._labels.get(frame)
        if data is None:
            return np.zeros((self.height, self.width), np.uint8)
        return _decode(data)

    def has(self, frame: int) -> bool:
        return frame in self._labels

    def frames(self) -> Sequence[int]:
        return sorted(self._labels)

    def set_labels(self, frame: int, labels: np.ndarray) -> None:
        with self._lock:
            self._labels[frame] = _encode(np.ascontiguousarray(labels, dtype=np.uint8))
            self.version += 1

    def update(self, frame: int, obj_ids: Sequence[int], logits: torch.Tensor, all_objects: Iterable[int],
               scores: Optional[Dict[int, float]] = None, ious: Optional[Dict[int, float]] = None) -> None:
        """Store tracked masks of ``obj_ids`` on ``frame``.

        When every object was tracked together, overlaps go to the highest logit (as in
        ``predict_video.py``). When only some were (a correction), the others' pixels are
        kept exactly and the tracked objects take only free pixels.
        """
        if set(obj_ids) >= set(all_objects):
            labels = logits_to_label_map(obj_ids, logits, self.height, self.width)
        else:
            labels = self.labels(frame)
            labels[np.isin(labels, list(obj_ids))] = 0
            fresh = logits_to_label_map(obj_ids, logits, self.height, self.width)
            free = labels == 0
            labels[free] = fresh[free]
        self.set_labels(frame, labels)
        for obj_id in obj_ids:
            if scores and obj_id in scores:
                self.scores.setdefault(obj_id, {})[frame] = scores[obj_id]
            if ious and obj_id in ious:
                self.ious.setdefault(obj_id, {})[frame] = ious[obj_id]

    def remove_object(self, obj_id: int, frames: Optional[Iterable[int]] = None) -> None:
        """Erase ``obj_id`` (on ``frames``, default all) and, with all frames, its scores."""
        targets = list(self._labels) if frames is None else [f for f in frames if f in self._labels]
        for frame in targets:
            labels = self.labels(frame)
            if (labels == obj_id).any():
                labels[labels == obj_id] = 0
                self.set_labels(frame, labels)
        for table in (self.scores, self.ious):
            if frames is None:
                table.pop(obj_id, None)
            else:
                for frame in frames:
                    table.get(obj_id, {}).pop(frame, None)

    def object_ids(self) -> set:
        ids = set(self.scores)
        for frame in list(self._labels):
            ids.update(int(i) for i in np.unique(self.labels(frame)) if i)
        return ids
