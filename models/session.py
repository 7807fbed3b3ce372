"""A tracking session: one video, one predictor; prompts in, masks and statistics out.

Everything that tracks a video (``predict_video.py``, validation during training, the
benchmarks, the ablation) goes through this class, so a fix or a speed-up lands everywhere:

    with TrackingSession(predictor, source) as session:
        session.add_mask(0, obj_id=1, mask=first_mask)
        session.add_points(40, obj_id=2, points=[[120, 80]], labels=[1])
        for result in session.propagate(direction="both"):
            labels = result.masks()                  # bool [N, H, W], one row per object
        tokens = session.attended_tokens_per_frame()

It works with our :class:`~models.predictor.TSMSVideoPredictor` (lazy frame sources,
output eviction), with sam2's own ``SAM2VideoPredictor`` (a JPEG folder path), which
the benchmarks compare against, and with another backend of that API
(``inference.onnx_backend.OnnxVideoPredictor``: NumPy outputs, converted here). The
per-video state is sam2's plain dict; per-frame memory statistics are recorded here, not
on the modules.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from models.memory_pruning import SimilarityHistory, similarity_history
from models.memory_stats import MemoryAttentionStats, record_memory_stats, watch_memory_attention
from models.speed import autocast, check_dtype
from utils.errors import UserError


DIRECTIONS = ("forward", "reverse", "both")
# Per-object entries of sam2's inference state, keyed by object index.
_PER_OBJECT_KEYS = ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj",
                    "temp_output_dict_per_obj", "frames_tracked_per_obj")


@dataclass
class FrameResult:
    """What tracking produced on one frame.

    Attributes:
        frame_idx: the frame.
        obj_ids: the objects, in the order of the rows below.
        mask_logits: float ``[N, 1, H, W]`` at the video's resolution (> 0 is the mask).
        object_scores: object-presence logit per object id (> 0: the model sees it).
        memory: what memory attention attended, one entry per tracked object (empty on
            prompted frames, which read no memory).
    """

    frame_idx: int
    obj_ids: List[int]
    mask_logits: torch.Tensor
    object_scores: Dict[int, float] = field(default_factory=dict)
    memory: List[MemoryAttentionStats] = field(default_factory=list)

    def masks(self) -> np.ndarray:
        """bool ``[N, H, W]``, one row per object of :attr:`obj_ids`."""
        return (self.mask_logits[:, 0] > 0).cpu().numpy()

    def mask(self, obj_id: int) -> np.ndarray:
        return (self.mask_logits[self.obj_ids.index(obj_id), 0] > 0).cpu().numpy()

    @property
    def attended_tokens(self) -> Optional[float]:
        """Mean memory tokens attended per object on this frame (None on prompted frames)."""
        if not self.memory:
            return None
        return sum(s.attended_tokens for s in self.memory) / len(self.memory)


class TrackingSession:
    """Track objects through one video with a SAM2-style video predictor.

    Args:
        predictor: our ``TSMSVideoPredictor`` or sam2's ``SAM2VideoPredictor``.
        video: a frame source with ``read(idx)`` (decoded lazily; ours only) or a folder
            of JPEG frames (sam2's loader, frames preloaded).
        evict_outputs: drop per-frame outputs the memory can no longer reach, so memory
            stays flat on long videos (ours only; results are unchanged).
        offload_video_to_cpu / offload_state_to_cpu: as in sam2's ``init_state``.
        corrections_as_cond: a prompt on a frame that was already tracked becomes a
            conditioning frame, so it survives the next propagation. sam2 1.1.0's default
            (off) keeps it as an ordinary frame, which propagating through it recomputes
            without the prompt.
        dtype: ``"fp32"`` or ``"bf16"`` (autocast on the predictor's device, see
            :mod:`models.speed`); mask logits are returned as fp32 either way.
        batch_objects: track a frame's objects as one batch (ours only; the same results
            as one object at a time, see :mod:`models.multi_object`).
    """

    def __init__(self, predictor, video, *, evict_outputs: bool = True, offload_video_to_cpu: bool = False,
                 offload_state_to_cpu: bool = False, corrections_as_cond: bool = True, dtype: str = "fp32",
                 batch_objects: bool = False):
        self.predictor = predictor
        self.video = video
        self.corrections_as_cond = corrections_as_cond
        self.dtype = check_dtype(dtype)
        self.batch_objects = batch_objects
        kwargs = dict(offload_video_to_cpu=offload_video_to_cpu, offload_state_to_cpu=offload_state_to_cpu)
        if getattr(predictor, "reads_frame_sources", False):  # ours
            kwargs["evict_outputs"] = evict_outputs
        elif hasattr(video, "read"):
            raise TypeError("sam2's own predictor reads JPEG folders only; pass the folder path")
        elif batch_objects:
            raise TypeError("batch_objects needs our predictor (sam2 1.1.0 tracks one object at a time)")
        if getattr(predictor, "backend", "torch") != "torch" and self.dtype != "fp32":
            raise UserError(f"the {predictor.backend} backend runs fp32 only, not {self.dtype}")
        if hasattr(predictor, "memory_attention"):  # another backend reports in state["memory_calls"]
            watch_memory_attention(predictor.memory_attention)
        with torch.inference_mode(), self._compute():
            self.state = predictor.init_state(video if hasattr(video, "read") else str(video), **kwargs)
        self.memory_stats: Dict[int, List[MemoryAttentionStats]] = {}
        self.similarity_history = SimilarityHistory()  # read by pruning_threshold: auto

    # ------------------------------------------------------------------ video
    @property
    def num_frames(self) -> int:
        return int(self.state["num_frames"])

    @property
    def height(self) -> int:
        return int(self.state["video_height"])

    @property
    def width(self) -> int:
        return int(self.state["video_width"])

    @property
    def obj_ids(self) -> List[int]:
        return [int(o) for o in self.state["obj_ids"]]

    # ------------------------------------------------------------------ prompts
    def add_mask(self, frame_idx: int, obj_id: int, mask) -> FrameResult:
        """Prompt ``obj_id`` on ``frame_idx`` with a bool ``[H, W]`` mask."""
        with torch.inference_mode(), self._compute(), self._prompt_mode():
            out = self.predictor.add_new_mask(self.state, frame_idx=frame_idx, obj_id=obj_id, mask=mask)
        return self._prompt_result(*out)

    def add_points(self, frame_idx: int, obj_id: int, points=None, labels=None, *, box=None,
                   clear: bool = True) -> FrameResult:
        """Prompt with clicks (``[[x, y], ...]``, labels 1 positive / 0 negative) and/or a
        box ``[x1, y1, x2, y2]``, in video pixels. ``clear=False`` adds to earlier clicks."""
        with torch.inference_mode(), self._compute(), self._prompt_mode():
            out = self.predictor.add_new_points_or_box(self.state, frame_idx=frame_idx, obj_id=obj_id, points=points,
                                                       labels=labels, box=box, clear_old_points=clear)
        return self._prompt_result(*out)

    def _compute(self):
        return autocast(self.predictor.device, self.dtype)

    @contextlib.contextmanager
    def _prompt_mode(self):
        """sam2 reads this switch while adding a prompt; set it for the call only."""
        saved = self.predictor.add_all_frames_to_correct_as_cond
        self.predictor.add_all_frames_to_correct_as_cond = saved or self.corrections_as_cond
        try:
            with similarity_history(self.similarity_history):  # a correction reads memory too
                yield
        finally:
            self.predictor.add_all_frames_to_correct_as_cond = saved

    def add_box(self, frame_idx: int, obj_id: int, box) -> FrameResult:
        return self.add_points(frame_idx, obj_id, box=box)

    def add_prompts(self, prompts: Sequence, frames: Optional[Sequence[int]] = None) -> Dict[int, List[int]]:
        """Add prompt records (``obj_id``, ``frame_idx`` and ``mask`` / ``box`` / ``points`` +
        ``labels``), optionally only those on ``frames``; returns ``{frame: [obj_ids]}``."""
        applied: Dict[int, List[int]] = {}
        for p in sorted(prompts, key=lambda p: (p.frame_idx, p.obj_id)):
            if frames is not None and p.frame_idx not in frames:
                continue
            if p.mask is not None:
                self.add_mask(p.frame_idx, p.obj_id, p.mask)
            if p.box is not None or p.points:
                self.add_points(p.frame_idx, p.obj_id, p.points, p.labels, box=p.box, clear=p.mask is None)
            applied.setdefault(p.frame_idx, []).append(p.obj_id)
        return applied

    def remove_object(self, obj_id: int) -> None:
        with torch.inference_mode():
            self.predictor.remove_object(self.state, obj_id, strict=True, need_output=False)

    def prompted_frames(self, obj_id: int) -> List[int]:
        """The frames where ``obj_id`` was prompted (its conditioning frames)."""
        idx = self.state["obj_id_to_idx"][obj_id]
        out = self.state["output_dict_per_obj"][idx]
        temp = self.state["temp_output_dict_per_obj"][idx]
        return sorted(set(out["cond_frame_outputs"]) | set(temp["cond_frame_outputs"]))

    # ------------------------------------------------------------------ tracking
    def propagate(self, *, direction: str = "forward", start_frame: Optional[int] = None,
                  max_frames: Optional[int] = None, obj_ids: Optional[Sequence[int]] = None) -> Iterator[FrameResult]:
        """Track from ``start_frame`` (default: the first prompted frame) forward, in
        reverse, or both (forward first); at most ``max_frames`` frames per direction.

        ``obj_ids`` tracks only those objects: the others' outputs are neither recomputed
        nor changed (e.g. after correcting one object on a later frame).
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        state = self._view(obj_ids) if obj_ids is not None else self.state
        seen = set()
        for reverse in {"forward": [False], "reverse": [True], "both": [False, True]}[direction]:
            for result in self._propagate_once(state, start_frame, max_frames, reverse):
                if result.frame_idx not in seen:
                    seen.add(result.frame_idx)
                    yield result
        self.state["num_frames"] = state["num_frames"]  # a live stream may have ended early

    def _propagate_once(self, state, start_frame, max_frames, reverse) -> Iterator[FrameResult]:
        extra = {"batch_objects": True} if self.batch_objects else {}
        with torch.inference_mode():
            frames = self.predictor.propagate_in_video(state, start_frame_idx=start_frame,
                                                       max_frame_num_to_track=max_frames, reverse=reverse, **extra)
            while True:  # autocast only around the model's work, never around the caller's
                with record_memory_stats() as calls, self._compute(), similarity_history(self.similarity_history):
                    try:
                        frame_idx, ids, logits = next(frames)
                    except StopIteration:
                        return
                calls.extend(_backend_memory_calls(state))
                if calls:
                    self.memory_stats[int(frame_idx)] = list(calls)
                yield FrameResult(int(frame_idx), [int(o) for o in ids], _as_tensor(logits).float(),
                                  _object_scores(state, frame_idx), list(calls))

    def _prompt_result(self, frame_idx, ids, logits) -> FrameResult:
        _backend_memory_calls(self.state)  # prompted frames report no memory statistics
        return FrameResult(int(frame_idx), [int(o) for o in ids], _as_tensor(logits).float(),
                           _object_scores(self.state, frame_idx, temp=True))

    def _view(self, obj_ids: Sequence[int]) -> dict:
        """sam2's state restricted to some objects; it shares their per-object dicts (and the
        frames, features and constants), so tracking the view updates this session."""
        unknown = [o for o in obj_ids if o not in self.state["obj_id_to_idx"]]
        if unknown or not obj_ids:
            raise ValueError(f"unknown object id(s) {unknown or list(obj_ids)}; tracked: {self.obj_ids}")
        index = [self.state["obj_id_to_idx"][o] for o in obj_ids]
        view = dict(self.state)
        view["obj_ids"] = list(obj_ids)
        view["obj_id_to_idx"] = OrderedDict((o, i) for i, o in enumerate(obj_ids))
        view["obj_idx_to_id"] = OrderedDict((i, o) for i, o in enumerate(obj_ids))
        for key in _PER_OBJECT_KEYS:
            view[key] = {new: self.state[key][old] for new, old in enumerate(index)}
        return view

    # ------------------------------------------------------------------ statistics
    def attended_tokens_per_frame(self) -> Dict[int, float]:
        """Mean attended memory tokens (kept frames + object pointers) per tracked frame."""
        return {f: sum(s.attended_tokens for s in calls) / len(calls)
                for f, calls in sorted(self.memory_stats.items())}

    def mean_attended_tokens(self) -> Optional[float]:
        tokens = self.attended_tokens_per_frame()
        return float(np.mean(list(tokens.values()))) if tokens else None

    # ------------------------------------------------------------------ end
    def reset(self) -> None:
        """Forget every prompt, object and result (the video stays loaded)."""
        with torch.inference_mode():
            self.predictor.reset_state(self.state)
        self.memory_stats.clear()
        self.similarity_history = SimilarityHistory()

    def close(self) -> None:
        """Release the session's state (the video source stays open: its opener closes it)."""
        self.state = None
        self.memory_stats.clear()

    def __enter__(self) -> "TrackingSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _object_scores(state, frame_idx: int, temp: bool = False) -> Dict[int, float]:
    """Object-presence logits of each object on a frame, where the state holds them (moved
    to the host in one transfer: one sync per frame on GPU, not one per object)."""
    ids, logits = [], []
    sources = ("temp_output_dict_per_obj", "output_dict_per_obj") if temp else ("output_dict_per_obj",)
    for idx, obj_id in state["obj_idx_to_id"].items():
        for source in sources:
            per_obj = state[source][idx]
            out = per_obj["cond_frame_outputs"].get(frame_idx) or per_obj["non_cond_frame_outputs"].get(frame_idx)
            if out is not None and out.get("object_score_logits") is not None:
                ids.append(int(obj_id))
                logits.append(_as_tensor(out["object_score_logits"]).flatten()[:1].float())
                break
    return dict(zip(ids, torch.cat(logits).tolist())) if logits else {}


def _as_tensor(x) -> torch.Tensor:
    """Arrays of another backend (onnxruntime: NumPy) as tensors; tensors unchanged."""
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


def _backend_memory_calls(state) -> List[MemoryAttentionStats]:
    """What another backend's memory attention attended since the last call (it appends
    :class:`MemoryAttentionStats` fields, as a tuple, to ``state["memory_calls"]``)."""
    calls = state.get("memory_calls")
    if not calls:
        return []
    out = [MemoryAttentionStats(*c) for c in calls]
    calls.clear()
    return out
