"""The published memory-selection rules (models/memory_rules.py): hand-made scores and
memories pinning each rule, batched == per object, training, end-to-end tracking."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from data.collate import ClipBatch
from models import MemorySpec, TrackingSession, build_model
from models.box_kalman import BoxKalmanFilter, box_iou, mask_boxes, xyxy_to_xyah
from models.eviction import evict_unreachable_outputs, is_evicted
from models.memory_pruning import clips_in_batch
from models.memory_rules import (STABLE_FRAMES_THRESHOLD, MemoryPlan, _dam_records, distractor_present,
                                 frame_records, motion_context, plan_memory, weight_ious_by_motion)
from models.memory_selection import planned_output_dict
from tests.conftest import make_two_object_video
from training.losses import SAM2VideoLoss
from training.model import TRAIN_MODEL_TARGET
from training.prompts import PromptConfig
from utils.errors import UserError

RULE_PRESETS = ("quality", "tsms_quality", "samurai", "dam4sam")
MODEL = SimpleNamespace(num_maskmem=7, max_obj_ptrs_in_encoder=16)


def _entry(**records):
    """A tracked frame's output for len(scores) objects, with the given per-object records."""
    batch = len(next(iter(records.values())))
    out = {"maskmem_features": torch.zeros(batch, 1, 1, 1), "maskmem_pos_enc": [torch.zeros(batch, 1, 1, 1)],
           "obj_ptr": torch.zeros(batch, 4), "object_score_logits": torch.zeros(batch, 1)}
    out.update({k: torch.tensor(v, dtype=torch.float32) for k, v in records.items()})
    return out


def _memory(scores_per_frame, key="mem_eff", **extra):
    """``{frame: [score of object 0, object 1 ...]}`` -> an output dict (prompt on frame 0)."""
    non_cond = {t: _entry(**{key: s}, **{k: v[t] for k, v in extra.items()}) for t, s in scores_per_frame.items()}
    batch = len(next(iter(scores_per_frame.values())))
    return {"cond_frame_outputs": {0: _entry(mem_eff=[1.0] * batch)}, "non_cond_frame_outputs": non_cond}


def _spatial(plan: MemoryPlan):
    return [f for f, _ in plan.slots if f is not None]


# ------------------------------------------------------------------ SAM 3 / SAM2Long quality gate
def test_quality_gate_never_attends_a_frame_below_the_threshold_but_always_the_previous():
    quality = MemorySpec(selection="quality", quality_threshold=0.01)
    scores = {t: [0.5] for t in range(1, 10)}
    scores[3] = [0.005]  # below SAM 3's mf_threshold
    scores[9] = [0.0]  # the previous frame: attended whatever its score (SAM 3's must_include)
    plan = plan_memory(quality, MODEL, _memory(scores), 10, False, 20, row=0)
    assert _spatial(plan) == [9, 8, 7, 6, 5, 4]  # newest first, 3 skipped, 6 memory slots
    assert 3 not in [p for _, p in plan.slots]  # nor its object pointer
    assert [p for _, p in plan.slots] == [9, 8, 7, 6, 5, 4, 2, 1]  # pointers: the selected frames, ranked
    passing = plan_memory(quality, MODEL, _memory({t: [1.0] for t in range(1, 10)}), 10, False, 20, 0)
    assert [p for _, p in passing.slots] == [9, 8, 7, 6, 5, 4, 3, 2, 1]  # what SAM2 reads too


def test_quality_gate_reaches_back_past_a_bad_stretch_and_in_reverse():
    quality = MemorySpec(selection="quality")
    scores = {t: [0.3] for t in range(1, 30)}
    for t in range(20, 29):
        scores[t] = [0.0]  # the object was occluded on 20-28
    assert _spatial(plan_memory(quality, MODEL, _memory(scores), 30, False, 40, 0)) == [29, 19, 18, 17, 16, 15]
    reverse = {t: [0.3] for t in range(11, 20)}
    reverse[12] = [0.0]
    assert _spatial(plan_memory(quality, MODEL, _memory(reverse), 10, True, 20, 0)) == [11, 13, 14, 15, 16, 17]


