"""Parity gaps closed: the lazy frame loader every CLI uses equals sam2's loader, and an
object first prompted on a later frame behaves as documented (where we depart from sam2)."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from sam2.build_sam import build_sam2_video_predictor
from sam2.utils.misc import load_video_frames

import models.predictor
from inference.video_sources import ImageFolderSource, open_video_source
from models import TrackingSession, build_tsms_sam2_video_predictor
from models.frames import LazyFrameTensors
from tests.conftest import MINI_OVERRIDES, NUM_FRAMES


@pytest.fixture(scope="module")
def unpadded_video(two_object_video, tmp_path_factory):
    """The two-object video with frames named 0.jpg ... 13.jpg: a plain string sort would
    put 10.jpg before 2.jpg; sam2 sorts by the number, and so must we."""
    video_dir, masks = two_object_video
    folder = tmp_path_factory.mktemp("unpadded") / "clip"
    folder.mkdir()
    for t in range(NUM_FRAMES):
        shutil.copy(video_dir / f"{t:05d}.jpg", folder / f"{t}.jpg")
    return folder, masks


def test_lazy_loader_gives_sam2s_normalized_frames(unpadded_video):
    folder, _ = unpadded_video
    theirs, height, width = load_video_frames(str(folder), image_size=128, offload_video_to_cpu=True)
    source = open_video_source(str(folder))  # what predict_video.py, the annotator and validation open
    assert isinstance(source, ImageFolderSource)
    ours = LazyFrameTensors(source, 128)
    assert (len(ours), source.height, source.width) == (theirs.shape[0], height, width) == (NUM_FRAMES, 96, 128)
    for t in range(NUM_FRAMES):
        assert ours[t].dtype == theirs.dtype and torch.equal(ours[t], theirs[t]), t


def test_tracking_from_the_lazy_loader_equals_sam2_from_its_loader(unpadded_video, mini_checkpoint):
    """The whole path: our predictor over the lazy source, memory off (sam2), gives the
    logits of Meta's predictor over its preloaded frames, bit for bit."""
    folder, masks = unpadded_video
    meta = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", str(mini_checkpoint), device="cpu",
                                      hydra_overrides_extra=MINI_OVERRIDES)
    ours = build_tsms_sam2_video_predictor("mini", str(mini_checkpoint), memory="sam2")
    outputs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sam2 warns on CPU that it skips hole filling
        for predictor, video in ((meta, str(folder)), (ours, ImageFolderSource(folder))):
            state = predictor.init_state(video)
            predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=masks[1][0])
            outputs.append({f: logits.clone() for f, _, logits in predictor.propagate_in_video(state)})
    assert outputs[0].keys() == outputs[1].keys() and len(outputs[0]) == NUM_FRAMES
    assert all(torch.equal(outputs[0][f], outputs[1][f]) for f in outputs[0])


def test_our_session_state_has_sam2s_layout(unpadded_video, mini_checkpoint):
    """The session dict we build ourselves (utils/session_state.py, which the onnxruntime
    loop uses too) has every key of sam2's ``init_state``, each with the same kind of value,
    and the same frame facts."""
    folder, _ = unpadded_video
    meta = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", str(mini_checkpoint), device="cpu",
                                      hydra_overrides_extra=MINI_OVERRIDES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = meta.init_state(str(folder))
    ours = build_tsms_sam2_video_predictor("mini", str(mini_checkpoint), memory="sam2").init_state(
        ImageFolderSource(folder))
    missing = set(theirs) - set(ours)
    assert not missing, missing
    for key in theirs.keys() - {"images"}:
        assert type(ours[key]) is type(theirs[key]), key
    for key in ("num_frames", "video_height", "video_width", "device", "storage_device",
                "offload_video_to_cpu", "offload_state_to_cpu"):
        assert ours[key] == theirs[key], key


# ---------------------------------------------------------------- an object prompted later
LATE = 6  # object 2's first prompt


def _track(predictor, video_dir, masks, objects):
    """Prompt ``{obj_id: frame}`` with ground-truth masks, propagate forward from the first
    prompt; returns ``{(frame, obj_id): logits}`` and the session."""
    session = TrackingSession(predictor, ImageFolderSource(video_dir), evict_outputs=False)
    for obj_id, frame in objects.items():
        session.add_mask(frame, obj_id, masks[obj_id][frame])
    out = {}
    for r in session.propagate():
        for k, obj_id in enumerate(r.obj_ids):
            out[(r.frame_idx, obj_id)] = r.mask_logits[k].clone()
    return out, session


@pytest.fixture(scope="module")
def predictor(mini_checkpoint):
    return build_tsms_sam2_video_predictor("mini", str(mini_checkpoint), memory="tsms")


def test_object_prompted_later_is_tracked_only_from_its_prompt(predictor, two_object_video, monkeypatch):
    """models/predictor.py (drop_outputs_before_first_prompt): sam2 runs every object on
    every frame, so object 2 (prompted on frame 6) gets outputs on frames 0-5 predicted from
    its future prompt, and keeps them as memory for frames 7+. Ours drops them: object 2's
    results from frame 6 on are those of tracking it alone from frame 6."""
    video_dir, masks = two_object_video
    both, session = _track(predictor, video_dir, masks, {1: 0, 2: LATE})
    alone, _ = _track(predictor, video_dir, masks, {2: LATE})
    late = session.state["output_dict_per_obj"][session.state["obj_id_to_idx"][2]]
    assert sorted(late["cond_frame_outputs"]) == [LATE]
    assert sorted(late["non_cond_frame_outputs"]) == list(range(LATE + 1, NUM_FRAMES))  # nothing before 6
    for t in range(LATE, NUM_FRAMES):
        assert torch.equal(both[(t, 2)], alone[(t, 2)]), t

    # sam2's behaviour, for contrast: keeping the pre-prompt outputs changes frames 7+
    monkeypatch.setattr(models.predictor, "drop_outputs_before_first_prompt", lambda *a, **k: None)
    kept, _ = _track(predictor, video_dir, masks, {1: 0, 2: LATE})
    gap = max(float((kept[(t, 2)] - alone[(t, 2)]).abs().max()) for t in range(LATE + 1, NUM_FRAMES))
    assert gap > 1e-3, gap
    assert np.array_equal(kept[(LATE, 2)].numpy(), alone[(LATE, 2)].numpy())  # the prompted frame itself agrees
