"""Host-side memory for the onnxruntime loop, in NumPy (no torch): the MS rule, sam2's
bf16 storage of memory features, torch's bilinear resizes, and output eviction.

Each function mirrors a PyTorch one and is tested equal to it (tests/test_onnx_export.py):

* :func:`select_frames_to_prune` - ``models.memory_pruning.select_frames_to_prune`` (the
  cosine similarities in NumPy; the halves, drop counts, thresholds and the dynamic
  ``auto`` threshold's history are the same code, utils/ms_rule.py);
* :func:`round_to_bf16` - sam2's ``maskmem_features.to(torch.bfloat16)`` (then float32);
* :func:`resize_matrix` - ``F.interpolate(mode="bilinear", align_corners=False)`` with or
  without ``antialias`` as ``[out, in]`` weights (a resize is ``Wy @ x @ Wx.T``);
* :func:`evict_unreachable_outputs` - ``models.eviction`` (results unchanged).
"""

from __future__ import annotations

import functools
from typing import List, Optional

import numpy as np

# the MS rule's decisions, shared with the PyTorch model (models/memory_pruning.py)
from utils.ms_rule import AUTO, SimilarityHistory, drops_for, group_thresholds, plan_pruning_groups, record_scores

_STRIPPED = "evicted"


# ---------------------------------------------------------------------- the MS rule
def _cosine(x: np.ndarray, y: np.ndarray, axis: int, eps: float = 1e-8) -> np.ndarray:
    """torch's ``F.cosine_similarity``: each side divided by its (clamped) norm, then summed."""
    nx = np.maximum(np.sqrt((x * x).sum(axis=axis, keepdims=True)), np.float32(eps))
    ny = np.maximum(np.sqrt((y * y).sum(axis=axis, keepdims=True)), np.float32(eps))
    return ((x / nx) * (y / ny)).sum(axis=axis)


def frame_similarity(candidates: np.ndarray, reference: np.ndarray, kind: str) -> np.ndarray:
    """``[K, HW, B, C]`` vs ``[HW, B, C]`` -> ``[K]`` float32 scores (batch-averaged)."""
    cand = candidates.astype(np.float32, copy=False)
    ref = np.broadcast_to(reference.astype(np.float32, copy=False)[None], cand.shape)
    if kind == "cosine_spatial":
        sim = _cosine(cand, ref, axis=1)  # [K, B, C]
    elif kind == "cosine":
        sim = _cosine(cand, ref, axis=3)  # [K, HW, B]
    else:
        raise ValueError(f"unknown similarity {kind!r}")
    return sim.reshape(sim.shape[0], -1).mean(axis=1, dtype=np.float32)


def select_frames_to_prune(frames: np.ndarray, *, memory_bank_size: int = 7, prune_frames: int = 2,
                           use_mem_split: bool = True, similarity: str = "cosine_spatial",
                           pruning_threshold=None, auto_quantile: float = 0.5,
                           history: Optional[SimilarityHistory] = None, **_unused) -> List[int]:
    """Sorted indices of the memory frames the MS rule drops; ``frames``: ``[n, HW, B, C]``."""
    groups = plan_pruning_groups(frames.shape[0], memory_bank_size, prune_frames, use_mem_split)
    if not groups:
        return []
    scores = [frame_similarity(frames[list(g.candidates)], frames[g.reference], similarity).tolist() for g in groups]
    drops = drops_for(groups, scores, group_thresholds(groups, pruning_threshold, auto_quantile, history))
    if pruning_threshold == AUTO and history is not None:
        record_scores(history, groups, scores)
    return drops


