"""Parity with Meta's predictor: with pruning off, TSMS-SAM2 is SAM2, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sam2.build_sam import build_sam2_video_predictor

from models import TrackingSession, build_tsms_sam2_video_predictor
from tests.conftest import MINI_OVERRIDES, NUM_FRAMES


def _bbox(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _centroid(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return [float(xs.mean()), float(ys.mean())]


def run_scenario(predictor, video_dir, masks, scenario: str):
    """Prompt two objects, propagate, and return every output as numpy arrays."""
    outputs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sam2 warns on CPU that it skips hole filling
        state = predictor.init_state(str(video_dir))
        if scenario == "forward":
            # object 1: mask prompt; object 2: box plus a positive and a negative point
            _, _, m1 = predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=masks[1][0])
            box = _bbox(masks[2][0])
            pos, neg = _centroid(masks[2][0]), _centroid(masks[1][0])
            _, _, m2 = predictor.add_new_points_or_box(
                state, frame_idx=0, obj_id=2, box=box, points=[pos, neg], labels=[1, 0]
            )
            outputs["prompt"] = [m1.numpy(), m2.numpy()]
            for f, ids, logits in predictor.propagate_in_video(state):
                outputs[("fwd", f)] = (list(ids), logits.numpy().copy())
            # a refinement click on a later frame, then propagate again
            _, _, m3 = predictor.add_new_points_or_box(
                state, frame_idx=9, obj_id=1, points=[_centroid(masks[1][9])], labels=[1], clear_old_points=False
            )
            outputs["refine"] = m3.numpy()
            for f, ids, logits in predictor.propagate_in_video(state, start_frame_idx=0):
                outputs[("fwd2", f)] = (list(ids), logits.numpy().copy())
        elif scenario == "reverse":
            mid = NUM_FRAMES - 1
            predictor.add_new_points_or_box(state, frame_idx=mid, obj_id=1, points=[_centroid(masks[1][mid])], labels=[1])
            predictor.add_new_mask(state, frame_idx=mid, obj_id=2, mask=masks[2][mid])
            for f, ids, logits in predictor.propagate_in_video(state, reverse=True):
                outputs[("rev", f)] = (list(ids), logits.numpy().copy())
    return outputs, state


def run_session(predictor, video_dir, masks, max_frames=None):
    """The forward scenario's first pass through a TrackingSession; returns (outputs, session)."""
    outputs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = TrackingSession(predictor, video_dir)
        m1 = session.add_mask(0, 1, masks[1][0]).mask_logits
        pos, neg = _centroid(masks[2][0]), _centroid(masks[1][0])
        m2 = session.add_points(0, 2, [pos, neg], [1, 0], box=_bbox(masks[2][0])).mask_logits
        outputs["prompt"] = [m1.numpy(), m2.numpy()]
        for r in session.propagate(max_frames=max_frames):
            outputs[("fwd", r.frame_idx)] = (r.obj_ids, r.mask_logits.numpy().copy())
    return outputs, session


def assert_outputs_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        va, vb = a[key], b[key]
        if isinstance(va, tuple):
            assert va[0] == vb[0], key
            va, vb = va[1], vb[1]
        for x, y in zip(va if isinstance(va, list) else [va], vb if isinstance(vb, list) else [vb]):
            assert x.shape == y.shape, key
            assert np.array_equal(x, y), f"{key}: max |diff| {np.abs(x - y).max()}"


@pytest.fixture(scope="module")
def predictors(mini_checkpoint):
    meta = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", str(mini_checkpoint), device="cpu", hydra_overrides_extra=MINI_OVERRIDES
    )
    return {
        "meta": meta,
        "sam2": build_tsms_sam2_video_predictor("mini", str(mini_checkpoint), memory="sam2"),
        "tsms_off": build_tsms_sam2_video_predictor(
            "mini", str(mini_checkpoint), memory="tsms", memory_options={"enabled": False}
        ),
        "tsms": build_tsms_sam2_video_predictor("mini", str(mini_checkpoint), memory="tsms"),
    }


@pytest.mark.parametrize("scenario", ["forward", "reverse"])
def test_parity_with_meta_predictor(predictors, two_object_video, scenario):
    video_dir, masks = two_object_video
    reference, _ = run_scenario(predictors["meta"], video_dir, masks, scenario)
    assert len([k for k in reference if isinstance(k, tuple)]) >= NUM_FRAMES
    for name in ("sam2", "tsms_off"):
        ours, _ = run_scenario(predictors[name], video_dir, masks, scenario)
        assert_outputs_equal(reference, ours)


def test_session_adds_nothing_to_meta_predictor(predictors, two_object_video):
    """A TrackingSession over sam2's own predictor gives sam2's outputs, and ours the same."""
    video_dir, masks = two_object_video
    reference, _ = run_scenario(predictors["meta"], video_dir, masks, "forward")
    expected = {k: v for k, v in reference.items() if k == "prompt" or (isinstance(k, tuple) and k[0] == "fwd")}
    for name in ("meta", "sam2"):
        got, _ = run_session(predictors[name], video_dir, masks)
        assert_outputs_equal(expected, got)


def test_tsms_prunes_and_changes_tracking(predictors, two_object_video):
    video_dir, masks = two_object_video
    ref, ref_session = run_session(predictors["sam2"], video_dir, masks)
    ours, session = run_session(predictors["tsms"], video_dir, masks)
    sam2_tokens = ref_session.attended_tokens_per_frame()
    tsms_tokens = session.attended_tokens_per_frame()
    assert sam2_tokens.keys() == tsms_tokens.keys()
    full = [f for f, calls in ref_session.memory_stats.items() if all(s.frames_in == 7 for s in calls)]
    assert full, "the memory bank never filled up"
    for f in full:
        assert len(session.memory_stats[f]) == 2  # one call per object
        for s in session.memory_stats[f]:
            assert (s.frames_in, s.frames_kept) == (7, 5)
            assert 1 - s.spatial_tokens_kept / s.spatial_tokens_in >= 0.28
        assert tsms_tokens[f] < sam2_tokens[f]
    # frames before the bank fills are untouched, later ones change
    early = [k for k in ref if isinstance(k, tuple) and k[0] == "fwd" and k[1] <= 5]
    assert all(np.array_equal(ref[k][1], ours[k][1]) for k in early)
    late = [k for k in ref if isinstance(k, tuple) and k[0] == "fwd" and k[1] in full]
    assert any(not np.array_equal(ref[k][1], ours[k][1]) for k in late)


def test_no_hole_filling_warning_from_our_predictor(predictors, two_object_video, recwarn):
    video_dir, masks = two_object_video
    predictor = predictors["tsms"]
    state = predictor.init_state(str(video_dir))
    predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=masks[1][0])
    for _ in predictor.propagate_in_video(state, max_frame_num_to_track=3):
        pass
    assert not [w for w in recwarn if "post-processing" in str(w.message)]


def test_session_reset_clears_stats_and_objects(predictors, two_object_video):
    video_dir, masks = two_object_video
    _, session = run_session(predictors["tsms"], video_dir, masks, max_frames=4)
    assert session.memory_stats and session.obj_ids == [1, 2]
    session.reset()
    assert session.memory_stats == {} and session.obj_ids == []
