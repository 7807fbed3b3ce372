"""Speed options against fp32 eager: bf16 autocast (mask IoU) and torch.compile (logits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.video_sources import ImageFolderSource
from models import TrackingSession, build_model
from models.speed import autocast, check_dtype


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _track(predictor, video_dir, masks, max_frames=None, **session_kwargs):
    session = TrackingSession(predictor, ImageFolderSource(video_dir), **session_kwargs)
    for obj in (1, 2):
        session.add_mask(0, obj, masks[obj][0])
    return {r.frame_idx: r for r in session.propagate(max_frames=max_frames)}


@pytest.fixture(scope="module")
def predictor(mini_checkpoint):
    return build_model(config="mini", checkpoint=str(mini_checkpoint), memory="tsms", predictor=True)


def _linear_output_dtypes(model):
    """Hooks recording the output dtype of every ``nn.Linear`` inside the mask decoder, the
    memory attention and the image encoder while they run; returns (dtypes, handles)."""
    seen = {"sam_mask_decoder": set(), "memory_attention": set(), "image_encoder": set()}
    handles = []
    for part in seen:
        for module in getattr(model, part).modules():
            if isinstance(module, torch.nn.Linear):
                handles.append(module.register_forward_hook(lambda m, a, out, part=part: seen[part].add(out.dtype)))
    return seen, handles


def test_bf16_masks_match_fp32(predictor, two_object_video):
    video_dir, masks = two_object_video
    fp32 = _track(predictor, video_dir, masks)
    dtypes, handles = _linear_output_dtypes(predictor)
    try:
        bf16 = _track(predictor, video_dir, masks, dtype="bf16", batch_objects=True)
    finally:
        for h in handles:
            h.remove()
    ious = [_iou(fp32[f].mask(o), bf16[f].mask(o)) for f in fp32 for o in (1, 2)]
    assert any(fp32[f].mask(o).any() for f in fp32 for o in (1, 2))  # not trivially empty
    # inside the forward: the decoder's layers computed in fp32, the others in bf16
    assert dtypes == {"sam_mask_decoder": {torch.float32}, "memory_attention": {torch.bfloat16},
                      "image_encoder": {torch.bfloat16}}, dtypes
    assert float(np.mean(ious)) >= 0.99, ious  # random weights: near-full-frame masks (min IoU: below)
    # ... and bf16 really ran: the logits differ from fp32's
    assert max(float((fp32[f].mask_logits - bf16[f].mask_logits).abs().max()) for f in fp32) > 1e-3


def test_dtype_option_is_checked():
    with pytest.raises(ValueError, match="dtype must be one of"):
        check_dtype("fp16x")
    with autocast("cpu", "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")


def test_compile_keeps_weights_and_wraps_the_modules(mini_checkpoint):
    """The fast check: compiling changes no state-dict key and wraps what it should."""
    model = build_model(config="mini", checkpoint=str(mini_checkpoint), memory="tsms", predictor=True, compile=True)
    eager = build_model(config="mini", checkpoint=str(mini_checkpoint), memory="tsms", predictor=True)
    assert list(model.state_dict()) == list(eager.state_dict())
    assert "attend" in vars(model.memory_attention)  # SAM2's attention behind MS is compiled
    assert model.image_encoder._compiled_call_impl is not None


@pytest.mark.slow
def test_compiled_tracking_matches_eager(predictor, mini_checkpoint, two_object_video):
    """Inductor on CPU: compiled image encoder + memory attention give eager's logits.

    Slow: compiling the mini model takes minutes on 2 shared cores (dynamic memory length)."""
    video_dir, masks = two_object_video
    compiled = build_model(config="mini", checkpoint=str(mini_checkpoint), memory="tsms", predictor=True, compile=True)
    eager = _track(predictor, video_dir, masks, max_frames=9)
    got = _track(compiled, video_dir, masks, max_frames=9)
    worst = max(float((eager[f].mask_logits - got[f].mask_logits).abs().max()) for f in eager)
    assert worst <= 1e-3, worst
    assert all(np.array_equal(eager[f].masks(), got[f].masks()) for f in eager)
