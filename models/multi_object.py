"""Multi-object tracking in one pass: objects on the same frame share one batch.

sam2 1.1.0 tracks each object on its own: memory attention, mask decoder and memory
encoder run once per object per frame (batch 1), on the same image features. Here the
objects whose memory is made of the same frames go through ``track_step`` as one batch
(sam2's model is batch-agnostic; its predictor expands the frame's features to the batch),
so the per-call overhead and the small GEMMs are shared. Each object keeps sam2's
semantics: its own conditioning frames, objects added later, its own MS pruning (the
memory attention prunes each batch element on its own in eval mode). In fp32 the results
equal per-object tracking up to float reassociation (``tests/test_speed_multi_object.py``).
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Sequence, Tuple

import torch
from tqdm import tqdm

from models.eviction import is_evicted, memory_reach, pointer_reach
from models.memory_rules import RECORD_KEYS, horizon, pinned_frames, rule_settings

# Entries of a frame's output that memory reads (``_prepare_memory_conditioned_features``).
_MEMORY_KEYS = ("maskmem_features", "obj_ptr")


def processing_order(state, start_frame_idx, max_frame_num_to_track, reverse) -> range:
    """The frames sam2's ``propagate_in_video`` visits, in its order."""
    num_frames = state["num_frames"]
    if start_frame_idx is None:
        start_frame_idx = min(t for out in state["output_dict_per_obj"].values() for t in out["cond_frame_outputs"])
    if max_frame_num_to_track is None:
        max_frame_num_to_track = num_frames
    if reverse:
        end = max(start_frame_idx - max_frame_num_to_track, 0)
        return range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
    return range(start_frame_idx, min(start_frame_idx + max_frame_num_to_track, num_frames - 1) + 1)


def memory_window(predictor) -> int:
    """How far back (in frames) memory can read: memory frames and object pointers (the
    reach output eviction uses too; a quality-gate rule's selection horizon)."""
    window = max(memory_reach(predictor), pointer_reach(predictor))
    if rule_settings(predictor).selection in ("quality", "samurai"):
        window = max(window, horizon(predictor))
    return window


def _frames_read(predictor, out: dict, frame_idx: int, window: int) -> Tuple[int, ...]:
    """The non-conditioning frames this object's memory may read (a DAM4SAM anchor may be older)."""
    near = range(frame_idx - window, frame_idx + window + 1)
    frames = {t for t in near if t in out["non_cond_frame_outputs"]}
    pinned = pinned_frames(rule_settings(predictor), out, frame_idx)
    frames |= {t for t in pinned if t in out["non_cond_frame_outputs"]}
    return tuple(sorted(frames))


def _memory_key(predictor, out: dict, frame_idx: int, window: int) -> Tuple:
    """Which frames this object's memory would read: objects with the same key batch."""
    return tuple(sorted(out["cond_frame_outputs"])), _frames_read(predictor, out, frame_idx, window)


def group_objects(predictor, state, obj_idxs: Sequence[int], frame_idx: int, window: int) -> List[List[int]]:
    groups: Dict[Tuple, List[int]] = {}
    for obj_idx in obj_idxs:
        key = _memory_key(predictor, state["output_dict_per_obj"][obj_idx], frame_idx, window)
        groups.setdefault(key, []).append(obj_idx)
    return list(groups.values())


