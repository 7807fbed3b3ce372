"""sam2's per-video inference state (``SAM2VideoPredictor.init_state``'s dict), built by
the two predictors that do not go through ``init_state``: our lazily decoded PyTorch
session and the torch-free onnxruntime loop. Plain Python, so the latter stays torch-free."""

from __future__ import annotations

from collections import OrderedDict


def new_session_state(images, num_frames: int, height: int, width: int, device, **extra) -> dict:
    """The layout sam2's ``init_state`` returns, with no object added yet, plus ``extra`` keys."""
    state = {
        "images": images,
        "num_frames": num_frames,
        "video_height": height,
        "video_width": width,
        "device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    state.update(extra)
    return state
