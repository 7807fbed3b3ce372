"""The memory-selection hook: SAM2's memory assembly over the frames a rule picked.

:class:`MemorySelectionMixin` goes in front of ``SAM2Base`` in our predictor and our
training model. With ``selection: recent`` (every preset before these rules) it does
nothing: SAM2's own code runs, bit for bit. Otherwise, for each object (batch row):

1. after each frame, :func:`models.memory_rules.frame_records` stores the frame's scores
   and the rule's running state in its output (``_track_step``);
2. before memory attention, :func:`models.memory_rules.plan_memory` picks the frames, and
   SAM2's ``_prepare_memory_conditioned_features`` runs on a view of the output dict laid
   out so that SAM2's fixed reading order (slot k = the frame k back, pointer k = the frame
   k back, conditioning frames first) reads exactly those frames. Rows (objects) whose
   plans differ run as separate groups and are put back in batch order;
3. with SAMURAI's motion-aware mask choice, a hook on the mask decoder weights the IoU
   predictions by the Kalman motion score before SAM2 takes the best mask.

Nothing of SAM2 is copied: its own memory assembly, attention and heads run unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Dict, Iterator, List, Optional, Sequence

import torch

from models.memory_pruning import clip_rows_subset
from models.memory_rules import (MemoryPlan, MotionContext, frame_records, motion_context, plan_memory,
                                 rule_settings, weight_ious_by_motion)

_MOTION: contextvars.ContextVar[Optional[MotionContext]] = contextvars.ContextVar("tsms_motion", default=None)
_CAPTURE: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("tsms_memory_records", default=None)


@contextlib.contextmanager
def capture_records() -> Iterator[dict]:
    """Collect the records the frame's ``_track_step`` made (sam2's predictor keeps only a
    compact copy of each output; the caller adds these to it)."""
    box: dict = {}
    token = _CAPTURE.set(box)
    try:
        yield box
    finally:
        _CAPTURE.reset(token)


def _motion_choice_hook(module, args, output):
    ctx = _MOTION.get()
    if ctx is None:
        return None
    masks, ious, tokens, object_scores = output
    weighted = weight_ious_by_motion(ctx, masks, ious, object_scores)
    return None if weighted is None else (masks, weighted, tokens, object_scores)


def _take(x: torch.Tensor, rows: Optional[Sequence[int]]) -> torch.Tensor:
    return x if rows is None else x[torch.tensor(rows, device=x.device)]


def _spatial(entry: dict, rows) -> dict:
    return {"maskmem_features": _take(entry["maskmem_features"], rows),
            "maskmem_pos_enc": [_take(p, rows) for p in entry["maskmem_pos_enc"]],
            "obj_ptr": _take(entry["obj_ptr"], rows)}


def planned_output_dict(model, output_dict: dict, plan: MemoryPlan, frame_idx: int, reverse: bool,
                        rows: Optional[Sequence[int]]) -> dict:
    """The view of ``output_dict`` in which SAM2 reads ``plan`` (restricted to ``rows``)."""
    source = output_dict["non_cond_frame_outputs"]
    cond = {t: (out if rows is None else _spatial(out, rows)) for t, out in output_dict["cond_frame_outputs"].items()}
    for t in plan.anchors:  # attended like the prompted frames: conditioning-frame encoding
        cond[t] = _spatial(source[t], rows)
    ref = next(iter(cond.values()))
    batch = ref["maskmem_features"].shape[0]
    non_cond = {}
    for k, (feat, ptr) in enumerate(plan.slots, start=1):
        if feat is None and ptr is None:
            continue  # nothing at k back (SAM2 pads)
        key = frame_idx + k if reverse else frame_idx - k
        pointer = _take(source[ptr]["obj_ptr"], rows) if ptr is not None else None
        if feat is not None:
            non_cond[key] = {**_spatial(source[feat], rows), "obj_ptr": pointer}
        elif k < model.num_maskmem:  # a pointer without memory features: an empty memory frame
            feats, pos = ref["maskmem_features"], ref["maskmem_pos_enc"][-1]
            non_cond[key] = {"maskmem_features": feats.new_zeros(batch, feats.shape[1], 0, 0),
                             "maskmem_pos_enc": [pos.new_zeros(batch, pos.shape[1], 0, 0)], "obj_ptr": pointer}
        else:
            non_cond[key] = {"obj_ptr": pointer}
    return {"cond_frame_outputs": cond, "non_cond_frame_outputs": non_cond}


class MemorySelectionMixin:
    """Pick memory frames by ``MemorySpec.selection`` (see the module doc); put it before
    ``SAM2Base`` (or a subclass) in the bases."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.memory_rule = rule_settings(self)  # plain settings from the memory spec
        if self.memory_rule.uses_motion:
            self.sam_mask_decoder.register_forward_hook(_motion_choice_hook)

    def _track_step(self, frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds, feat_sizes,
                    point_inputs, mask_inputs, output_dict, num_frames, track_in_reverse, prev_sam_mask_logits):
        args = (frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds, feat_sizes,
                point_inputs, mask_inputs, output_dict, num_frames, track_in_reverse, prev_sam_mask_logits)
        settings = self.memory_rule
        if not settings.active:
            return super()._track_step(*args)
        prompted = point_inputs is not None or mask_inputs is not None
        motion = None
        if settings.uses_motion:
            motion = motion_context(settings, output_dict, frame_idx, track_in_reverse,
                                    current_vision_feats[-1].shape[1], self.image_size, prompted)
        token = _MOTION.set(None if prompted else motion)
        try:
            current_out, sam_outputs, high_res_features, pix_feat = super()._track_step(*args)
        finally:
            _MOTION.reset(token)
        records = frame_records(settings, sam_outputs, output_dict, frame_idx, track_in_reverse, prompted, motion)
        if motion is not None and motion.original_ious is not None:  # callers see the decoder's own IoUs
            sam_outputs = sam_outputs[:2] + (motion.original_ious,) + tuple(sam_outputs[3:])
        current_out.update(records)
        box = _CAPTURE.get()
        if box is not None:
            box.update(records)
        return current_out, sam_outputs, high_res_features, pix_feat

    def _prepare_memory_conditioned_features(self, frame_idx, is_init_cond_frame, current_vision_feats,
                                             current_vision_pos_embeds, feat_sizes, output_dict, num_frames,
                                             track_in_reverse=False):
        settings = self.memory_rule
        if settings.selection == "recent" or is_init_cond_frame or self.num_maskmem == 0:
            return super()._prepare_memory_conditioned_features(
                frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds, feat_sizes,
                output_dict, num_frames, track_in_reverse)
        batch = current_vision_feats[-1].shape[1]
        groups: Dict[MemoryPlan, List[int]] = {}
        for row in range(batch):
            plan = plan_memory(settings, self, output_dict, frame_idx, track_in_reverse, num_frames, row)
            groups.setdefault(plan, []).append(row)
        if len(groups) == 1:
            (plan, _), = groups.items()
            view = planned_output_dict(self, output_dict, plan, frame_idx, track_in_reverse, None)
            return super()._prepare_memory_conditioned_features(
                frame_idx, False, current_vision_feats, current_vision_pos_embeds, feat_sizes, view, num_frames,
                track_in_reverse)
        out = None
        for plan, rows in groups.items():  # objects that attend different frames: one group each
            view = planned_output_dict(self, output_dict, plan, frame_idx, track_in_reverse, rows)
            idx = torch.tensor(rows, device=current_vision_feats[-1].device)
            feats = [x[:, idx] for x in current_vision_feats]  # [HW, B, C]
            pos = [x[:, idx] for x in current_vision_pos_embeds]
            with clip_rows_subset(rows):
                part = super()._prepare_memory_conditioned_features(
                    frame_idx, False, feats, pos, feat_sizes, view, num_frames, track_in_reverse)
            if out is None:
                out = part.new_empty(batch, *part.shape[1:])
            out[idx] = part
        return out