class _MergedOutputs:
    """A group's per-frame memory entries concatenated along the batch, built once per
    frame and group within one propagation (until that frame is tracked again)."""

    def __init__(self):
        self._cache: Dict[Tuple, dict] = {}

    def entry(self, state, kind: str, frame: int, group: Tuple[int, ...]) -> dict:
        key = (kind, frame, group)
        if key not in self._cache:
            outs = [state["output_dict_per_obj"][o][kind][frame] for o in group]
            if any(is_evicted(o) for o in outs):  # its pointer only (memory reads it as missing)
                merged = {**outs[0], "obj_ptr": torch.cat([o["obj_ptr"] for o in outs])}
            else:
                merged = {k: torch.cat([o[k] for o in outs]) for k in _MEMORY_KEYS}
                merged["maskmem_pos_enc"] = [torch.cat(xs) for xs in zip(*(o["maskmem_pos_enc"] for o in outs))]
            for k in RECORD_KEYS:  # a memory-selection rule's per-object scores and state
                if all(o.get(k) is not None for o in outs):
                    merged[k] = torch.cat([o[k] for o in outs])
            self._cache[key] = merged
        return self._cache[key]

    def output_dict(self, predictor, state, group: Tuple[int, ...], frame_idx: int, window: int) -> dict:
        first = state["output_dict_per_obj"][group[0]]
        cond = {t: self.entry(state, "cond_frame_outputs", t, group) for t in first["cond_frame_outputs"]}
        frames = _frames_read(predictor, first, frame_idx, window)
        non_cond = {t: self.entry(state, "non_cond_frame_outputs", t, group) for t in frames}
        return {"cond_frame_outputs": cond, "non_cond_frame_outputs": non_cond}

    def forget_frame(self, frame_idx: int) -> None:
        """A frame was (re)tracked: its merged entries are stale (a re-propagation over frames
        tracked before would otherwise read their old memory)."""
        for k in [k for k in self._cache if k[0] == "non_cond_frame_outputs" and k[1] == frame_idx]:
            del self._cache[k]

    def forget_before(self, frame_idx: int, window: int, reverse: bool) -> None:
        far = [k for k in self._cache if k[0] == "non_cond_frame_outputs"
               and (k[1] > frame_idx + window if reverse else k[1] < frame_idx - window)]
        for k in far:
            del self._cache[k]


def _split(current_out: dict, i: int) -> dict:
    """Object ``i``'s slice of a batched frame output (views, no copies)."""
    out = {}
    for key, value in current_out.items():
        if isinstance(value, list):
            out[key] = [x[i: i + 1] for x in value]
        else:
            out[key] = value[i: i + 1] if value is not None else None
    return out


def propagate_objects_batched(predictor, state, start_frame_idx=None, max_frame_num_to_track=None,
                              reverse=False) -> Iterator:
    """sam2's ``propagate_in_video`` (same outputs, same state updates), objects batched."""
    predictor.propagate_in_video_preflight(state)
    obj_ids, n_obj = state["obj_ids"], len(state["obj_ids"])
    window, merged = memory_window(predictor), _MergedOutputs()
    for frame_idx in tqdm(processing_order(state, start_frame_idx, max_frame_num_to_track, reverse),
                          desc="propagate in video"):
        pred_masks: List[torch.Tensor] = [None] * n_obj
        to_track = []
        for obj_idx in range(n_obj):
            out = state["output_dict_per_obj"][obj_idx]
            if frame_idx in out["cond_frame_outputs"]:  # prompted here: sam2 reuses its output
                pred_masks[obj_idx] = out["cond_frame_outputs"][frame_idx]["pred_masks"].to(state["device"], non_blocking=True)
                if predictor.clear_non_cond_mem_around_input:
                    predictor._clear_obj_non_cond_mem_around_input(state, frame_idx, obj_idx)
            else:
                to_track.append(obj_idx)
        for group in group_objects(predictor, state, to_track, frame_idx, window):
            group = tuple(group)
            current_out, masks = predictor._run_single_frame_inference(
                inference_state=state, output_dict=merged.output_dict(predictor, state, group, frame_idx, window),
                frame_idx=frame_idx, batch_size=len(group), is_init_cond_frame=False, point_inputs=None,
                mask_inputs=None, reverse=reverse, run_mem_encoder=True,
            )
            for i, obj_idx in enumerate(group):
                state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"][frame_idx] = _split(current_out, i)
                pred_masks[obj_idx] = masks[i: i + 1]
        for obj_idx in range(n_obj):
            state["frames_tracked_per_obj"][obj_idx][frame_idx] = {"reverse": reverse}
        merged.forget_frame(frame_idx)
        merged.forget_before(frame_idx, window, reverse)
        _, video_res_masks = predictor._get_orig_video_res_output(state, torch.cat(pred_masks, dim=0))
        yield frame_idx, obj_ids, video_res_masks
