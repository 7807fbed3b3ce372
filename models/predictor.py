"""Our video predictor: SAM2VideoPredictor's API over lazily decoded frames, with eviction.

It keeps SAM2's interface (``init_state``, ``add_new_points_or_box``, ``add_new_mask``,
``propagate_in_video`` with ``reverse``, ``reset_state``). The TSMS memory rule lives in
the memory-attention module, so tracking here is SAM2's own code path. Most callers use it
through :class:`models.session.TrackingSession`, which also records per-frame statistics.
"""

from __future__ import annotations

import importlib.util
import logging
import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor

from models.eviction import evict_unreachable_outputs, forget_evicted_frame, hide_evicted_memory
from models.frames import EndOfStream, LazyFrameTensors
from models.memory_selection import MemorySelectionMixin, capture_records
from models.multi_object import propagate_objects_batched
from models.speed import run_in_fp32
from utils.session_state import new_session_state

log = logging.getLogger(__name__)


def hole_filling_available(device: torch.device | str) -> bool:
    """sam2's hole filling needs its optional CUDA extension and a CUDA device."""
    return torch.device(device).type == "cuda" and importlib.util.find_spec("sam2._C") is not None


class TSMSVideoPredictor(MemorySelectionMixin, SAM2VideoPredictor):
    """SAM2VideoPredictor over lazy frame sources, with output eviction for long videos and
    the memory-selection rules of :mod:`models.memory_rules` (``MemorySpec.selection``)."""

    reads_frame_sources = True  # init_state takes a frame source and evict_outputs

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.memory_attention.register_forward_pre_hook(_match_memory_dtype, with_kwargs=True)
        run_in_fp32(self.sam_mask_decoder)  # bf16 autocast: mask logits stay fp32-exact enough

    def disable_unavailable_postprocessing(self) -> None:
        """Skip hole filling quietly where sam2 would warn and skip it on every frame."""
        if self.fill_hole_area > 0 and not hole_filling_available(self.device):
            log.debug("sam2 hole filling unavailable on %s; skipping it (as sam2 does)", self.device)
            self.fill_hole_area = 0

    @torch.inference_mode()
    def init_state(self, video_path, offload_video_to_cpu=False, offload_state_to_cpu=False, evict_outputs=False, **kwargs):
        """Start a tracking session.

        Args:
            video_path: a JPEG folder path (sam2's own loader, frames preloaded) or a frame
                source with ``read(idx)`` (see ``inference.video_sources``), decoded lazily.
            evict_outputs: drop per-frame outputs that the memory window can no longer
                reach, so memory stays flat on long videos and live streams. Tracking
                results are unchanged; prompting a frame whose outputs were evicted starts
                that frame without its previous mask logits, and a prompt behind the last
                tracked frame reads evicted memory frames as missing (models/eviction.py).
        """
        if hasattr(video_path, "read"):
            state = self._init_lazy_state(video_path, offload_video_to_cpu, offload_state_to_cpu)
        else:
            state = super().init_state(video_path, offload_video_to_cpu, offload_state_to_cpu, **kwargs)
        state["evict_outputs"] = bool(evict_outputs)
        return state

    def _init_lazy_state(self, source, offload_video_to_cpu, offload_state_to_cpu):
        """The same session dict sam2's ``init_state`` builds, over lazily decoded frames."""
        images = LazyFrameTensors(source, self.image_size)
        state = new_session_state(
            images, len(images), source.height, source.width, self.device,
            offload_video_to_cpu=offload_video_to_cpu, offload_state_to_cpu=offload_state_to_cpu,
            storage_device=torch.device("cpu") if offload_state_to_cpu else self.device)
        self._get_image_feature(state, frame_idx=0, batch_size=1)  # warm-up, as sam2 does
        return state

    @torch.inference_mode()
    def propagate_in_video(self, inference_state, start_frame_idx=None, max_frame_num_to_track=None, reverse=False,
                           batch_objects=False):
        """SAM2's propagation, plus output eviction and a clean stop at the end of a live stream.

        ``batch_objects``: track the objects of a frame as one batch (see
        :mod:`models.multi_object`); same results as sam2's one-object-at-a-time loop.
        """
        if batch_objects:
            frames = propagate_objects_batched(self, inference_state, start_frame_idx, max_frame_num_to_track, reverse)
        else:
            frames = super().propagate_in_video(inference_state, start_frame_idx, max_frame_num_to_track, reverse)
        while True:
            try:
                frame_idx, obj_ids, masks = next(frames)
            except StopIteration:
                return
            except EndOfStream as end:
                inference_state["num_frames"] = end.num_frames
                log.info("live source ended after %d frames", end.num_frames)
                return
            yield frame_idx, obj_ids, masks
            drop_outputs_before_first_prompt(inference_state, frame_idx, reverse)
            if inference_state.get("evict_outputs"):
                evict_unreachable_outputs(self, inference_state, frame_idx, reverse)

    def _prepare_memory_conditioned_features(self, frame_idx, is_init_cond_frame, current_vision_feats,
                                             current_vision_pos_embeds, feat_sizes, output_dict, num_frames,
                                             track_in_reverse=False):
        if not is_init_cond_frame:  # evicted memory frames read as missing (prompts behind the front)
            output_dict = hide_evicted_memory(self, output_dict, frame_idx, track_in_reverse)
        return super()._prepare_memory_conditioned_features(
            frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds, feat_sizes, output_dict,
            num_frames, track_in_reverse)

    def _run_single_frame_inference(self, *args, **kwargs):
        """sam2 keeps a compact copy of each frame's output; keep the memory rule's records too."""
        with capture_records() as records:
            compact, masks = super()._run_single_frame_inference(*args, **kwargs)
        compact.update(records)
        return compact, masks

    @torch.inference_mode()
    def add_new_points_or_box(self, inference_state, frame_idx, obj_id, *args, **kwargs):
        forget_evicted_frame(inference_state, frame_idx)
        return super().add_new_points_or_box(inference_state, frame_idx, obj_id, *args, **kwargs)

    @torch.inference_mode()
    def add_new_mask(self, inference_state, frame_idx, obj_id, mask):
        forget_evicted_frame(inference_state, frame_idx)
        return super().add_new_mask(inference_state, frame_idx, obj_id, mask)


def _match_memory_dtype(module, args, kwargs):
    """Memory of bf16-stored frames alone (no fp32 object pointers to promote it) would
    crash the fp32 attention; cast it. A no-op on SAM2's usual path, where it is fp32."""
    curr = kwargs.get("curr")
    curr = curr[0] if isinstance(curr, (list, tuple)) else curr
    memory = kwargs.get("memory")
    if curr is None or memory is None or memory.dtype == curr.dtype:
        return None
    kwargs = dict(kwargs, memory=memory.to(curr.dtype), memory_pos=kwargs["memory_pos"].to(curr.dtype))
    return args, kwargs


def drop_outputs_before_first_prompt(state, frame_idx: int, reverse: bool) -> None:
    """An object prompted first on a later frame is tracked only from there.

    sam2 runs every object on every frame and would keep what it predicted for an object
    before its first prompt (from that future prompt's memory) as memory for later frames.
    Those outputs are dropped so they never act as memory.
    """
    for out in state["output_dict_per_obj"].values():
        conds = out["cond_frame_outputs"]
        ahead = all(c < frame_idx for c in conds) if reverse else all(c > frame_idx for c in conds)
        if conds and ahead:
            out["non_cond_frame_outputs"].pop(frame_idx, None)
