"""Exactness of the speed options on an accelerator (run by eval/gpu_check.sh).

The device comes from ``TSMS_TEST_DEVICE`` (default ``cuda``); without it these tests are
skipped, so the default CPU run stays fast (the CPU versions: test_speed_options.py and
test_speed_multi_object.py). ``gpu_check.sh --device cpu --dry_run`` runs them on CPU.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from inference.video_sources import ImageFolderSource
from models import TrackingSession, build_model

DEVICE = os.environ.get("TSMS_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 comparisons in real fp32 (cuDNN convolutions default to TF32)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _build(ckpt, **kwargs):
    return build_model(config="mini", checkpoint=str(ckpt), memory="tsms", predictor=True, device=DEVICE, **kwargs)


def _track(predictor, video_dir, masks, **kwargs):
    session = TrackingSession(predictor, ImageFolderSource(video_dir), **kwargs)
    for obj in (1, 2):
        session.add_mask(0, obj, masks[obj][0])
    return {r.frame_idx: r for r in session.propagate()}


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_bf16_masks_match_fp32_on_device(mini_checkpoint, two_object_video):
    video_dir, masks = two_object_video
    model = _build(mini_checkpoint)
    fp32, bf16 = _track(model, video_dir, masks), _track(model, video_dir, masks, dtype="bf16", batch_objects=True)
    ious = [_iou(fp32[f].mask(o), bf16[f].mask(o)) for f in fp32 for o in (1, 2)]
    assert float(np.mean(ious)) >= 0.99, ious


def test_batched_objects_equal_per_object_on_device(mini_checkpoint, two_object_video):
    video_dir, masks = two_object_video
    model = _build(mini_checkpoint)
    single, batched = _track(model, video_dir, masks), _track(model, video_dir, masks, batch_objects=True)
    worst = max(float((single[f].mask_logits - batched[f].mask_logits).abs().max()) for f in single)
    assert worst <= 1e-4, worst
    assert all(np.array_equal(single[f].masks(), batched[f].masks()) for f in single)


def test_compiled_matches_eager_on_device(mini_checkpoint, two_object_video):
    video_dir, masks = two_object_video
    eager = _track(_build(mini_checkpoint), video_dir, masks)
    compiled = _track(_build(mini_checkpoint, compile=True), video_dir, masks)
    worst = max(float((eager[f].mask_logits - compiled[f].mask_logits).abs().max()) for f in eager)
    assert worst <= 1e-3, worst
    ious = [_iou(eager[f].mask(o), compiled[f].mask(o)) for f in eager for o in (1, 2)]
    assert min(ious) >= 0.999, ious
