"""Long videos in the annotator: the tracker's outputs stay bounded (eviction), frames are
decoded lazily, and the mask store costs a few kB per frame."""

from __future__ import annotations

import pytest

from inference.annotator import open_annotator
from models.eviction import memory_reach, pointer_reach
from tests.annotator_helpers import PredictorCache
from tests.conftest import make_two_object_video

FRAMES = 48


@pytest.mark.parametrize("evict", [True, False])
def test_tracker_outputs_stay_bounded(mini_checkpoint, tmp_path, evict):
    make_two_object_video(tmp_path / "long", num_frames=FRAMES)
    state = open_annotator(tmp_path / "long", PredictorCache(mini_checkpoint), tmp_path / "out", evict=evict)
    state.add_object()
    state.add_point(1, 0, 20, 30)
    state.start_tracking("forward")
    assert state.wait().done == FRAMES
    outputs = state.session.state["output_dict_per_obj"][0]["non_cond_frame_outputs"]
    with_memory = [t for t, out in outputs.items() if out.get("maskmem_features") is not None]
    model = state.session.predictor
    if evict:
        # the last frames in memory reach, plus those pinned next to the prompted frame
        reach = max(memory_reach(model), pointer_reach(model))
        assert len(with_memory) <= reach + memory_reach(model) + 1 < FRAMES - 1
    else:
        assert len(with_memory) == FRAMES - 1  # what SAM2 keeps: every frame
    assert len(state.session.state["images"]._cache) <= 2  # frames decoded lazily, few kept
    assert all(state.store.has(t) for t in range(FRAMES))
    assert sum(len(state.store._labels[t]) for t in range(FRAMES)) < FRAMES * 2000  # vs 12 kB raw per frame
    state.close()
