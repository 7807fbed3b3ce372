"""The annotator's masks: one compressed label map per frame, plus per-object confidences.

Label maps (``uint8 [H, W]``, value = object id) are kept PNG-compressed, a few kB per
frame, so an hour of video fits in memory while the tracker itself evicts its outputs.
With a :class:`~inference.annotator.tracked.TrackedLog` attached, every change of a frame
is written to it before it is made in memory, so memory never shows what the disk lacks.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Dict, Iterable, Iterator, Optional, Sequence

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
        self.journal = None  # a TrackedLog: changes are written there first
        self._undo: Optional[dict] = None  # frame -> its state before the open transaction

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

    # ------------------------------------------------------------------ one frame's whole state
    def frame_state(self, frame: int):
        """(label PNG or None, {obj: score}, {obj: iou}) of ``frame``: what the log stores."""
        with self._lock:
            return (self._labels.get(frame), {o: t[frame] for o, t in self.scores.items() if frame in t},
                    {o: t[frame] for o, t in self.ious.items() if frame in t})

    def known_frames(self) -> Sequence[int]:
        """Frames with masks or scores."""
        frames = set(self._labels)
        for table in (*self.scores.values(), *self.ious.values()):
            frames.update(table)
        return sorted(frames)

    def put_state(self, frame: int, state, persist: bool = True) -> None:
        """Make ``state`` the frame's state: written to the log first (if any), then kept."""
        png, scores, ious = state
        if persist and self.journal is not None:
            self.journal.append(frame, state)  # raises on a full disk: memory is left as it was
        if self._undo is not None and frame not in self._undo:
            self._undo[frame] = self.frame_state(frame)
        with self._lock:
            if png is None:
                self._labels.pop(frame, None)
            else:
                self._labels[frame] = png
            for obj_id in set(self.scores) | set(scores):
                self._set(self.scores, obj_id, frame, scores.get(obj_id))
            for obj_id in set(self.ious) | set(ious):
                self._set(self.ious, obj_id, frame, ious.get(obj_id))
            self.version += 1

    @staticmethod
    def _set(table, obj_id, frame, value) -> None:
        if value is None:
            row = table.get(obj_id)
            if row is not None:
                row.pop(frame, None)
                if not row:
                    del table[obj_id]
        else:
            table.setdefault(obj_id, {})[frame] = value

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Changes made in the block are all taken back (memory and log) if it raises."""
        if self._undo is not None:  # nested: the outer one takes everything back
            yield
            return
        self._undo, mark = {}, self.journal.mark() if self.journal is not None else None
        try:
            yield
        except BaseException:
            undo, self._undo = self._undo, None
            for frame, state in undo.items():
                self.put_state(frame, state, persist=False)
            if mark is not None:
                self.journal.rollback(mark)
            raise
        finally:
            self._undo = None

    @contextlib.contextmanager
    def offline(self) -> Iterator[None]:
        """Changes in the block are not written to the log (replaying what it already has)."""
        journal, self.journal = self.journal, None
        try:
            yield
        finally:
            self.journal = journal

    # ------------------------------------------------------------------ changes
    def set_labels(self, frame: int, labels: np.ndarray) -> None:
        _, scores, ious = self.frame_state(frame)
        self.put_state(frame, (_encode(np.ascontiguousarray(labels, dtype=np.uint8)), scores, ious))

    def update(self, frame: int, obj_ids: Sequence[int], logits: torch.Tensor, all_objects: Iterable[int],
               scores: Optional[Dict[int, float]] = None, ious: Optional[Dict[int, float]] = None,
               first: Sequence[int] = ()) -> None:
        """Store tracked masks of ``obj_ids`` on ``frame``.

        When every object was tracked together, overlaps go to the highest logit (as in
        ``predict_video.py``). When only some were (a correction), the others' pixels are
        kept exactly and the tracked objects take only free pixels. Objects in ``first`` (a
        positive click on another object there: crossing instruments) take every pixel where
        they are positive, from the others too.
        """
        if set(obj_ids) >= set(all_objects):
            labels = logits_to_label_map(obj_ids, logits, self.height, self.width)
        else:
            labels = self.labels(frame)
            labels[np.isin(labels, list(obj_ids))] = 0
            fresh = logits_to_label_map(obj_ids, logits, self.height, self.width)
            free = labels == 0
            labels[free] = fresh[free]
        rows = [i for i, o in enumerate(obj_ids) if o in first]
        if rows:
            top = logits_to_label_map([obj_ids[i] for i in rows], logits[rows], self.height, self.width)
            labels[top > 0] = top[top > 0]
        _, frame_scores, frame_ious = self.frame_state(frame)
        frame_scores.update({o: v for o, v in (scores or {}).items() if o in obj_ids})
        frame_ious.update({o: v for o, v in (ious or {}).items() if o in obj_ids})
        self.put_state(frame, (_encode(np.ascontiguousarray(labels, dtype=np.uint8)), frame_scores, frame_ious))

    def remove_object(self, obj_id: int, frames: Optional[Iterable[int]] = None) -> None:
        """Erase ``obj_id`` (on ``frames``, default all) with its scores there."""
        targets = self.known_frames() if frames is None else list(frames)
        for frame in targets:
            png, scores, ious = self.frame_state(frame)
            labels = self.labels(frame) if png is not None else None
            has_pixels = labels is not None and (labels == obj_id).any()
            if not has_pixels and obj_id not in scores and obj_id not in ious:
                continue
            if has_pixels:
                labels[labels == obj_id] = 0
                png = _encode(labels)
            scores.pop(obj_id, None), ious.pop(obj_id, None)
            self.put_state(frame, (png, scores, ious))

    def object_ids(self) -> set:
        ids = set(self.scores)
        for frame in list(self._labels):
            ids.update(int(i) for i in np.unique(self.labels(frame)) if i)
        return ids

    def check_png(self, data: bytes) -> bool:
        """Whether ``data`` decodes to a label map of this video's size."""
        try:
            labels = _decode(data)
        except cv2.error:
            return False
        return labels is not None and labels.dtype == np.uint8 and labels.shape == (self.height, self.width)
