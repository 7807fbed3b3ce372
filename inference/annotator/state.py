"""What the annotator knows: the video, the objects, their prompts, masks and tracking job.

Every change goes through :class:`AnnotatorState`; the web server only translates HTTP to
these calls. Tracking runs in a background thread (one job at a time) so the page can poll
progress and show masks while they are computed; prompting waits until it is done.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch

from data.endovis17 import INSTRUMENT_TYPES
from inference.annotator import quality, session_file, tracked
from inference.annotator.records import (AnnotatedObject, AnnotatorError, FramePrompt, LockedSource, TrackJob,
                                         disk_error)
from inference.annotator.store import MaskStore, _decode, _encode
from models.session import DIRECTIONS, TrackingSession

log = logging.getLogger(__name__)

PRESETS = ("tsms", "tsms_fast", "sam2")
SAVE_EVERY_S = 2.0  # while tracking: how often the session is saved (a kill loses at most this much)
OBJECT_TYPES = tuple(INSTRUMENT_TYPES.values())


class AnnotatorState:
    """One video being annotated.

    Args:
        source: a frame source (``inference.video_sources.open_video_source``).
        make_predictor: preset name -> video predictor (built once per preset).
        output_dir: where the session and the exports go (``inference.annotator.export``).
        preset: the memory preset to start with.
        threshold: object-presence probability under which a tracked frame is flagged.
        evict: let the tracker drop outputs its memory can no longer reach (flat memory).
    """

    def __init__(self, source, make_predictor: Callable[[str], object], output_dir, *, preset: str = "tsms",
                 threshold: float = 0.5, evict: bool = True):
        if preset not in PRESETS:
            raise AnnotatorError(400, f"unknown memory preset {preset!r}; choose one of {', '.join(PRESETS)}")
        self.source = LockedSource(source)
        self.num_frames = len(source)
        self.height, self.width = source.height, source.width
        self.output_dir = Path(output_dir).resolve()
        self.make_predictor, self._predictors = make_predictor, {}
        self.preset, self.threshold, self.evict = preset, float(threshold), evict
        self.objects: Dict[int, AnnotatedObject] = {}
        self.prompts: Dict[Tuple[int, int], FramePrompt] = {}
        self.history: List[Tuple[int, int, str]] = []  # (obj_id, frame, "point"|"box"|"mask")
        self.dirty: Dict[int, int] = {}  # obj_id -> earliest frame prompted since it was last tracked
        self.loaded_ids: set = set()  # objects whose masks came from files (corrections start from them)
        self.store = MaskStore(self.height, self.width)
        self.job: Optional[TrackJob] = None
        self.exported = False
        self.export_current = False  # the last export holds every change (saved in the session)
        self.claims: set = set()  # (obj_id, frame): a positive click there on another object: it wins there
        self.trash: List[Tuple[int, dict]] = []  # deleted objects undo can bring back: (len(history) after, what)
        self._lock = threading.RLock()  # the tracker: prompts and tracking (held for a whole job)
        self._meta_lock = threading.RLock()  # names, types and the session file (free while tracking)
        self.resources = contextlib.ExitStack()  # the folder lock, the log of tracked masks: released by close()
        self.session = self._new_session()

    # ------------------------------------------------------------------ model
    def predictor(self, preset: str):
        if preset not in self._predictors:
            log.info("building the predictor for memory preset %s", preset)
            self._predictors[preset] = self.make_predictor(preset)
        return self._predictors[preset]

    def _new_session(self) -> TrackingSession:
        predictor = self.predictor(self.preset)
        quality.watch_decoder(predictor)
        return TrackingSession(predictor, self.source, evict_outputs=self.evict)

    def set_preset(self, preset: str) -> None:
        """Track with another memory preset: a new session with the same prompts; every
        object is re-tracked on the next Track."""
        if preset not in PRESETS:
            raise AnnotatorError(400, f"unknown memory preset {preset!r}; choose one of {', '.join(PRESETS)}")
        with self._idle():
            if preset == self.preset:
                return
            old_session, old_preset, old_dirty = self.session, self.preset, dict(self.dirty)
            try:
                with self.store.transaction():
                    self.preset = preset
                    self.session = self._new_session()
                    self.replay_prompts()
                    self.save()
            except OSError as exc:
                if self.session is not old_session:
                    self.session.close()
                self.session, self.preset, self.dirty = old_session, old_preset, old_dirty
                raise disk_error(exc, self.output_dir, "save the session") from None
            old_session.close()

    def replay_prompts(self) -> None:
        for (obj_id, frame) in sorted(self.prompts, key=lambda k: (k[1], k[0])):
            self._apply(obj_id, frame)
        for obj_id in {o for o, _ in self.prompts}:
            self.dirty[obj_id] = self.first_prompt_frame(obj_id)

    # ------------------------------------------------------------------ checks
    def check_frame(self, frame: int) -> int:
        if not 0 <= frame < self.num_frames:
            raise AnnotatorError(404, f"frame {frame} is outside the video (0..{self.num_frames - 1})")
        return frame

    def check_object(self, obj_id: int) -> AnnotatedObject:
        if obj_id not in self.objects:
            raise AnnotatorError(404, f"unknown object {obj_id} (objects: {sorted(self.objects) or 'none'})")
        return self.objects[obj_id]

    def _check_xy(self, x: float, y: float) -> None:
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= self.width and 0 <= y <= self.height):
            raise AnnotatorError(422, f"point ({x}, {y}) is outside the {self.width}x{self.height} frame")

    def _idle(self):
        if self.job is not None and self.job.running:
            raise AnnotatorError(409, "tracking is running; wait for it or cancel it first")
        return self._lock

    @contextlib.contextmanager
    def _saved_change(self, keys: Iterable[Tuple[int, int]] = (), masks: bool = True):
        """A change that must reach the disk. If a write fails (a full disk, a read-only
        folder), everything is put back as it was -- objects, prompts, history, masks and the
        tracker's prompts on ``keys`` -- so the page shows what is saved; one-line 5xx error.
        ``masks=False``: a change of names only (allowed while tracking writes masks)."""
        keys = list(keys)
        objects, prompts = copy.deepcopy(self.objects), dict(self.prompts)
        for key in keys:
            if key in prompts:
                prompts[key] = copy.deepcopy(prompts[key])
        saved = (list(self.history), dict(self.dirty), set(self.loaded_ids), self.exported, self.export_current,
                 list(self.trash), set(self.claims))
        try:
            with self.store.transaction() if masks else contextlib.nullcontext():
                try:
                    yield
                except OSError:
                    self.objects = objects
                    if not masks:  # the rest may be changing under a tracking job: it was not touched
                        raise
                    self.prompts = prompts
                    self.history, self.dirty, self.loaded_ids, self.exported, self.export_current, self.trash, self.claims = saved
                    with self.store.offline():
                        for key in keys:  # the tracker gets its earlier prompts back
                            self._apply(*key)
                    raise
        except OSError as exc:
            raise disk_error(exc, self.output_dir, "save the change") from None

    # ------------------------------------------------------------------ objects
    def add_object(self, name: Optional[str] = None, type: str = "", obj_id: Optional[int] = None) -> AnnotatedObject:
        with self._meta_lock:
            if obj_id is None:
                obj_id = max(self.objects, default=0) + 1
            if not 0 < obj_id < 256 or obj_id in self.objects:
                raise AnnotatorError(422, f"object id {obj_id} is taken or outside 1..255")
            self._check_type(type)
            obj = AnnotatedObject(obj_id, _clean_name(name) or f"object {obj_id}", type)
            with self._saved_change(masks=False):
                self.objects[obj_id] = obj
                self.save()
            return obj

    def update_object(self, obj_id: int, name: Optional[str] = None, type: Optional[str] = None) -> AnnotatedObject:
        with self._meta_lock:
            self.check_object(obj_id)
            if type is not None:
                self._check_type(type)
            with self._saved_change(masks=False):
                obj = self.objects[obj_id]
                if name is not None:
                    obj.name = _clean_name(name) or obj.name
                if type is not None:
                    obj.type = type
                self.save()
            return self.objects[obj_id]

    @staticmethod
    def _check_type(type: str) -> None:
        if type and type not in OBJECT_TYPES:
            raise AnnotatorError(422, f"unknown instrument type {type!r}; choose one of {', '.join(OBJECT_TYPES)}")

    def delete_object(self, obj_id: int) -> None:
        """Remove the object, its prompts and masks; undo brings them back (until a restart)."""
        with self._idle():
            self.check_object(obj_id)
            with self._saved_change():  # the tracker is told only once it is saved
                kept = {
                    "object": copy.deepcopy(self.objects[obj_id]),
                    "prompts": {k: copy.deepcopy(v) for k, v in self.prompts.items() if k[0] == obj_id},
                    "history": [(i, h) for i, h in enumerate(self.history) if h[0] == obj_id],
                    "dirty": self.dirty.get(obj_id), "loaded": obj_id in self.loaded_ids,
                    "claims": {c for c in self.claims if c[0] == obj_id},
                    "frames": {f: self.store.frame_state(f) for f in self.store.known_frames()},
                }
                del self.objects[obj_id]
                self.prompts = {k: v for k, v in self.prompts.items() if k[0] != obj_id}
                self.history = [h for h in self.history if h[0] != obj_id]
                self.dirty.pop(obj_id, None)
                self.loaded_ids.discard(obj_id)
                self.claims -= kept["claims"]
                self.store.remove_object(obj_id)
                self.trash.append((len(self.history), kept))
                self.save()
            if obj_id in self.session.obj_ids:
                self.session.remove_object(obj_id)

    def _undelete(self) -> dict:
        """Undo of a delete: the object with its prompts (back in the tracker), masks and
        place in the undo history."""
        _, kept = self.trash[-1]
        obj = kept["object"]
        if obj.id in self.objects:
            raise AnnotatorError(409, f"object {obj.id} exists again; the deleted object cannot come back under its id")
        keys = sorted(kept["prompts"], key=lambda k: k[1])
        with self._saved_change(keys):
            self.trash.pop()
            self.objects[obj.id] = obj
            self.objects = dict(sorted(self.objects.items()))
            self.prompts.update(copy.deepcopy(kept["prompts"]))
            for i, h in kept["history"]:
                self.history.insert(i, h)
            if kept["dirty"] is not None:
                self.dirty[obj.id] = kept["dirty"]
            if kept["loaded"]:
                self.loaded_ids.add(obj.id)
            self.claims |= kept["claims"]
            for key in keys:
                self._apply(*key)
            for frame, (png, scores, ious) in kept["frames"].items():  # its masks as they were, others' as now
                before = self.store.labels(frame)
                was = _decode_or_none(png)
                if was is not None:
                    before[was == obj.id] = obj.id
                _, now_scores, now_ious = self.store.frame_state(frame)
                for table, old in ((now_scores, scores), (now_ious, ious)):
                    table.pop(obj.id, None)
                    if obj.id in old:
                        table[obj.id] = old[obj.id]
                self.store.put_state(frame, (_encode_labels(before), now_scores, now_ious))
            self.save()
        return {"obj_id": obj.id, "frame": None, "undone": "delete"}

    # ------------------------------------------------------------------ prompts
    def add_point(self, obj_id: int, frame: int, x: float, y: float, positive: bool = True) -> dict:
        with self._idle():
            self.check_object(obj_id), self.check_frame(frame), self._check_xy(x, y)
            under = int(self.store.labels(frame)[min(int(y), self.height - 1), min(int(x), self.width - 1)])
            claim = positive and under not in (0, obj_id)  # crossing instruments: the click wins (docs/annotate.md)
            with self._saved_change([(obj_id, frame)]):
                prompt = self._prompt_for(obj_id, frame)
                prompt.points.append([float(x), float(y)])
                prompt.labels.append(1 if positive else 0)
                if claim:
                    self.claims.add((obj_id, frame))
                return self._prompted(obj_id, frame, "point", claim=claim)

    def add_box(self, obj_id: int, frame: int, box) -> dict:
        with self._idle():
            self.check_object(obj_id), self.check_frame(frame)
            if len(box) != 4:
                raise AnnotatorError(422, "a box is [x1, y1, x2, y2]")
            x1, y1, x2, y2 = (float(v) for v in box)
            self._check_xy(x1, y1), self._check_xy(x2, y2)
            if x2 - x1 < 1 or y2 - y1 < 1:
                raise AnnotatorError(422, f"box {list(box)} has no area (x1 < x2 and y1 < y2 needed)")
            with self._saved_change([(obj_id, frame)]):
                prompt = self._prompt_for(obj_id, frame)
                if prompt.box is not None:
                    self.history = [h for h in self.history if h != (obj_id, frame, "box")]
                prompt.box = [x1, y1, x2, y2]
                return self._prompted(obj_id, frame, "box")

    def add_mask(self, obj_id: int, frame: int, mask: np.ndarray) -> dict:
        with self._idle():
            self.check_object(obj_id), self.check_frame(frame)
            if mask.shape != (self.height, self.width) or not mask.any():
                raise AnnotatorError(422, f"a mask prompt must be a non-empty {self.width}x{self.height} mask")
            with self._saved_change([(obj_id, frame)]):
                self.prompts[(obj_id, frame)] = FramePrompt(mask=mask.astype(bool))
                return self._prompted(obj_id, frame, "mask")

    def _prompt_for(self, obj_id: int, frame: int) -> FramePrompt:
        """The object's prompt on the frame; a correction of loaded masks starts from them."""
        key = (obj_id, frame)
        if key not in self.prompts:
            self.prompts[key] = FramePrompt()
            seed = self.store.labels(frame) == obj_id
            if obj_id in self.loaded_ids and seed.any():
                self.prompts[key].mask = seed
        return self.prompts[key]

    def _prompted(self, obj_id: int, frame: int, kind: str, claim: bool = False) -> dict:
        start = time.perf_counter()
        self.history.append((obj_id, frame, kind))
        before = self.store.labels(frame) if claim else None
        self._apply(obj_id, frame)
        self.dirty[obj_id] = min(self.dirty.get(obj_id, frame), frame)
        if claim:  # the objects it took pixels from are re-tracked with it from here
            for other in np.unique(before[self.store.labels(frame) == obj_id]):
                if other not in (0, obj_id) and other in self.prompted_objects():
                    self.dirty[int(other)] = min(self.dirty.get(int(other), frame), frame)
        self.save()
        labels = self.store.labels(frame)
        return {"obj_id": obj_id, "frame": frame, "area": int((labels == obj_id).sum()),
                "score": self.store.scores.get(obj_id, {}).get(frame), "ms": round(1000 * (time.perf_counter() - start), 1)}

    def _apply(self, obj_id: int, frame: int) -> None:
        """Send the object's prompt on the frame to the tracker and store the new mask: it
        takes free pixels, or, where it claims the frame (``self.claims``), every pixel where
        it is positive (SAM2's non-overlap rule with the clicked object first)."""
        prompt = self.prompts.get((obj_id, frame))
        if prompt is None or prompt.empty() or not (any(prompt.labels) or prompt.box is not None or prompt.mask is not None):
            self.claims.discard((obj_id, frame))  # no positive prompt left: nothing claims the frame
        if prompt is None or prompt.empty():
            self.prompts.pop((obj_id, frame), None)
            if obj_id in self.session.obj_ids:
                with torch.inference_mode():
                    self.session.predictor.clear_all_prompts_in_frame(self.session.state, frame, obj_id, need_output=False)
                if not self.session.prompted_frames(obj_id):
                    self.session.remove_object(obj_id)
            self.store.remove_object(obj_id, [frame])
            return
        result = None
        with quality.recording() as ious:
            if prompt.mask is not None:
                result = self.session.add_mask(frame, obj_id, prompt.mask)
            if prompt.points or prompt.box is not None:
                result = self.session.add_points(frame, obj_id, prompt.points or None, prompt.labels or None,
                                                 box=prompt.box, clear=prompt.mask is None)
        row = result.obj_ids.index(obj_id)
        self.store.update(frame, [obj_id], result.mask_logits[row:row + 1], list(self.objects), result.object_scores,
                          quality.take_last(ious, [obj_id]), first=[obj_id] if (obj_id, frame) in self.claims else ())

    def undo(self) -> dict:
        """Take back the last prompt (a click, a box or a mask)."""
        with self._idle():
            if self.trash and self.trash[-1][0] == len(self.history):  # the last change was a delete
                return self._undelete()
            if not self.history:
                raise AnnotatorError(409, "nothing to undo")
            obj_id, frame, kind = self.history[-1]
            prompt = self.prompts.get((obj_id, frame))
            present = prompt is not None and {"point": bool(prompt.points), "box": prompt.box is not None,
                                              "mask": prompt.mask is not None}.get(kind, False)
            if not present:
                raise AnnotatorError(409, f"the undo history does not match the prompts (its last entry is a {kind} "
                                          f"of object {obj_id} on frame {frame}, which is not there); nothing undone")
            with self._saved_change([(obj_id, frame)]):
                self.history.pop()
                prompt = self.prompts[(obj_id, frame)]
                if kind == "point":
                    prompt.points.pop(), prompt.labels.pop()
                elif kind == "box":
                    prompt.box = None
                else:
                    prompt.mask = None
                self._apply(obj_id, frame)
                self.dirty[obj_id] = min(self.dirty.get(obj_id, frame), frame)
                self.save()
            return {"obj_id": obj_id, "frame": frame, "undone": kind}

    def first_prompt_frame(self, obj_id: int) -> Optional[int]:
        frames = [f for o, f in self.prompts if o == obj_id]
        return min(frames) if frames else None

    def prompted_objects(self) -> List[int]:
        return sorted({o for o, _ in self.prompts})

    # ------------------------------------------------------------------ tracking
    def start_tracking(self, direction: str = "forward", obj_ids: Optional[List[int]] = None) -> TrackJob:
        """Track in the background. By default the objects prompted since they were last
        tracked, each from its earliest new prompt (all objects if none is new)."""
        if direction not in DIRECTIONS:
            raise AnnotatorError(422, f"direction must be one of {', '.join(DIRECTIONS)}")
        with self._idle():
            prompted = self.prompted_objects()
            if not prompted:
                raise AnnotatorError(409, "nothing to track: prompt an object first")
            for obj_id in obj_ids or []:
                self.check_object(obj_id)
                if obj_id not in prompted:
                    raise AnnotatorError(409, f"object {obj_id} has no prompt yet")
            targets = obj_ids or [o for o in prompted if o in self.dirty] or prompted
            groups: Dict[int, List[int]] = {}
            for obj_id in targets:
                start = self.dirty.get(obj_id, self.first_prompt_frame(obj_id)) if not obj_ids else self.first_prompt_frame(obj_id)
                groups.setdefault(start, []).append(obj_id)
            span = {"forward": lambda s: self.num_frames - s, "reverse": lambda s: s + 1, "both": lambda s: self.num_frames}
            self.job = TrackJob(direction, sorted(targets), total=sum(span[direction](s) for s in groups))
            thread = threading.Thread(target=self._track, args=(self.job, groups), name="annotator-track", daemon=True)
            thread.start()
            return self.job

    def _track(self, job: TrackJob, groups: Dict[int, List[int]]) -> None:
        start_time = time.perf_counter()
        dirty_before = dict(self.dirty)
        try:
            with self._lock:
                for start, ids in sorted(groups.items()):
                    self._track_group(job, start, ids)
                    if job.cancel.is_set():
                        job.cancelled = True
                        break
                    for obj_id in ids:
                        self.dirty.pop(obj_id, None)
                self.save()
        except OSError as exc:  # a full disk: masks written so far are kept, the rest is re-tracked
            self.dirty.update(dirty_before)  # still to re-track
            job.error = str(disk_error(exc, self.output_dir, "save the tracked masks")).replace(
                "nothing was changed", "the masks tracked before it are kept")
            log.error("tracking stopped: %s", job.error)
            with contextlib.suppress(OSError):  # the session covers them if there is room for it
                self.save()
        except Exception as exc:  # the page shows it; the session stays usable
            log.exception("tracking failed")
            job.error = f"{type(exc).__name__}: {exc}"
        finally:
            job.seconds = round(time.perf_counter() - start_time, 3)
            job.running = False

    def _track_group(self, job: TrackJob, start: int, ids: List[int]) -> None:
        everyone = list(self.objects)  # their pixels survive unless they are tracked here
        subset = None if set(ids) == set(self.session.obj_ids) else ids
        first = {o: self.first_prompt_frame(o) for o in everyone}
        frames = self.session.propagate(direction=job.direction, start_frame=start, obj_ids=subset)
        try:
            with quality.recording() as ious:
                self._store_tracked(job, frames, first, everyone, ious)
        finally:
            frames.close()

    def _store_tracked(self, job: TrackJob, frames, first, everyone, ious) -> None:
        last_save = time.monotonic()
        for result in frames:
            logits, hidden = result.mask_logits, []
            if job.direction == "forward":  # no mask before an object's first prompt, as predict_video.py
                hidden = [i for i, o in enumerate(result.obj_ids) if (first.get(o) or 0) > result.frame_idx]
                if hidden:
                    logits = logits.clone()
                    logits[hidden] = -1.0
            shown = {o for i, o in enumerate(result.obj_ids) if i not in hidden}
            iou = quality.take_last(ious, result.obj_ids) or {}  # empty on prompted frames: kept from the prompt
            self.store.update(result.frame_idx, result.obj_ids, logits, everyone,
                              {o: v for o, v in result.object_scores.items() if o in shown},
                              {o: v for o, v in iou.items() if o in shown},
                              first=[o for o in shown if (o, result.frame_idx) in self.claims])
            job.done, job.frame = job.done + 1, result.frame_idx
            if time.monotonic() - last_save > SAVE_EVERY_S:  # masks so far survive a kill (still marked dirty)
                self.save()
                last_save = time.monotonic()
            if job.cancel.is_set():
                break

    def cancel_tracking(self) -> dict:
        if self.job is None or not self.job.running:
            raise AnnotatorError(409, "no tracking is running")
        self.job.cancel.set()
        return self.job.as_dict()

    def wait(self, timeout: float = 600.0) -> Optional[TrackJob]:
        """Block until the tracking job ends (tests, scripts)."""
        deadline = time.time() + timeout
        while self.job is not None and self.job.running and time.time() < deadline:
            time.sleep(0.02)
        return self.job

    # ------------------------------------------------------------------ reading
    def timeline(self) -> dict:
        """Per object and frame: presence probability and predicted IoU (None: not tracked),
        and the frames flagged for a look (probability under the threshold)."""
        out = {}
        for obj_id in self.objects:
            scores = self.store.scores.get(obj_id, {})
            probs = [None] * self.num_frames
            for frame, logit in scores.items():
                probs[frame] = round(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit)))), 4)
            flagged = [f for f, p in enumerate(probs) if p is not None and p < self.threshold]
            iou = [None] * self.num_frames
            for frame, value in self.store.ious.get(obj_id, {}).items():
                iou[frame] = round(value, 4)
            out[str(obj_id)] = {"prob": probs, "iou": iou, "flagged": flagged}
        return {"threshold": self.threshold, "objects": out, "version": self.store.version}

    def info(self) -> dict:
        return {
            "video": self.source.name, "num_frames": self.num_frames, "width": self.width, "height": self.height,
            "fps": self.source.fps, "preset": self.preset, "presets": list(PRESETS), "types": list(OBJECT_TYPES),
            "threshold": self.threshold, "objects": [o.as_dict() for o in self.objects.values()],
            "prompts": [{"obj_id": o, "frame": f} for o, f in sorted(self.prompts)],
            "fps_source": getattr(self.source, "fps_source", None) or "default",
            "export": {"ever": self.exported, "current": self.export_current},
            "can_undo": bool(self.history or self.trash), "dirty": {str(k): v for k, v in self.dirty.items()},
            "version": self.store.version, "output_dir": str(self.output_dir),
            "job": self.job.as_dict() if self.job else None,
        }

    # ------------------------------------------------------------------ persistence
    def save(self, export_current: Optional[bool] = False) -> None:
        """Write the session. Every save but an export's follows a change, so the last export
        is no longer current (``export_current=None``: leave it as it is)."""
        with self._meta_lock:
            was = self.export_current
            if export_current is not None:
                self.export_current = export_current
            try:
                session_file.save(self)
            except BaseException:  # not saved: nothing changed
                self.export_current = was
                raise

    def start_log(self) -> None:
        """Write the masks held now as a new log of tracked masks; later changes append to it.
        The session must be saved next (it names the log)."""
        header = {"video": self.source.name, "num_frames": self.num_frames, "size": [self.height, self.width]}
        frames = [(f, self.store.frame_state(f)) for f in self.store.known_frames()]
        journal = tracked.TrackedLog.create(self.output_dir, header, frames)
        if self.store.journal is not None:
            self.store.journal.close()
        self.store.journal = journal

    def close(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel.set()
            self.wait(30)
        self.session.close()
        if self.store.journal is not None:
            self.store.journal.close()
        self.resources.close()


def _decode_or_none(png: Optional[bytes]) -> Optional[np.ndarray]:
    return None if png is None else _decode(png)


def _encode_labels(labels: np.ndarray) -> bytes:
    return _encode(np.ascontiguousarray(labels, dtype=np.uint8))


def _clean_name(name: Optional[str]) -> str:
    """Names are shown and exported, never used in paths; keep them printable and short."""
    return "".join(ch for ch in str(name or "") if ch.isprintable())[:80].strip()