def test_quality_score_is_iou_times_object_presence():
    """SAM 3's cal_mem_score: max IoU x (2 sigmoid(object score) - 1), 0 when absent."""
    masks = torch.zeros(3, 3, 8, 8)
    ious = torch.tensor([[0.2, 0.9, 0.4], [0.5, 0.1, 0.3], [0.8, 0.8, 0.8]])
    obj = torch.tensor([[2.0], [-1.0], [0.0]])
    high = torch.full((3, 1, 8, 8), -5.0)
    outputs = (masks, masks, ious, high, high, torch.zeros(3, 4), obj)
    rec = frame_records(MemorySpec(selection="quality"), outputs, _memory({1: [0.0] * 3}), 2, False, False, None)
    expected = torch.tensor([0.9 * (2 * torch.sigmoid(torch.tensor(2.0)) - 1), 0.0, 0.0])
    torch.testing.assert_close(rec["mem_eff"], expected)
    torch.testing.assert_close(rec["mem_iou"], torch.tensor([0.9, 0.5, 0.8]))


def test_objects_keep_their_own_selection():
    quality = MemorySpec(selection="quality")
    scores = {t: [0.5, 0.5] for t in range(1, 10)}
    scores[5] = [0.5, 0.0]  # object 1 was lost on frame 5, object 0 was not
    memory = _memory(scores)
    assert 5 in _spatial(plan_memory(quality, MODEL, memory, 10, False, 20, 0))
    assert 5 not in _spatial(plan_memory(quality, MODEL, memory, 10, False, 20, 1))


# ------------------------------------------------------------------ SAMURAI
def test_samurai_gate_needs_iou_object_and_motion_scores():
    samurai = MemorySpec(selection="samurai")
    frames = range(1, 10)
    memory = _memory({t: [0.9] for t in frames}, key="mem_iou", mem_obj={t: [1.0] for t in frames},
                     mem_kf={t: [float("nan")] for t in frames})  # NaN: the filter was not stable yet
    non_cond = memory["non_cond_frame_outputs"]
    non_cond[8]["mem_iou"] = torch.tensor([0.4])  # IoU prediction <= 0.5
    non_cond[7]["mem_obj"] = torch.tensor([-0.5])  # object score <= 0
    non_cond[6]["mem_kf"] = torch.tensor([0.0])  # motion score <= 0: the mask is off the predicted box
    non_cond[5]["mem_kf"] = torch.tensor([0.6])
    plan = plan_memory(samurai, MODEL, memory, 10, False, 20, 0)
    assert _spatial(plan) == [9, 5, 4, 3, 2, 1]
    assert [p for _, p in plan.slots][:9] == [9, 8, 7, 6, 5, 4, 3, 2, 1]  # pointers stay SAM2's last frames


def _box_mask(x, y, size=10, hw=64):
    m = torch.zeros(1, 1, hw, hw)
    m[0, 0, y: y + size, x: x + size] = 10.0
    return m


def _run_filter(positions, hw=64):
    """SAMURAI's filter over a box moving through ``positions`` (one tracked frame each)."""
    settings = MemorySpec(selection="samurai")
    memory = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    scores = []
    for t, (x, y) in enumerate(positions, start=1):
        ctx = motion_context(settings, memory, t, False, 1, hw, prompted=False)
        high = _box_mask(x, y, hw=hw)
        outputs = (high, high, torch.tensor([[0.9]]), high, high, torch.zeros(1, 4), torch.tensor([[3.0]]))
        rec = frame_records(settings, outputs, memory, t, False, False, ctx)
        memory["non_cond_frame_outputs"][t] = {**_entry(mem_eff=[1.0]), **rec}
        scores.append(float(rec["mem_kf"][0]))
    return scores


def test_kalman_motion_score_is_high_for_constant_velocity_and_low_after_a_jump():
    steady = [(2 + 2 * t, 5 + t) for t in range(STABLE_FRAMES_THRESHOLD + 4)]
    scores = _run_filter(steady)
    assert all(np.isnan(s) for s in scores[:STABLE_FRAMES_THRESHOLD])  # no motion score until stable
    assert min(scores[STABLE_FRAMES_THRESHOLD:]) > 0.9, scores
    jump = steady + [(steady[-1][0] + 25, steady[-1][1] + 20)]
    assert _run_filter(jump)[-1] < 0.05


def test_kalman_filter_follows_a_constant_velocity_box():
    kf = BoxKalmanFilter
    mean, cov = kf.initiate(xyxy_to_xyah([0, 0, 10, 20]))
    for t in range(1, 30):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, xyxy_to_xyah([3 * t, 0, 3 * t + 10, 20]))
    predicted = kf.predicted_box(kf.predict(mean, cov)[0])
    np.testing.assert_allclose(predicted, [90, 0, 100, 20], atol=0.5)
    assert box_iou(np.array([0, 0, 10, 10.0]), np.array([[5, 0, 15, 10.0], [20, 20, 30, 30]])).tolist() == \
        pytest.approx([1 / 3, 0.0])
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[0, 2:5, 1:7] = True
    assert mask_boxes(mask).tolist() == [[1, 2, 6, 4], [0, 0, 0, 0]]


