"""Track with an ONNX export (``inference/export_onnx.py``) on onnxruntime: no torch needed.

:class:`OnnxVideoPredictor` has the API of sam2's ``SAM2VideoPredictor`` (``init_state``,
``add_new_mask``, ``add_new_points_or_box``, ``propagate_in_video``, ``reset_state``) and
its session dict, so :class:`models.session.TrackingSession` drives it like our PyTorch
predictor. The graphs do the learned work; the loop of sam2's predictor (which memories a
frame reads, object pointers and their positions, prompt consolidation), the MS rule
(:mod:`inference.onnx_memory`) and output eviction run here, in NumPy:

    predictor = OnnxVideoPredictor("exports/mini")          # memory: the export's, or a preset's fields
    state = predictor.init_state("video/frames")            # a JPEG/PNG folder or a frame source
    predictor.add_new_mask(state, 0, obj_id=1, mask=first_mask)
    for frame_idx, obj_ids, logits in predictor.propagate_in_video(state):
        masks = logits[:, 0] > 0                            # [N, H, W]

Differences from PyTorch: sam2's hole filling (a CUDA extension, off on CPU) is not done.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Dict, Optional

import numpy as np

from inference.onnx_model import FolderFrames, OnnxModel, preprocess_frame, read_manifest  # noqa: F401 (API)
from inference.onnx_memory import (SimilarityHistory, evict_unreachable_outputs, forget_evicted_frame,
                                   avg_pool_tokens, resize, round_to_bf16, select_frames_to_prune)
from utils.errors import UserError
from utils.ms_rule import keep_indices
from utils.session_state import new_session_state

log = logging.getLogger(__name__)

NO_OBJ_SCORE = -1024.0
LIVE_NUM_FRAMES = 2**31 - 1  # a live stream's length is unknown; an upper bound, as models.frames
_PER_OBJECT_KEYS = ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj",
                    "temp_output_dict_per_obj", "frames_tracked_per_obj")


class OnnxVideoPredictor:
    """sam2's video predictor over an ONNX export (see the module doc).

    Args:
        onnx_dir: the export folder.
        memory: memory settings (``MemorySpec`` fields, e.g. ``spec.as_dict()``) to use
            instead of the export's; the bank size must be the export's.
        providers: onnxruntime execution providers (default CPU).
    """

    backend = "onnxruntime"
    reads_frame_sources = True
    device = "cpu"

    def __init__(self, onnx_dir, memory: Optional[dict] = None, providers=None, threads: Optional[int] = None):
        self.model = OnnxModel(onnx_dir, providers, threads)
        settings = self.model.manifest["settings"]
        for key, value in settings.items():
            setattr(self, key, value)
        self.memory = dict(self.model.manifest["memory"], **(memory or {}))
        if int(self.memory["memory_bank_size"]) != self.num_maskmem:
            raise UserError(f"memory_bank_size {self.memory['memory_bank_size']} differs from the export's "
                            f"{self.num_maskmem}; export again with that bank size")
        if self.memory.get("selection", "recent") != "recent" or self.memory.get("motion_mask_choice"):
            raise UserError(f"the onnxruntime loop implements SAM2's recent-frame memory only, not "
                            f"{self.memory.get('name', 'this memory')}'s {self.memory.get('selection')} selection; "
                            f"use the PyTorch backend")
        unsupported = [k for k in ("non_overlap_masks", "clear_non_cond_mem_around_input") if settings.get(k)]
        if unsupported:
            raise UserError(f"the onnxruntime loop does not implement {', '.join(unsupported)} (set in this export)")
        self.add_all_frames_to_correct_as_cond = False
        self.hw = self.feat_size * self.feat_size

    # ------------------------------------------------------------------ state
    def init_state(self, video, offload_video_to_cpu=False, offload_state_to_cpu=False, evict_outputs=False):
        source = video if hasattr(video, "read") else FolderFrames(video)
        num_frames = LIVE_NUM_FRAMES if getattr(source, "live", False) else len(source)
        return new_session_state(source, num_frames, source.height, source.width, "cpu",
                                 evict_outputs=bool(evict_outputs), similarity_history=SimilarityHistory(),
                                 memory_calls=[])  # memory_calls: MemoryAttentionStats fields, drained by the session

    def reset_state(self, state) -> None:
        for key in _PER_OBJECT_KEYS + ("obj_id_to_idx", "obj_idx_to_id"):
            state[key].clear()
        state["obj_ids"] = []
        state["similarity_history"] = SimilarityHistory()

    def remove_object(self, state, obj_id, strict=False, need_output=True):
        """sam2's ``remove_object``: forget one object; returns (object ids, [(frame, masks)]
        for the frames it was prompted on)."""
        idx = state["obj_id_to_idx"].get(obj_id)
        if idx is None:
            if strict:
                raise RuntimeError(f"Cannot remove object id {obj_id} as it doesn't exist. "
                                   f"All existing object ids: {state['obj_ids']}.")
            return state["obj_ids"], []
        if len(state["obj_id_to_idx"]) == 1:
            self.reset_state(state)
            return state["obj_ids"], []
        prompted = set(state["point_inputs_per_obj"][idx]) | set(state["mask_inputs_per_obj"][idx])
        remaining = [o for o in state["obj_ids"] if o != obj_id]
        old = [state["obj_id_to_idx"][o] for o in remaining]
        for key in _PER_OBJECT_KEYS:  # in place: sessions' views share these dicts
            values = [state[key][i] for i in old]
            state[key].clear()
            state[key].update(enumerate(values))
        state["obj_id_to_idx"] = OrderedDict((o, i) for i, o in enumerate(remaining))
        state["obj_idx_to_id"] = OrderedDict(enumerate(remaining))
        state["obj_ids"] = remaining
        updated = []
        if need_output:
            for frame_idx in sorted(prompted):
                is_cond = any(frame_idx in t["cond_frame_outputs"] for t in state["temp_output_dict_per_obj"].values())
                updated.append((frame_idx, self._consolidated_video_res(state, frame_idx, is_cond)))
        return state["obj_ids"], updated

    def _obj_idx(self, state, obj_id) -> int:
        idx = state["obj_id_to_idx"].get(obj_id)
        if idx is None:
            idx = len(state["obj_id_to_idx"])
            state["obj_id_to_idx"][obj_id] = idx
            state["obj_idx_to_id"][idx] = obj_id
            state["obj_ids"] = list(state["obj_id_to_idx"])
            state["point_inputs_per_obj"][idx] = {}
            state["mask_inputs_per_obj"][idx] = {}
            state["output_dict_per_obj"][idx] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
            state["temp_output_dict_per_obj"][idx] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
            state["frames_tracked_per_obj"][idx] = {}
        return idx

    def _features(self, state, frame_idx: int) -> Dict[str, np.ndarray]:
        cached = state["cached_features"].get(frame_idx)
        if cached is None:
            image = preprocess_frame(state["images"].read(frame_idx), self.image_size)
            s0, s1, feat, pos = self.model.run("image_encoder", image=image)
            cached = {"feat_s0": s0, "feat_s1": s1, "vision_feat": feat, "vision_pos": pos}
            state["cached_features"] = {frame_idx: cached}  # the latest frame only, as sam2
        return cached

    # ------------------------------------------------------------------ prompts
    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, clear_old_points=True,
                              normalize_coords=True, box=None):
        forget_evicted_frame(state, frame_idx)
        idx = self._obj_idx(state, obj_id)
        if (points is not None) != (labels is not None):
            raise ValueError("points and labels must be provided together")
        if points is None and box is None:
            raise ValueError("at least one of points or box must be provided as input")
        pts = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32).reshape(-1, 2)
        lab = np.zeros((0,), np.int32) if labels is None else np.asarray(labels, np.int32).reshape(-1)
        if box is not None:
            if not clear_old_points:
                raise ValueError("cannot add box without clearing old points")
            pts = np.concatenate([np.asarray(box, np.float32).reshape(2, 2), pts])
            lab = np.concatenate([np.array([2, 3], np.int32), lab])
        pts, lab = pts[None], lab[None]
        if normalize_coords:
            pts = pts / np.array([state["video_width"], state["video_height"]], np.float32)
        pts = (pts * np.float32(self.image_size)).astype(np.float32)
        old = None if clear_old_points else state["point_inputs_per_obj"][idx].get(frame_idx)
        if old is not None:
            pts = np.concatenate([old["point_coords"], pts], axis=1)
            lab = np.concatenate([old["point_labels"], lab], axis=1)
        point_inputs = {"point_coords": pts, "point_labels": lab}
        state["point_inputs_per_obj"][idx][frame_idx] = point_inputs
        state["mask_inputs_per_obj"][idx].pop(frame_idx, None)
        return self._add_prompt(state, idx, frame_idx, point_inputs=point_inputs)

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        forget_evicted_frame(state, frame_idx)
        idx = self._obj_idx(state, obj_id)
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError("the mask must be [H, W]")
        m = mask.astype(np.float32)[None, None]
        if m.shape[-2:] != (self.image_size, self.image_size):
            m = (resize(m, (self.image_size, self.image_size), antialias=True) >= 0.5).astype(np.float32)
        state["mask_inputs_per_obj"][idx][frame_idx] = m
        state["point_inputs_per_obj"][idx].pop(frame_idx, None)
        return self._add_prompt(state, idx, frame_idx, mask_inputs=m)

    def _add_prompt(self, state, idx, frame_idx, point_inputs=None, mask_inputs=None):
        tracked = state["frames_tracked_per_obj"][idx]
        is_init = frame_idx not in tracked
        reverse = False if is_init else tracked[frame_idx]["reverse"]
        out_dict, temp = state["output_dict_per_obj"][idx], state["temp_output_dict_per_obj"][idx]
        is_cond = is_init or self.add_all_frames_to_correct_as_cond
        key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
        prev_logits = None
        if point_inputs is not None:
            prev = temp[key].get(frame_idx) or out_dict["cond_frame_outputs"].get(frame_idx) \
                or out_dict["non_cond_frame_outputs"].get(frame_idx)
            if prev is not None and prev["pred_masks"] is not None:
                prev_logits = np.clip(prev["pred_masks"], -32.0, 32.0)
        out, _ = self._run_single_frame(state, out_dict, frame_idx, is_init, point_inputs, mask_inputs, reverse,
                                        run_mem_encoder=False, prev_logits=prev_logits)
        temp[key][frame_idx] = out
        return frame_idx, list(state["obj_ids"]), self._consolidated_video_res(state, frame_idx, is_cond)

    def _consolidated_video_res(self, state, frame_idx, is_cond) -> np.ndarray:
        h, w = state["video_height"], state["video_width"]
        key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
        masks = np.full((len(state["obj_ids"]), 1, h, w), NO_OBJ_SCORE, dtype=np.float32)
        for idx in range(len(state["obj_ids"])):
            temp, out_dict = state["temp_output_dict_per_obj"][idx], state["output_dict_per_obj"][idx]
            out = temp[key].get(frame_idx) or out_dict["cond_frame_outputs"].get(frame_idx) \
                or out_dict["non_cond_frame_outputs"].get(frame_idx)
            if out is not None and out["pred_masks"] is not None:
                masks[idx] = resize(out["pred_masks"], (h, w))[0]
        return masks

    # ------------------------------------------------------------------ one frame
    def _run_single_frame(self, state, out_dict, frame_idx, is_init, point_inputs, mask_inputs, reverse,
                          run_mem_encoder, prev_logits=None):
        f = self._features(state, frame_idx)
        if mask_inputs is not None:  # sam2's use_mask_input_as_output_without_sam
            low, obj_ptr, scores = self.model.run("mask_prompt", pix_feat=f["vision_feat"], feat_s0=f["feat_s0"],
                                                  feat_s1=f["feat_s1"], mask=mask_inputs)
        else:
            pix = self._memory_conditioned(state, f, frame_idx, is_init, out_dict, reverse)
            num_pts = 0 if point_inputs is None else point_inputs["point_labels"].shape[1]
            multimask = (self.multimask_output_in_sam and (is_init or self.multimask_output_for_tracking)
                         and self.multimask_min_pt_num <= num_pts <= self.multimask_max_pt_num)
            if point_inputs is None:
                coords, labels = np.zeros((1, 1, 2), np.float32), -np.ones((1, 1), np.int32)
            else:
                coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
            has_mask = prev_logits is not None
            size = 4 * self.feat_size
            mask_input = prev_logits if has_mask else np.zeros((1, 1, size, size), np.float32)
            low, obj_ptr, scores = self.model.run(
                "sam_heads_multi" if multimask else "sam_heads_single", pix_feat=pix, feat_s0=f["feat_s0"],
                feat_s1=f["feat_s1"], point_coords=coords, point_labels=labels, mask_input=mask_input,
                has_mask=np.full((1,), float(has_mask), np.float32))
        features = None
        if run_mem_encoder:
            binarize = self.binarize_mask_from_pts_for_mem_enc and point_inputs is not None
            features = self._encode_memory(state, f, low, scores, binarize)
        out = {"maskmem_features": features, "maskmem_pos_enc": state["constants"].get("maskmem_pos_enc"),
               "pred_masks": low, "obj_ptr": obj_ptr, "object_score_logits": scores}
        return out, low

    def _encode_memory(self, state, f, low, scores, binarize: bool) -> np.ndarray:
        features, pos = self.model.run("memory_encoder", vision_feat=f["vision_feat"], low_res_masks=low,
                                       object_score_logits=scores, binarize=np.full((1,), float(binarize), np.float32))
        state["constants"].setdefault("maskmem_pos_enc", pos[:1])
        return round_to_bf16(features)  # sam2 stores memory features in bf16

    def _memory_conditioned(self, state, f, frame_idx, is_init, out_dict, reverse) -> np.ndarray:
        """sam2's ``_prepare_memory_conditioned_features`` with the MS rule in front of the
        attention; returns ``pix_feat_with_mem [1, C, h, w]``."""
        feat = f["vision_feat"]
        if is_init:  # directly_add_no_mem_embed
            return feat + self.model.constants["no_mem_embed"][None, :, None, None]
        n_mem = self.num_maskmem
        cond = out_dict["cond_frame_outputs"]
        selected, unselected = _select_closest_cond_frames(frame_idx, cond, self.max_cond_frames_in_attn)
        t_pos_and_prevs = [(0, out) for out in selected.values()]
        stride = self.memory_temporal_stride_for_eval
        for t_pos in range(1, n_mem):
            t_rel = n_mem - t_pos
            if t_rel == 1:
                prev_idx = frame_idx + t_rel if reverse else frame_idx - t_rel
            elif not reverse:
                prev_idx = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
            else:
                prev_idx = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
            out = out_dict["non_cond_frame_outputs"].get(prev_idx)
            if out is None:
                out = unselected.get(prev_idx)
            t_pos_and_prevs.append((t_pos, out))
        frames, frames_pos = [], []
        tpos_enc = self.model.constants["maskmem_tpos_enc"]
        for t_pos, prev in t_pos_and_prevs:
            if prev is None:
                continue
            frames.append(_tokens(prev["maskmem_features"]))
            frames_pos.append(_tokens(prev["maskmem_pos_enc"]) + tpos_enc[n_mem - t_pos - 1])
        ptrs, ptrs_pos = self._object_pointers(state, frame_idx, out_dict, selected, unselected, reverse)
        n_in = len(frames)
        frames, frames_pos = self._prune(state, frames, frames_pos)
        n_kept = len(frames)
        frames, frames_pos, pooled, pooled_pos = self._pool(frames, frames_pos)
        per_frame = pooled[0].shape[0] if pooled else 0
        state["memory_calls"].append((n_in, n_kept, self.hw, int(ptrs.shape[0]), len(pooled), per_frame))
        # keys: [full-resolution frames (RoPE), pooled frames, object pointers (no RoPE)], as TSMS orders them
        (out,) = self.model.run("memory_attention", vision_feat=feat, vision_pos=f["vision_pos"],
                                memory=np.concatenate(frames), memory_pos=np.concatenate(frames_pos),
                                memory_norope=np.concatenate(pooled + [ptrs]),
                                memory_norope_pos=np.concatenate(pooled_pos + [ptrs_pos]))
        return out

    def _pool(self, frames, frames_pos):
        """TSMS's pooling (``pool_size`` > 1): kept frames older than the newest
        ``full_res_frames`` are average-pooled; returns (full frames, their pos, pooled, pooled pos)."""
        spec, k = self.memory, int(self.memory.get("pool_size", 1))
        side = int(round(self.hw ** 0.5))
        n_pool = len(frames) - int(spec.get("full_res_frames", 2))
        if spec.get("module") != "tsms" or not spec.get("enabled", True) or k <= 1 or n_pool <= 0 \
                or side * side != self.hw:
            return frames, frames_pos, [], []
        pooled = [avg_pool_tokens(x, side, k) for x in frames[:n_pool]]
        pooled_pos = [avg_pool_tokens(x, side, k) for x in frames_pos[:n_pool]]
        return frames[n_pool:], frames_pos[n_pool:], pooled, pooled_pos

    def _object_pointers(self, state, frame_idx, out_dict, selected, unselected, reverse):
        """Pointer tokens ``[K, 1, Cm]`` and their positions, as sam2 builds them."""
        max_ptrs = min(state["num_frames"], self.max_obj_ptrs_in_encoder)
        sign = -1 if reverse else 1
        if self.only_obj_ptrs_in_the_past_for_eval:
            ptr_cond = {t: o for t, o in selected.items() if (t >= frame_idx if reverse else t <= frame_idx)}
        else:
            ptr_cond = selected
        pos_and_ptrs = [((frame_idx - t) * sign if self.use_signed_tpos_enc_to_obj_ptrs else abs(frame_idx - t),
                         out["obj_ptr"]) for t, out in ptr_cond.items()]
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or t >= state["num_frames"]:
                break
            out = out_dict["non_cond_frame_outputs"].get(t, unselected.get(t))
            if out is not None:
                pos_and_ptrs.append((t_diff, out["obj_ptr"]))
        c, cm = self.hidden_dim, self.mem_dim
        if not pos_and_ptrs:
            return np.zeros((0, 1, cm), np.float32), np.zeros((0, 1, cm), np.float32)
        pos = np.array([p for p, _ in pos_and_ptrs], dtype=np.float32) / np.float32(max_ptrs - 1)
        ptrs = np.stack([p for _, p in pos_and_ptrs])  # [P, 1, C]
        (ptr_pos,) = self.model.run("obj_ptr_tpos", rel_pos=pos.astype(np.float32))  # [P, Cm]
        ptr_pos = ptr_pos[:, None, :]
        if cm < c:  # a pointer is split into C / Cm tokens
            ptrs = ptrs.reshape(-1, 1, c // cm, cm).transpose(0, 2, 1, 3).reshape(-1, 1, cm)
            ptr_pos = np.repeat(ptr_pos, c // cm, axis=0)
        return ptrs.astype(np.float32), ptr_pos.astype(np.float32)

    def _prune(self, state, frames, frames_pos):
        """The MS rule (a ``tsms`` memory in eval mode) on the memory frames."""
        n = len(frames)
        spec = self.memory
        if spec.get("module") != "tsms" or not spec.get("enabled", True) or spec.get("prune_frames", 0) <= 0:
            return frames, frames_pos
        stacked = np.stack(frames)  # [n, HW, 1, Cm]
        dropped = select_frames_to_prune(stacked, history=state["similarity_history"], **spec)
        keep = keep_indices(n, dropped)
        return [frames[i] for i in keep], [frames_pos[i] for i in keep]

    # ------------------------------------------------------------------ tracking
    def _preflight(self, state) -> None:
        n_obj = len(state["obj_ids"])
        if n_obj == 0:
            raise RuntimeError("No input points or masks are provided for any object; please add inputs first.")
        for idx in range(n_obj):
            out_dict, temp = state["output_dict_per_obj"][idx], state["temp_output_dict_per_obj"][idx]
            for key in ("non_cond_frame_outputs", "cond_frame_outputs"):
                for frame_idx, out in temp[key].items():
                    if out["maskmem_features"] is None:
                        f = self._features(state, frame_idx)
                        out["maskmem_features"] = self._encode_memory(
                            state, f, out["pred_masks"], out["object_score_logits"],
                            binarize=self.binarize_mask_from_pts_for_mem_enc)
                        out["maskmem_pos_enc"] = state["constants"]["maskmem_pos_enc"]
                    out_dict[key][frame_idx] = out
                temp[key].clear()
            if not out_dict["cond_frame_outputs"]:
                raise RuntimeError(f"No input points or masks are provided for object id {state['obj_idx_to_id'][idx]}")
            for frame_idx in out_dict["cond_frame_outputs"]:
                out_dict["non_cond_frame_outputs"].pop(frame_idx, None)

    def propagate_in_video(self, state, start_frame_idx=None, max_frame_num_to_track=None, reverse=False,
                           batch_objects=False):
        """sam2's propagation (plus our predictor's rules: no memory from before an object's
        first prompt, output eviction, a clean stop at the end of a live stream)."""
        if batch_objects:
            raise UserError("batch_objects is not supported by the onnxruntime backend")
        self._preflight(state)
        obj_ids, num_frames = list(state["obj_ids"]), state["num_frames"]
        if start_frame_idx is None:
            start_frame_idx = min(t for d in state["output_dict_per_obj"].values() for t in d["cond_frame_outputs"])
        if max_frame_num_to_track is None:
            max_frame_num_to_track = num_frames
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else []
        else:
            end = min(start_frame_idx + max_frame_num_to_track, num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame_idx in order:
            try:
                masks = self._track_frame(state, frame_idx, reverse)
            except Exception as exc:  # a live source that ran out (models.frames.EndOfStream)
                if type(exc).__name__ != "EndOfStream":
                    raise
                state["num_frames"] = exc.num_frames
                return
            h, w = state["video_height"], state["video_width"]
            yield frame_idx, obj_ids, resize(np.concatenate(masks), (h, w))
            _drop_outputs_before_first_prompt(state, frame_idx, reverse)
            if state.get("evict_outputs"):
                mem_reach = max(1, (self.num_maskmem - 2) * max(1, self.memory_temporal_stride_for_eval) + 1) \
                    if self.num_maskmem > 1 else 0
                evict_unreachable_outputs(state, frame_idx, reverse, mem_reach, max(0, self.max_obj_ptrs_in_encoder - 1))

    def _track_frame(self, state, frame_idx, reverse):
        masks = []
        for idx in range(len(state["obj_ids"])):
            out_dict = state["output_dict_per_obj"][idx]
            if frame_idx in out_dict["cond_frame_outputs"]:
                low = out_dict["cond_frame_outputs"][frame_idx]["pred_masks"]
            else:
                out, low = self._run_single_frame(state, out_dict, frame_idx, False, None, None, reverse,
                                                  run_mem_encoder=True)
                out_dict["non_cond_frame_outputs"][frame_idx] = out
            state["frames_tracked_per_obj"][idx][frame_idx] = {"reverse": reverse}
            masks.append(low)
        return masks


def _tokens(x: np.ndarray) -> np.ndarray:
    """``[B, C, h, w]`` -> sam2's sequence-first ``[h*w, B, C]``."""
    b, c = x.shape[:2]
    return x.reshape(b, c, -1).transpose(2, 0, 1)