def avg_pool_tokens(x: np.ndarray, side: int, k: int) -> np.ndarray:
    """One memory frame ``[side*side, B, C]`` average-pooled ``k x k`` -> ``[side'^2, B, C]``:
    torch's ``avg_pool2d(k, ceil_mode=True)`` (edge windows average what they cover)."""
    b, c = x.shape[1:]
    grid = x.reshape(side, side, b, c)
    out_side = -(-side // k)
    pad = out_side * k - side
    if pad:
        grid = np.pad(grid, ((0, pad), (0, pad), (0, 0), (0, 0)))
    sums = grid.reshape(out_side, k, out_side, k, b, c).sum(axis=(1, 3), dtype=np.float32)
    ones = np.pad(np.ones((side, side), np.float32), ((0, pad), (0, pad)))
    counts = ones.reshape(out_side, k, out_side, k).sum(axis=(1, 3))
    return (sums / counts[:, :, None, None]).reshape(-1, b, c).astype(np.float32)


# ---------------------------------------------------------------------- numerics
def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even, as torch) -> float32."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits + rounding) & np.uint32(0xFFFF0000)).view(np.float32)
    return np.where(np.isnan(x), x, out).astype(np.float32)


@functools.lru_cache(maxsize=32)
def resize_matrix(n_in: int, n_out: int, antialias: bool = False) -> np.ndarray:
    """``[n_out, n_in]`` float32 weights of torch's 1-D bilinear resize (align_corners=False);
    cached (every frame of a video needs the same ones), read-only."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in), dtype=np.float64)
    if antialias:
        support = scale if scale >= 1.0 else 1.0
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        for i in range(n_out):
            center = scale * (i + 0.5)
            lo = max(int(center - support + 0.5), 0)
            hi = min(int(center + support + 0.5), n_in)
            j = np.arange(lo, hi)
            weights = np.maximum(0.0, 1.0 - np.abs((j - center + 0.5) * invscale))
            total = weights.sum()
            w[i, lo:hi] = weights / total if total != 0 else weights
    else:  # float32 arithmetic, as torch's CPU kernel
        scale32 = np.float32(n_in) / np.float32(n_out)
        for i in range(n_out):
            real = max(scale32 * (np.float32(i) + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
            i0 = int(real)
            lam = np.float32(real) - np.float32(i0)
            i1 = i0 + 1 if i0 < n_in - 1 else i0
            w[i, i0] += np.float32(1.0) - lam
            w[i, i1] += lam
    w = w.astype(np.float32)
    w.flags.writeable = False
    return w


def resize(x: np.ndarray, size, antialias: bool = False) -> np.ndarray:
    """``x [..., H, W]`` -> ``[..., size[0], size[1]]``, bilinear (torch's weights)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    wy = resize_matrix(x.shape[-2], size[0], antialias)
    wx = resize_matrix(x.shape[-1], size[1], antialias)
    return (wy @ x.astype(np.float32, copy=False) @ wx.T).astype(np.float32, copy=False)


# ---------------------------------------------------------------------- eviction
def evict_unreachable_outputs(state, frame_idx: int, reverse: bool, mem_reach: int, ptr_reach: int) -> None:
    """``models.eviction.evict_unreachable_outputs`` on the host's state."""
    reach = max(mem_reach, ptr_reach)
    sign = -1 if reverse else 1
    nxt = frame_idx + sign
    cond = {t for d in state["output_dict_per_obj"].values() for t in d["cond_frame_outputs"]}
    for out in state["output_dict_per_obj"].values():
        non_cond = out["non_cond_frame_outputs"]
        for t in list(non_cond):
            behind = (nxt - t) * sign
            if behind <= mem_reach or any(abs(t - c) <= reach for c in cond):
                continue
            entry = non_cond[t]
            if behind > ptr_reach:
                del non_cond[t]
            elif not entry.get(_STRIPPED):
                non_cond[t] = {"obj_ptr": entry["obj_ptr"], "object_score_logits": entry["object_score_logits"],
                               "maskmem_features": None, "maskmem_pos_enc": None, "pred_masks": None, _STRIPPED: True}


def forget_evicted_frame(state, frame_idx: int) -> None:
    for out in state.get("output_dict_per_obj", {}).values():
        entry = out["non_cond_frame_outputs"].get(frame_idx)
        if entry is not None and entry.get(_STRIPPED):
            del out["non_cond_frame_outputs"][frame_idx]