def test_motion_aware_choice_picks_the_mask_where_the_filter_expects_the_object():
    """SAMURAI: argmax of 0.15 kf_iou + 0.85 iou; SAM2 would take the 0.8 mask far away."""
    mean, cov = BoxKalmanFilter.initiate(xyxy_to_xyah([40, 40, 50, 50]))
    ctx = SimpleNamespace(means=[mean], covs=[cov], stable=[STABLE_FRAMES_THRESHOLD], weight=0.15, choose=True,
                          image_size=64, original_ious=None, kf_ious=None,
                          weighting_rows=lambda: [0])
    masks = torch.full((1, 2, 16, 16), -10.0)  # low-res logits (x4 = 64)
    masks[0, 0, 1:4, 1:4] = 10.0  # far from the predicted box
    masks[0, 1, 10:13, 10:13] = 10.0  # on it
    ious = torch.tensor([[0.80, 0.75]])
    weighted = weight_ious_by_motion(ctx, masks, ious, torch.tensor([[1.0]]))
    assert int(weighted.argmax()) == 1 and int(ious.argmax()) == 0
    assert ctx.kf_ious[0, 0] == 0.0 and ctx.kf_ious[0, 1] > 0.5


# ------------------------------------------------------------------ DAM4SAM
def _dam_step(settings, memory, t, area_mask, multi=None, iou=0.9):
    batch = 1
    mask = area_mask[None].bool()
    multi = multi if multi is not None else area_mask[None, None].repeat(1, 3, 1, 1)
    rec = _dam_records(settings, memory, t, False, False, multi.float() * 20 - 10, mask,
                       torch.zeros(batch, dtype=torch.long), torch.tensor([iou]), torch.tensor([1.0]))
    memory["non_cond_frame_outputs"][t] = {**_entry(mem_area=[float(mask.sum())]), **rec}
    return rec


def _square(x, y, size=8, hw=48):
    m = torch.zeros(hw, hw)
    m[y: y + size, x: x + size] = 1
    return m


def test_dam4sam_ram_takes_a_frame_every_few_frames_and_skips_empty_masks():
    settings = MemorySpec(selection="dam4sam", ram_size=3, ram_every=5)
    memory = {"cond_frame_outputs": {0: _entry(mem_eff=[1.0])}, "non_cond_frame_outputs": {}}
    for t in range(1, 13):
        mask = torch.zeros(48, 48) if t == 6 else _square(10, 10)
        rec = _dam_step(settings, memory, t, mask)
    assert rec["dam_ram"][0].tolist() == [1, 7, 12]  # 6 was due but empty: 7 went in instead
    plan = plan_memory(settings, MODEL, memory, 13, False, 20, 0)
    assert _spatial(plan) == [12, 7, 1]  # RAM (the previous frame is in it), newest first
    assert plan.anchors == ()


def test_dam4sam_adds_an_anchor_when_a_distractor_appears():
    target, other = _square(10, 10).bool().numpy(), _square(30, 30).bool().numpy()
    assert distractor_present(target, [target | other])  # another mask spans a look-alike
    assert not distractor_present(target, [target, target])  # the alternatives agree
    settings = MemorySpec(selection="dam4sam")
    memory = {"cond_frame_outputs": {0: _entry(mem_eff=[1.0])}, "non_cond_frame_outputs": {}}
    with_distractor = torch.stack([_square(10, 10), torch.maximum(_square(10, 10), _square(30, 30)),
                                   _square(10, 10)])[None]
    added = []
    for t in range(1, 16):
        multi = with_distractor if t in (8, 10, 14) else None
        rec = _dam_step(settings, memory, t, _square(10, 10), multi=multi, iou=0.1 if t == 14 else 0.9)
        added.append(int(rec["dam_last_drm"][0]))
    drm = [t for t in rec["dam_drm"][0].tolist() if t >= 0]
    assert drm == [8]  # 10: only 2 frames after the last anchor; 14: not confident (IoU 0.1)
    plan = plan_memory(settings, MODEL, memory, 16, False, 20, 0)
    assert plan.anchors == (8,)  # attended like the prompted frame (no temporal encoding)
    view = planned_output_dict(MODEL, memory, plan, 16, False, None)
    assert list(view["cond_frame_outputs"]) == [0, 8]


