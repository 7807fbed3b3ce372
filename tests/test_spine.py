"""The spine: MemorySpec (one validated value), build_model, TrackingSession, device choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from inference.video_sources import ImageFolderSource
from models import MemorySpec, TrackingSession, build_model
from models.memory_spec import memory_spec_of_model_config, preset_names
from utils.device import resolve_device
from utils.errors import UserError


# ------------------------------------------------------------------ MemorySpec
def test_every_preset_file_is_a_spec_named_after_it():
    assert {"sam2", "tsms", "tsms_fast", "tsms_pool", "surgsam2"} <= set(preset_names())
    for name in preset_names():
        spec = MemorySpec.preset(name)
        assert spec.name == name and spec.matching_preset() == name and spec.describe() == name
    assert MemorySpec.preset("sam2").module == "sam2" and MemorySpec.preset("tsms_fast").prune_frames == 5
    assert not MemorySpec.preset("surgsam2").use_mem_split and MemorySpec.preset("tsms_pool").pool_size == 2


def test_spec_from_a_composed_training_node_and_from_cli_overrides():
    node = OmegaConf.create({"_target_": "models.memory_attention.TSMSMemoryAttention", "name": "tsms",
                             "use_mem_split": True, "prune_frames": 2, "pruning_threshold": 0.9,
                             "memory_bank_size": 5, "d_model": 64})  # d_model: not a memory setting
    spec = MemorySpec.from_node(node)
    assert (spec.name, spec.pruning_threshold, spec.memory_bank_size) == ("tsms", 0.9, 5)
    assert spec.describe() == "tsms (memory_bank_size=5, pruning_threshold=0.9)"
    assert MemorySpec.from_node({"_target_": "sam2.modeling.memory_attention.MemoryAttention"}).name == "sam2"
    fast = MemorySpec.preset("tsms").replace(use_mem_split=False, prune_frames=5)
    assert fast.matching_preset() == "tsms_fast"  # the same settings, whatever it is called
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.prune_frames = 1


@pytest.mark.parametrize("changes,message", [
    ({"pruning_threshold": 1.5}, "pruning_threshold must be null, 'auto' or lie in \\[-1, 1\\]"),
    ({"pruning_threshold": True}, "pruning_threshold"),
    ({"prune_frames": -1}, "prune_frames must be an integer >= 0"),
    ({"memory_bank_size": 0}, "memory_bank_size must be an integer >= 1"),
    ({"similarity": "l2"}, "unknown similarity 'l2'"),
    ({"pool_size": 0}, "pool_size"),
    ({"enabled": "yes"}, "enabled must be true or false"),
    ({"prune": 3}, "unknown memory option"),
])
def test_spec_validates_in_one_place(changes, message):
    with pytest.raises(UserError, match=message) as err:
        MemorySpec.preset("tsms").replace(**changes)
    assert "\n" not in str(err.value)


def test_spec_refuses_tsms_options_on_sam2_and_unknown_presets():
    with pytest.raises(UserError, match="need a TSMS memory"):
        MemorySpec.preset("sam2").replace(prune_frames=3)
    assert MemorySpec.preset("sam2").replace(memory_bank_size=5).memory_bank_size == 5
    with pytest.raises(UserError, match="unknown memory 'tsms_turbo'; choose one of: .*tsms_fast"):
        MemorySpec.preset("tsms_turbo")


def test_spec_round_trips_through_the_built_model_and_its_config():
    spec = MemorySpec.preset("tsms_fast").replace(pruning_threshold=0.5)
    model = build_model(config="mini", memory=spec)
    assert model.memory_spec == spec and model.memory_attention.spec == spec
    assert memory_spec_of_model_config(model.tsms_config) == spec  # what checkpoints embed
    assert model.memory_attention.prune_frames == 5 and model.memory_attention.pruning_threshold == 0.5


def test_mapping_configs_keep_their_memory_and_files_default_to_tsms():
    sam2_model = build_model(config="mini", memory="sam2")
    kept = build_model(config=OmegaConf.to_container(sam2_model.tsms_config))
    assert kept.memory_spec.name == "sam2"
    assert build_model(config="mini").memory_spec.name == "tsms"


# ------------------------------------------------------------------ memory bank vs checkpoint
def test_smaller_memory_bank_keeps_the_trained_encodings(mini_checkpoint, two_object_video):
    """A bank of 5 on a 7-slot checkpoint keeps the encodings of the memories it still
    attends: on a video shorter than both banks, tracking is unchanged."""
    trained = torch.load(mini_checkpoint, weights_only=True)["model"]["maskmem_tpos_enc"]
    small = build_model(config="mini", checkpoint=str(mini_checkpoint), memory="sam2",
                        memory_overrides={"memory_bank_size": 5}, predictor=True)
    assert small.num_maskmem == 5 and torch.equal(small.maskmem_tpos_enc[:4], trained[:4])
    assert torch.equal(small.maskmem_tpos_enc[4], trained[6])  # the prompted frame's encoding
    full = build_model(config="mini", checkpoint=str(mini_checkpoint), memory="sam2", predictor=True)
    video_dir, masks = two_object_video
    outputs = []
    for predictor in (full, small):
        session = TrackingSession(predictor, video_dir)
        session.add_mask(0, 1, masks[1][0])
        outputs.append([r.mask_logits for r in session.propagate(max_frames=4)])  # 5 frames < both banks
    assert all(torch.equal(a, b) for a, b in zip(*outputs))


def test_larger_memory_bank_than_the_checkpoint_says_why(mini_checkpoint):
    with pytest.raises(UserError, match="memory_bank_size 9 is larger than the 7 memory slots .* <= 7") as err:
        build_model(config="mini", checkpoint=str(mini_checkpoint), memory_overrides={"memory_bank_size": 9})
    assert "does not match the model config" not in str(err.value)


# ------------------------------------------------------------------ TrackingSession
@pytest.fixture(scope="module")
def predictor(mini_checkpoint):
    return build_model(config="mini", checkpoint=str(mini_checkpoint), memory="tsms", predictor=True)


def _prompted(predictor, video_dir, masks):
    session = TrackingSession(predictor, ImageFolderSource(video_dir))
    session.add_mask(0, 1, masks[1][0])
    session.add_mask(0, 2, masks[2][0])
    return session


def _outputs(session, obj_id):
    idx = session.state["obj_id_to_idx"][obj_id]
    out = session.state["output_dict_per_obj"][idx]["non_cond_frame_outputs"]
    return {f: o["pred_masks"].clone() for f, o in out.items() if o.get("pred_masks") is not None}


def test_correcting_one_object_retracks_only_that_object(predictor, two_object_video):
    video_dir, masks = two_object_video
    session = _prompted(predictor, video_dir, masks)
    first = {r.frame_idx: r for r in session.propagate()}
    assert len(first) == session.num_frames and first[5].obj_ids == [1, 2]
    before = {1: _outputs(session, 1), 2: _outputs(session, 2)}
    calls = []
    original = predictor._run_single_frame_inference

    dicts = {id(session.state["output_dict_per_obj"][i]): session.state["obj_idx_to_id"][i] for i in (0, 1)}

    def spy(inference_state, output_dict, frame_idx, *args, **kwargs):
        calls.append((dicts.get(id(output_dict)), frame_idx))
        return original(inference_state, output_dict, frame_idx, *args, **kwargs)

    predictor._run_single_frame_inference = spy
    try:
        session.add_points(8, 1, [[10.0, 10.0]], [1], clear=False)  # a (wrong) correction click
        again = list(session.propagate(start_frame=8, obj_ids=[1]))
    finally:
        del predictor._run_single_frame_inference
    assert [r.frame_idx for r in again] == list(range(8, session.num_frames))
    assert all(r.obj_ids == [1] and r.mask_logits.shape[0] == 1 for r in again)
    assert {obj for obj, _ in calls} == {1}  # object 2 is never run
    assert sorted(f for _, f in calls if f > 8) == list(range(9, session.num_frames))
    after = {1: _outputs(session, 1), 2: _outputs(session, 2)}
    assert after[2].keys() == before[2].keys()
    assert all(torch.equal(after[2][f], before[2][f]) for f in before[2])  # untouched
    assert any(not torch.equal(after[1][f], before[1][f]) for f in range(9, session.num_frames))
    assert all(torch.equal(after[1][f], before[1][f]) for f in range(1, 8))
    assert session.prompted_frames(1) == [0, 8] and session.prompted_frames(2) == [0]


def test_propagate_both_directions_from_a_middle_frame(predictor, two_object_video):
    video_dir, masks = two_object_video
    session = TrackingSession(predictor, ImageFolderSource(video_dir))
    mid = 6
    prompt = session.add_mask(mid, 1, masks[1][mid])
    assert prompt.frame_idx == mid and prompt.object_scores[1] > -100
    order = [r.frame_idx for r in session.propagate(direction="both")]
    assert order == list(range(mid, session.num_frames)) + list(range(mid - 1, -1, -1))
    reverse = [r.frame_idx for r in session.propagate(direction="reverse", start_frame=3, max_frames=2)]
    assert reverse == [3, 2, 1]
    with pytest.raises(ValueError, match="direction"):
        next(session.propagate(direction="sideways"))
    with pytest.raises(ValueError, match="unknown object id"):
        next(session.propagate(obj_ids=[7]))


def test_frame_results_carry_masks_scores_and_memory_stats(predictor, two_object_video):
    video_dir, masks = two_object_video
    session = _prompted(predictor, video_dir, masks)
    results = list(session.propagate())
    assert results[0].memory == [] and results[0].attended_tokens is None  # the prompted frame
    late = results[-1]
    assert late.masks().shape == (2, *masks[1][0].shape) and late.masks().dtype == bool
    assert np.array_equal(late.mask(2), late.masks()[1])
    assert set(late.object_scores) == {1, 2}
    assert len(late.memory) == 2 and late.attended_tokens == session.attended_tokens_per_frame()[late.frame_idx]
    assert session.mean_attended_tokens() > 0


# ------------------------------------------------------------------ device
def test_device_choice():
    assert resolve_device("auto").type in ("cpu", "cuda") and resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="unknown device|unsupported device"):
        resolve_device("tpu9")
