"""Our video predictor: SAM2VideoPredictor's API, plus per-frame memory statistics.

It keeps SAM2's interface (``init_state``, ``add_new_points_or_box``, ``add_new_mask``,
``propagate_in_video`` with ``reverse``, ``reset_state``). The TSMS memory rule lives in
the memory-attention module, so tracking here is SAM2's own code path.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Dict, List, Optional

import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor

from models.memory_attention import MemoryAttentionStats, memory_stats_from_inputs

log = logging.getLogger(__name__)


def hole_filling_available(device: torch.device | str) -> bool:
    """sam2's hole filling needs its optional CUDA extension and a CUDA device."""
    return torch.device(device).type == "cuda" and importlib.util.find_spec("sam2._C") is not None


class TSMSVideoPredictor(SAM2VideoPredictor):
    """SAM2VideoPredictor that records what the memory attention attended on every frame.

    ``inference_state["memory_stats"][frame_idx][obj_idx]`` holds a
    :class:`~models.memory_attention.MemoryAttentionStats` for every tracked
    (non-conditioning) frame; :func:`attended_tokens_per_frame` summarises them.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._last_memory_stats: Optional[MemoryAttentionStats] = None
        self.memory_attention.register_forward_hook(self._record_memory_stats, with_kwargs=True)

    def _record_memory_stats(self, module, args, kwargs, output):
        stats = getattr(module, "last_stats", None)
        if stats is None:
            stats = memory_stats_from_inputs(kwargs["curr"], kwargs["memory"], kwargs.get("num_obj_ptr_tokens", 0))
        self._last_memory_stats = stats

    def disable_unavailable_postprocessing(self) -> None:
        """Skip hole filling quietly where sam2 would warn and skip it on every frame."""
        if self.fill_hole_area > 0 and not hole_filling_available(self.device):
            log.debug("sam2 hole filling unavailable on %s; skipping it (as sam2 does)", self.device)
            self.fill_hole_area = 0

    @torch.inference_mode()
    def init_state(self, video_path, **kwargs):
        state = super().init_state(video_path, **kwargs)
        state["memory_stats"] = {}
        return state

    def _run_single_frame_inference(self, inference_state, output_dict, frame_idx, *args, **kwargs):
        self._last_memory_stats = None
        result = super()._run_single_frame_inference(inference_state, output_dict, frame_idx, *args, **kwargs)
        if self._last_memory_stats is not None and "memory_stats" in inference_state:
            obj_idx = next(
                (i for i, d in inference_state["output_dict_per_obj"].items() if d is output_dict),
                -1,  # a consolidated multi-object call
            )
            inference_state["memory_stats"].setdefault(frame_idx, {})[obj_idx] = self._last_memory_stats
        return result

    def _reset_tracking_results(self, inference_state):
        super()._reset_tracking_results(inference_state)
        inference_state.get("memory_stats", {}).clear()


def attended_tokens_per_frame(inference_state) -> Dict[int, float]:
    """Mean attended memory tokens (kept frames + object pointers) per tracked frame."""
    out = {}
    for frame_idx, per_obj in sorted(inference_state.get("memory_stats", {}).items()):
        values: List[int] = [s.attended_tokens for s in per_obj.values()]
        out[frame_idx] = sum(values) / len(values)
    return out