# ------------------------------------------------------------------ batched == one object at a time
def _hand_made_memory(model, batch, scores):
    torch.manual_seed(0)
    side = model.image_size // 16
    c = model.mem_dim

    def entry(score):
        return {"maskmem_features": torch.randn(batch, c, side, side),
                "maskmem_pos_enc": [torch.randn(batch, c, side, side)],
                "obj_ptr": torch.randn(batch, model.hidden_dim),
                "mem_eff": torch.tensor(score, dtype=torch.float32)}

    non_cond = {t: entry(s) for t, s in scores.items()}
    return {"cond_frame_outputs": {0: entry([1.0] * batch)}, "non_cond_frame_outputs": non_cond}


def _slice_memory(memory, row):
    def one(e):
        return {k: ([p[row: row + 1] for p in v] if isinstance(v, list) else v[row: row + 1]) for k, v in e.items()}
    return {k: {t: one(e) for t, e in d.items()} for k, d in memory.items()}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_batched_rows_with_different_selections_equal_one_object_at_a_time(mode):
    model = build_model(config="mini", memory="tsms_quality", mode=mode, predictor=mode == "eval",
                        model_target=TRAIN_MODEL_TARGET if mode == "train" else None)
    for m in model.modules():  # training mode: no dropout, so the two runs can be compared
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout_p"):
            m.dropout_p = 0.0
    scores = {t: [0.5, 0.5, 0.0 if t % 2 else 0.5] for t in range(1, 9)}  # object 2 lost on odd frames
    scores[4] = [0.0, 0.5, 0.5]  # object 0 lost on frame 4
    memory = _hand_made_memory(model, 3, scores)
    side = model.image_size // 16
    feats = [torch.randn(side * side, 3, model.hidden_dim)]
    pos = [torch.randn(side * side, 3, model.hidden_dim)]
    plans = {plan_memory(model.memory_rule, model, memory, 9, False, 20, r) for r in range(3)}
    assert len(plans) == 3  # three groups
    with torch.no_grad(), clips_in_batch([0, 0, 1]):
        batched = model._prepare_memory_conditioned_features(9, False, feats, pos, [(side, side)], memory, 20)
        for r in range(3):
            with clips_in_batch([0]):
                alone = model._prepare_memory_conditioned_features(
                    9, False, [feats[0][:, r: r + 1]], [pos[0][:, r: r + 1]], [(side, side)],
                    _slice_memory(memory, r), 20)
            torch.testing.assert_close(batched[r: r + 1], alone, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ presets, tracking, training
def test_presets_and_their_rules():
    assert {MemorySpec.preset(n).selection for n in RULE_PRESETS} == {"quality", "samurai", "dam4sam"}
    assert MemorySpec.preset("samurai").motion_mask_choice
    assert MemorySpec.preset("tsms_quality").prune_frames == 2 and MemorySpec.preset("tsms_quality").use_mem_split
    for name in ("sam2", "surgsam2", "tsms", "tsms_fast", "tsms_pool"):  # unchanged: SAM2's recent frames
        assert MemorySpec.preset(name).selection == "recent" and not MemorySpec.preset(name).motion_mask_choice
    with pytest.raises(UserError, match="selection"):
        MemorySpec.preset("tsms").replace(selection="best")
    with pytest.raises(UserError, match="need a TSMS memory"):
        MemorySpec.preset("sam2").replace(selection="quality")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "clip"
    return path, make_two_object_video(path, num_frames=7)


def _track(predictor, video, max_frames=None, **kwargs):
    path, masks = video
    with TrackingSession(predictor, path, **kwargs) as session:
        session.add_mask(0, 1, masks[1][0])
        session.add_mask(0, 2, masks[2][0])
        logits = {r.frame_idx: r.mask_logits for r in session.propagate(max_frames=max_frames)}
        tokens = session.attended_tokens_per_frame()
    return logits, tokens


@pytest.mark.parametrize("preset", RULE_PRESETS)
def test_every_rule_tracks_batched_evicted_and_in_bf16(preset, video):
    torch.manual_seed(0)
    predictor = build_model(config="mini", memory=preset, predictor=True)
    one, tokens = _track(predictor, video, evict_outputs=False)
    batched, tokens_b = _track(predictor, video, batch_objects=True)
    assert sorted(one) == list(range(7)) and tokens == tokens_b and len(tokens) == 6
    for t in one:
        torch.testing.assert_close(batched[t], one[t], rtol=1e-4, atol=1e-4)
    bf16, _ = _track(predictor, video, max_frames=4, dtype="bf16", batch_objects=True)
    assert len(bf16) == 5 and all(torch.isfinite(x).all() for x in bf16.values())


def test_rules_attend_other_frames_than_sam2(video):
    """Random weights predict low quality: the quality gate keeps the prompted and the previous frame only."""
    torch.manual_seed(0)
    _, sam2_tokens = _track(build_model(config="mini", memory="sam2", predictor=True), video)
    torch.manual_seed(0)
    _, quality_tokens = _track(build_model(config="mini", memory="quality", predictor=True), video)
    hw = (build_model(config="mini").image_size // 16) ** 2
    assert sam2_tokens[6] - quality_tokens[6] >= 4 * hw  # SAM2: 6 frames, quality: prompt + previous


def test_training_step_with_the_quality_gate(one_torch_thread):
    torch.manual_seed(0)
    model = build_model(config="mini", mode="train", memory="tsms_quality", model_target=TRAIN_MODEL_TARGET)
    images = torch.randn(4, 2, 3, 128, 128)
    masks = torch.zeros(4, 3, 128, 128, dtype=torch.bool)
    masks[:, 0, 20:60, 30:70] = masks[:, 1, 90:110, 10:60] = masks[:, 2, 40:90, 40:90] = True
    batch = ClipBatch(images, masks, torch.tensor([0, 0, 1]))
    outputs = model(batch, torch.Generator().manual_seed(0), PromptConfig(prob_point_input=0.0))
    losses = SAM2VideoLoss()(outputs, batch.masks)
    losses["loss_total"].backward()
    assert torch.isfinite(losses["loss_total"])


@pytest.mark.parametrize("preset", ["samurai", "dam4sam"])
def test_training_refuses_inference_only_rules(preset):
    from omegaconf import OmegaConf
    from training.builders import memory_spec

    node = OmegaConf.load(f"configs/memory/{preset}.yaml")
    with pytest.raises(UserError, match="inference-time rule"):
        memory_spec(OmegaConf.create({"memory": node}))


# ------------------------------------------------------------------ flat memory, the CLI
def _evicting_model(selection):
    return SimpleNamespace(num_maskmem=7, memory_temporal_stride_for_eval=1, max_obj_ptrs_in_encoder=16,
                           use_obj_ptrs_in_encoder=True, memory_rule=MemorySpec(selection=selection))


def test_eviction_keeps_what_a_rule_may_still_select():
    scores = {t: [0.5 if t % 3 == 0 else 0.0] for t in range(1, 60)}
    state = {"output_dict_per_obj": {0: _memory(scores)}}
    evict_unreachable_outputs(_evicting_model("quality"), state, 59, False)
    non_cond = state["output_dict_per_obj"][0]["non_cond_frame_outputs"]
    old = [t for t in non_cond if 15 < t < 40]  # (frames within reach of the prompt are kept anyway)
    assert old and all(t % 3 == 0 and not is_evicted(non_cond[t]) for t in old)  # gate passed: kept whole
    assert all(t in non_cond for t in range(44, 60))  # pointer reach: kept (stripped or not)
    assert is_evicted(non_cond[50]) and non_cond[50]["mem_eff"].item() == 0.0  # records survive stripping
    # SAM2's rule drops the old frames whatever their score
    state = {"output_dict_per_obj": {0: _memory(scores)}}
    evict_unreachable_outputs(_evicting_model("recent"), state, 59, False)
    assert not [t for t in state["output_dict_per_obj"][0]["non_cond_frame_outputs"] if 15 < t < 40]
    # DAM4SAM: the frames in the newest RAM/DRM buffers stay, however old
    buffers = {t: [[-10 ** 9, 20, 21]] for t in range(1, 60)}  # older buffers: no longer read
    buffers[58] = buffers[59] = [[-10 ** 9, 24, 29]]
    state = {"output_dict_per_obj": {0: _memory(scores, dam_drm=buffers)}}
    for entry in state["output_dict_per_obj"][0]["non_cond_frame_outputs"].values():
        entry["dam_drm"] = entry["dam_drm"].long()
    evict_unreachable_outputs(_evicting_model("dam4sam"), state, 59, False)
    non_cond = state["output_dict_per_obj"][0]["non_cond_frame_outputs"]
    assert not is_evicted(non_cond[24]) and not is_evicted(non_cond[29]) and 25 not in non_cond
    assert 20 not in non_cond and 21 not in non_cond  # only the buffers tracking reads next pin frames


def test_predict_video_with_each_rule(mini_checkpoint, tmp_path):
    from inference.predict_video import main
    from utils.cli import run_cli

    masks = make_two_object_video(tmp_path / "vid", num_frames=4)
    prompt = tmp_path / "prompt.png"
    from PIL import Image
    Image.fromarray(masks[1][0].astype(np.uint8)).save(prompt)
    for preset in RULE_PRESETS:
        out = tmp_path / preset
        args = ["--video_path", tmp_path / "vid", "--checkpoint", mini_checkpoint, "--model_cfg", "mini",
                "--prompt_type", "mask", "--mask_path", prompt, "--memory", preset, "--output_dir", out, "--quiet"]
        assert run_cli(main, [str(a) for a in args]) == 0, preset
        assert len(list(out.rglob("*.png"))) == 4, preset


def test_eviction_leaves_a_rules_tracking_unchanged(tmp_path):
    """30 frames with DAM4SAM (its RAM holds frames older than SAM2's reach): outputs beyond
    SAM2's reach are stripped or dropped, except what the rule may still attend, so tracking
    equals keeping everything. (The gate rules' side: test_eviction_keeps_what_a_rule_may_still_select.)"""
    masks = make_two_object_video(tmp_path / "long", num_frames=30)
    torch.manual_seed(0)
    predictor = build_model(config="mini", memory="dam4sam", predictor=True)

    def run(evict):
        with TrackingSession(predictor, tmp_path / "long", evict_outputs=evict) as session:
            session.add_mask(0, 1, masks[1][0])
            logits = {r.frame_idx: r.mask_logits for r in session.propagate()}
            entries = session.state["output_dict_per_obj"][0]["non_cond_frame_outputs"].values()
            stored = sum(not is_evicted(e) for e in entries)  # frames whose memory features are kept
        return logits, stored

    kept, stored_all = run(False)
    evicted, stored_few = run(True)
    assert stored_all == 29 and stored_few <= 25  # frames beyond SAM2's reach were stripped
    assert all(torch.equal(kept[t], evicted[t]) for t in kept)


def test_batched_re_propagation_after_a_correction_reads_the_new_memory(video):
    """Correct one object on a tracked frame and track it again: batched tracking must read the
    frames it re-tracks, not their first-pass memory (a cache kept the old ones: DAM4SAM's RAM
    then differed from one object at a time; SAM2's rule differed by ~2e-6)."""
    path, masks = video
    torch.manual_seed(0)
    predictor = build_model(config="mini", memory="dam4sam", predictor=True)
    out = {}
    for batch in (False, True):
        with TrackingSession(predictor, path, batch_objects=batch) as session:
            session.add_mask(2, 1, masks[1][2])
            session.add_mask(2, 2, masks[2][2])
            list(session.propagate(direction="both"))
            session.add_points(3, 1, points=[[40, 40]], labels=[1])
            out[batch] = {r.frame_idx: r.mask_logits for r in session.propagate(start_frame=3, obj_ids=[1])}
    assert sorted(out[True]) == [3, 4, 5, 6]
    for t in out[False]:
        torch.testing.assert_close(out[True][t], out[False][t], rtol=1e-5, atol=1e-5)


def test_samurai_switches_split_its_two_parts(video):
    """samurai_mask is SAMURAI's mask choice over SAM2's memory (the same frames attended),
    samurai_select its memory selection with SAM2's mask choice; samurai is both."""
    runs = {}
    for preset in ("sam2", "samurai_mask", "samurai_select", "samurai"):
        torch.manual_seed(0)
        runs[preset] = _track(build_model(config="mini", memory=preset, predictor=True), video)
    assert runs["samurai_mask"][1] == runs["sam2"][1]  # memory unchanged
    assert MemorySpec.preset("samurai_mask").motion_mask_choice and MemorySpec.preset("samurai_mask").selection == \
        "recent"  # (the choice itself: test_motion_aware_choice_picks_*)
    assert MemorySpec.preset("samurai_select").motion_mask_choice is False
    assert MemorySpec.preset("samurai_select").replace(name="samurai", motion_mask_choice=True) == \
        MemorySpec.preset("samurai")