def _select_closest_cond_frames(frame_idx, cond_frame_outputs, max_cond_frame_num):
    """sam2's ``select_closest_cond_frames``."""
    if max_cond_frame_num == -1 or len(cond_frame_outputs) <= max_cond_frame_num:
        return cond_frame_outputs, {}
    selected = {}
    before = max((t for t in cond_frame_outputs if t < frame_idx), default=None)
    if before is not None:
        selected[before] = cond_frame_outputs[before]
    after = min((t for t in cond_frame_outputs if t >= frame_idx), default=None)
    if after is not None:
        selected[after] = cond_frame_outputs[after]
    remaining = max_cond_frame_num - len(selected)
    inds = sorted((t for t in cond_frame_outputs if t not in selected), key=lambda x: abs(x - frame_idx))[:remaining]
    selected.update((t, cond_frame_outputs[t]) for t in inds)
    unselected = {t: v for t, v in cond_frame_outputs.items() if t not in selected}
    return selected, unselected


def _drop_outputs_before_first_prompt(state, frame_idx: int, reverse: bool) -> None:
    """``models.predictor.drop_outputs_before_first_prompt``."""
    for out in state["output_dict_per_obj"].values():
        conds = out["cond_frame_outputs"]
        ahead = all(c < frame_idx for c in conds) if reverse else all(c > frame_idx for c in conds)
        if conds and ahead:
            out["non_cond_frame_outputs"].pop(frame_idx, None)
