"""Multi-object tracking in one pass equals sam2's one-object-at-a-time tracking (fp32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.video_sources import ImageFolderSource
from models import TrackingSession, build_model
from tests.conftest import _disc


@pytest.fixture(scope="module")
def predictor(mini_checkpoint):
    return build_model(config="mini", checkpoint=str(mini_checkpoint), memory="tsms", predictor=True)


# (frame, object) prompts. "same": 3 objects prompted on frame 0, one batch of 3. "later":
# object 3 added on frame 4 and corrected on frame 9: objects whose memory frames
# differ are tracked apart (objects 1+2 batched, 3 alone), each with its own conditioning frames.
SCENARIOS = {"same": ([(0, 1), (0, 2), (0, 3)], "forward", 3), "later": ([(0, 1), (0, 2), (4, 3), (9, 3)], "both", 2)}


def _track(predictor, video_dir, masks, prompts, direction, batch_objects):
    session = TrackingSession(predictor, ImageFolderSource(video_dir), batch_objects=batch_objects)
    h, w = masks[1].shape[1:]
    for frame, obj in prompts:
        session.add_mask(frame, obj, masks[obj][frame] if obj in masks else _disc(h, w, 70, 30 + 2 * frame, 9))
    return {r.frame_idx: r for r in session.propagate(direction=direction)}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_batched_objects_equal_per_object_tracking(predictor, two_object_video, monkeypatch, scenario):
    video_dir, masks = two_object_video
    prompts, direction, biggest_batch = SCENARIOS[scenario]
    single = _track(predictor, video_dir, masks, prompts, direction, batch_objects=False)
    batch_sizes = []
    run = predictor._run_single_frame_inference

    def spy(*args, **kwargs):
        batch_sizes.append(kwargs["batch_size"])
        return run(*args, **kwargs)

    monkeypatch.setattr(predictor, "_run_single_frame_inference", spy)
    batched = _track(predictor, video_dir, masks, prompts, direction, batch_objects=True)
    assert max(batch_sizes) == biggest_batch  # it really batched
    assert sorted(single) == sorted(batched) == list(range(len(masks[1])))
    worst = 0.0
    for f, a in single.items():
        b = batched[f]
        assert a.obj_ids == b.obj_ids == [1, 2, 3]
        worst = max(worst, float((a.mask_logits - b.mask_logits).abs().max()))
        assert np.array_equal(a.masks(), b.masks()), f"masks differ on frame {f}"
        assert a.attended_tokens == pytest.approx(b.attended_tokens)
    assert worst <= 1e-4, worst


def test_batched_objects_need_our_predictor(two_object_video):
    from sam2.build_sam import build_sam2_video_predictor

    from tests.conftest import MINI_OVERRIDES

    torch.manual_seed(0)
    meta = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu",
                                      hydra_overrides_extra=MINI_OVERRIDES)
    with pytest.raises(TypeError, match="batch_objects"):
        TrackingSession(meta, two_object_video[0], batch_objects=True)
