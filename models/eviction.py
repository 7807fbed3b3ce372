"""Evicting per-frame outputs that tracking can no longer reach (flat memory on long videos).

SAM2 keeps every tracked frame's outputs (memory features, mask logits, object pointer)
for the whole video. Tracking frame ``u`` only reads:

* memory features of the previous ``num_maskmem - 1`` frames (with the eval stride ``r``:
  back to ``u - (num_maskmem - 2) * r - 1``), and
* object pointers of the previous ``max_obj_ptrs_in_encoder - 1`` frames,

plus the conditioning frames, which are never evicted. After frame ``t`` is yielded, every
later frame in the same direction needs nothing older, so older outputs are dropped:
memory features and mask logits beyond the memory reach, the whole entry beyond the pointer
reach. Frames within reach of a conditioning frame are pinned, because a later pass in the
other direction (or a re-run) starts from there. With that, propagation gives results
identical to non-evicting tracking.

The last tracked frame's own memory frames are kept too, so re-prompting it is identical.
The exception is a new prompt further back: the prompted frame, and the frames re-tracked
after it, may find evicted frames among their memory frames. Those are
then read as missing (sam2's padding), memory and pointer alike
(:func:`hide_evicted_memory`), so results there can differ from keeping everything.
"""

from __future__ import annotations

from models.memory_rules import RECORD_KEYS, keep_for_selection, pinned_frames, rule_settings

_STRIPPED = "evicted"


def memory_reach(model) -> int:
    """How many frames back a tracked frame's memory features can reach."""
    if model.num_maskmem <= 1:
        return 0
    stride = max(1, int(getattr(model, "memory_temporal_stride_for_eval", 1)))
    return max(1, (model.num_maskmem - 2) * stride + 1)


def pointer_reach(model) -> int:
    """How many frames back object pointers are read."""
    return max(0, model.max_obj_ptrs_in_encoder - 1) if model.use_obj_ptrs_in_encoder else 0


def evict_unreachable_outputs(model, state, frame_idx: int, reverse: bool) -> int:
    """Drop outputs unreachable from frames after ``frame_idx`` (in the tracking direction).

    Returns the number of entries stripped or removed.
    """
    mem_reach, ptr_reach = memory_reach(model), pointer_reach(model)
    reach = max(mem_reach, ptr_reach)
    sign = -1 if reverse else 1
    nxt = frame_idx + sign  # the next frame to be tracked
    cond = {t for d in state["output_dict_per_obj"].values() for t in d["cond_frame_outputs"]}
    rule = rule_settings(model)  # a memory-selection rule may attend older frames
    changed = 0
    for out in state["output_dict_per_obj"].values():
        non_cond = out["non_cond_frame_outputs"]
        pinned = pinned_frames(rule, out, frame_idx)
        for t in list(non_cond):
            behind = (nxt - t) * sign  # how far back from the next frame
            # one frame more than the next frame needs: a new prompt on the last tracked
            # frame still finds all its memory frames and pointers (identical to keeping all)
            if behind <= mem_reach + 1 or any(abs(t - c) <= reach for c in cond):
                continue
            entry = non_cond[t]
            if not entry.get(_STRIPPED) and (t in pinned or keep_for_selection(rule, model, entry, behind)):
                continue
            if behind > ptr_reach + 1:
                del non_cond[t]
                changed += 1
            elif not entry.get(_STRIPPED):
                non_cond[t] = {
                    "obj_ptr": entry["obj_ptr"],
                    "object_score_logits": entry["object_score_logits"],
                    "maskmem_features": None,
                    "maskmem_pos_enc": None,
                    "pred_masks": None,
                    _STRIPPED: True,
                    **{k: entry[k] for k in RECORD_KEYS if k in entry},  # the rule's scores and state
                }
                changed += 1
    return changed


def is_evicted(entry: dict) -> bool:
    """An entry stripped to its object pointer (no memory features)."""
    return bool(entry.get(_STRIPPED))


def memory_frame_indices(model, frame_idx: int, reverse: bool) -> list:
    """The non-conditioning frames sam2 reads memory from when tracking ``frame_idx``
    (``SAM2Base._prepare_memory_conditioned_features``, eval stride)."""
    stride = max(1, int(getattr(model, "memory_temporal_stride_for_eval", 1)))
    frames = []
    for t_rel in range(1, model.num_maskmem):
        if t_rel == 1:
            frames.append(frame_idx + 1 if reverse else frame_idx - 1)
        elif reverse:
            frames.append(-(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride)
        else:
            frames.append(((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride)
    return frames


def hide_evicted_memory(model, output_dict: dict, frame_idx: int, reverse: bool) -> dict:
    """``output_dict`` without the evicted entries among ``frame_idx``'s memory frames (sam2
    would crash on their missing features). Forward tracking never meets one, so this
    returns ``output_dict`` itself there; only a prompt or a re-run behind the tracking
    front does."""
    non_cond = output_dict["non_cond_frame_outputs"]
    hidden = [t for t in memory_frame_indices(model, frame_idx, reverse) if is_evicted(non_cond.get(t, {}))]
    if not hidden:
        return output_dict
    return {**output_dict, "non_cond_frame_outputs": {t: o for t, o in non_cond.items() if t not in hidden}}


def forget_evicted_frame(state, frame_idx: int) -> None:
    """A new prompt on a stripped frame starts from scratch (its old logits are gone); the
    stripped frames among its memory frames are read as missing (:func:`hide_evicted_memory`)."""
    for out in state.get("output_dict_per_obj", {}).values():
        entry = out["non_cond_frame_outputs"].get(frame_idx)
        if entry is not None and entry.get(_STRIPPED):
            del out["non_cond_frame_outputs"][frame_idx]
