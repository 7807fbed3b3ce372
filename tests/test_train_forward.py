"""The training forward: prompt simulation, correction clicks, outputs and gradients (mini model)."""

from __future__ import annotations

import pytest
import torch

from models import TSMSMemoryAttention, build_model
from data.collate import ClipBatch
from training.losses import SAM2VideoLoss
from training.model import TRAIN_MODEL_TARGET, TSMSTrainModel
from training.prompts import PromptConfig, plan_prompts, sample_box, sample_click
from utils.errors import UserError

T, SIZE = 4, 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def train_model():
    torch.manual_seed(0)
    model = build_model(config="mini", mode="train", memory="tsms", model_target=TRAIN_MODEL_TARGET)
    return model


def _batch(num_frames=T, absent_frame=None):
    """Two clips; clip 0 has two objects (a moving square, a bar), clip 1 one object."""
    torch.manual_seed(1)
    images = torch.randn(num_frames, 2, 3, SIZE, SIZE)
    masks = torch.zeros(num_frames, 3, SIZE, SIZE, dtype=torch.bool)
    for t in range(num_frames):
        masks[t, 0, 20 + 4 * t : 60 + 4 * t, 30:70] = True
        masks[t, 1, 90:110, 10 + 5 * t : 60 + 5 * t] = True
        masks[t, 2, 40:90, 40:90] = True
    if absent_frame is not None:
        masks[absent_frame, 1] = False  # the bar leaves the view
    return ClipBatch(images, masks, torch.tensor([0, 0, 1]))


# ------------------------------------------------------------------ prompts
def test_two_frame_clips_keep_a_frame_tracked_from_memory():
    """With 2 frames and up to 2 conditioning frames, frame 1 is never a prompted frame, so a
    mask-prompted clip still has a loss that depends on the model (it crashed before)."""
    gt = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    gt[:, 0, 4:9, 4:9] = True
    config = PromptConfig(prob_point_input=0.0, max_init_cond_frames=2, rand_init_cond_frames=False)
    assert all(plan_prompts(gt, config, _gen(seed)).init_cond_frames == [0] for seed in range(5))
    longer = torch.zeros(5, 1, 16, 16, dtype=torch.bool)
    assert len(plan_prompts(longer, config, _gen(0)).init_cond_frames) == 2  # unchanged for longer clips


def test_click_is_sampled_from_the_error_region():
    gt = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    gt[0, 0, 2:5, 2:5] = True
    pred = gt.clone()
    pred[0, 0, 3, 3] = False  # one missed pixel: a positive click there
    points, labels = sample_click(gt, pred, _gen())
    assert points.tolist() == [[[3.0, 3.0]]] and labels.tolist() == [[1]]
    pred = gt.clone()
    pred[0, 0, 7, 6] = True  # one false positive at (x=6, y=7): a negative click there
    points, labels = sample_click(gt, pred, _gen())
    assert points.tolist() == [[[6.0, 7.0]]] and labels.tolist() == [[0]]
    points, labels = sample_click(gt, gt.clone(), _gen())  # perfect: a negative click on background
    x, y = (int(v) for v in points[0, 0])
    assert labels.item() == 0 and not gt[0, 0, y, x]
    points, labels = sample_click(gt, None, _gen())  # from the ground truth: positive, inside
    x, y = (int(v) for v in points[0, 0])
    assert labels.item() == 1 and gt[0, 0, y, x]


def test_box_prompt_covers_the_mask():
    gt = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    gt[0, 0, 5:10, 8:20] = True  # rows 5..9, cols 8..19; object 1 is absent
    points, labels = sample_box(gt, _gen(), noise=0.0)
    assert points[0].tolist() == [[8.0, 5.0], [19.0, 9.0]] and labels.tolist() == [[2, 3], [2, 3]]
    assert points[1].abs().sum() == 0
    noisy, _ = sample_box(gt, _gen(), noise=0.1, noise_bound=20)
    assert (noisy[0] - points[0]).abs().max() <= 0.1 * 11 + 1e-5


def test_prompt_plans_are_seeded_and_cover_every_kind():
    gt = _batch().masks
    kinds = {plan_prompts(gt, PromptConfig(), _gen(s)).kind for s in range(40)}
    assert kinds == {"mask", "box", "point"}
    a, b = plan_prompts(gt, PromptConfig(), _gen(7)), plan_prompts(gt, PromptConfig(), _gen(7))
    assert (a.kind, a.init_cond_frames, a.frames_to_correct) == (b.kind, b.init_cond_frames, b.frames_to_correct)
    masks_only = plan_prompts(gt, PromptConfig(prob_point_input=0.0), _gen(3))
    assert masks_only.kind == "mask" and masks_only.frames_to_correct == [] and masks_only.init_cond_frames[0] == 0
    clicks = plan_prompts(gt, PromptConfig(prob_point_input=1.0, prob_box_input=0.0, rand_init_cond_frames=False), _gen(3))
    assert clicks.kind == "point" and len(clicks.init_cond_frames) == 2
    assert clicks.frames_to_correct[:2] == clicks.init_cond_frames and len(clicks.frames_to_correct) <= 2
    with pytest.raises(UserError, match="prob_point_input"):
        PromptConfig(prob_point_input=1.5)


# ------------------------------------------------------------------ forward
def test_train_model_is_sam2_with_the_ms_memory(train_model):
    assert isinstance(train_model, TSMSTrainModel) and train_model.training
    assert isinstance(train_model.memory_attention, TSMSMemoryAttention)
    assert train_model.memory_attention.pruning_active  # MS applies in training too


@pytest.mark.parametrize("kind", ["mask", "point", "box"])
def test_forward_outputs_per_frame_and_step(train_model, kind):
    prompts = {
        "mask": PromptConfig(prob_point_input=0.0, rand_init_cond_frames=False),
        "point": PromptConfig(prob_point_input=1.0, prob_box_input=0.0, num_correction_clicks=2),
        "box": PromptConfig(prob_point_input=1.0, prob_box_input=1.0, num_correction_clicks=1),
    }[kind]
    batch = _batch()
    out = train_model(batch, _gen(5), prompts)
    assert out.prompt_kind == kind and len(out.frames) == T
    corrected = set(plan_prompts(batch.masks, prompts, _gen(5)).frames_to_correct)
    for t, frame in enumerate(out.frames):
        expected_steps = 1 + (prompts.num_correction_clicks if t in corrected else 0)
        assert len(frame.multimasks) == len(frame.ious) == len(frame.object_score_logits) == expected_steps
        for masks, ious, scores in zip(frame.multimasks, frame.ious, frame.object_score_logits):
            m = masks.shape[1]
            assert masks.shape == (3, m, SIZE, SIZE) and m in (1, 3)
            assert ious.shape == (3, m) and scores.shape == (3, 1)
            assert torch.isfinite(ious).all() and torch.isfinite(scores).all()
    if kind == "point":  # one click on an initial frame gives 3 candidates
        assert out.frames[0].multimasks[0].shape[1] == 3
    assert out.final_masks().shape == (T, 3, SIZE, SIZE)


def test_loss_backward_reaches_every_part_of_the_model(train_model):
    prompts = PromptConfig(prob_point_input=1.0, prob_box_input=0.0, num_correction_clicks=1)
    train_model.zero_grad(set_to_none=True)
    batch = _batch(absent_frame=2)
    losses = SAM2VideoLoss()(train_model(batch, _gen(1), prompts), batch.masks)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_total"].backward()
    for part in ("image_encoder", "memory_attention", "memory_encoder", "sam_mask_decoder", "sam_prompt_encoder"):
        grads = [p.grad for n, p in train_model.named_parameters() if n.startswith(part) and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), part
        assert all(torch.isfinite(g).all() for g in grads), part


def test_forward_is_a_function_of_the_seed(train_model):
    train_model.eval()  # no dropout
    try:
        batch = _batch()
        a, b = train_model(batch, _gen(11)), train_model(batch, _gen(11))
    finally:
        train_model.train()
    assert a.prompt_kind == b.prompt_kind and torch.equal(a.final_masks(), b.final_masks())


# ------------------------------------------------------------------ memory teacher forcing
def test_gt_memory_probability_decays_linearly_to_zero():
    from training.model import gt_memory_probability

    assert [gt_memory_probability(0.8, 0.5, p) for p in (0.0, 0.25, 0.5, 0.9)] == [0.8, 0.4, 0.0, 0.0]
    assert gt_memory_probability(0.0, 0.5, 0.0) == 0.0 and gt_memory_probability(1.0, 0.0, 0.0) == 0.0


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_gt_memory_encodes_ground_truth_instead_of_the_prediction(train_model, monkeypatch, prob):
    """With teacher forcing on, every frame's memory is encoded from its ground-truth mask
    (as +-10 logits) and the object's presence; off, from the model's own prediction."""
    seen = []
    original = TSMSTrainModel._encode_memory_in_output

    def spy(self, feats, sizes, points, run, high_res, obj_score, out):
        seen.append((high_res.detach().clone(), obj_score.detach().clone()))
        return original(self, feats, sizes, points, run, high_res, obj_score, out)

    monkeypatch.setattr(TSMSTrainModel, "_encode_memory_in_output", spy)
    prompts = PromptConfig(prob_point_input=1.0, prob_box_input=0.0, max_init_cond_frames=1,
                           rand_init_cond_frames=False, num_correction_clicks=0)
    batch = _batch(absent_frame=2)
    with torch.no_grad():
        out = train_model(batch, _gen(3), prompts, gt_memory_prob=prob)
    order = [0, 1, 2, 3]  # one click-prompted conditioning frame (0), then 1, 2, 3
    assert len(seen) == T
    for t, (high_res, obj_score) in zip(order, seen):
        if prob:
            assert torch.equal(high_res > 0, batch.masks[t].unsqueeze(1)) and high_res.abs().eq(10).all()
            present = batch.masks[t].flatten(1).any(1, keepdim=True)
            assert torch.equal(obj_score > 0, present)
        else:
            assert torch.equal(high_res.float(), out.frames[t].final_masks)


@pytest.mark.parametrize("bias,local", [(None, False), (4.0, True)])
def test_local_memory_attention_init_reads_memory_at_the_query_position(bias, local):
    """With the locality init, changing one memory token changes the memory-attention output
    mostly at that token's own grid position; with SAM2's default init it spreads out."""
    from training.model import init_local_memory_attention

    torch.manual_seed(0)
    model = build_model(config="mini", mode="train", memory="sam2", model_target=TRAIN_MODEL_TARGET)
    if bias is not None:
        init_local_memory_attention(model, bias)
    attn = model.memory_attention.eval()
    g = torch.Generator().manual_seed(1)
    curr, curr_pos = 0.1 * torch.randn(64, 1, 64, generator=g), 0.1 * torch.randn(64, 1, 64, generator=g)
    memory, memory_pos = 0.1 * torch.randn(64, 1, 32, generator=g), torch.zeros(64, 1, 32)
    token = 27  # row 3, column 3 of the 8x8 grid
    bumped = memory.clone()
    bumped[token] += 3.0
    with torch.no_grad():
        change = (attn(curr, bumped, curr_pos, memory_pos) - attn(curr, memory, curr_pos, memory_pos)).norm(dim=-1)[:, 0]
    ratio = float(change[token] / change.median())
    assert (int(change.argmax()) == token and ratio > 5) == local, ratio


# ------------------------------------------------------------------ MS in training
NO_DROPOUT = ["++model.memory_attention.layer.dropout=0.0", "++model.memory_attention.layer.self_attention.dropout=0.0",
              "++model.memory_attention.layer.cross_attention.dropout=0.0"]
MASK_PROMPTS = PromptConfig(prob_point_input=0.0, max_init_cond_frames=1, rand_init_cond_frames=False,
                            num_correction_clicks=0)


@pytest.fixture(scope="module")
def train_model_no_dropout():
    torch.manual_seed(0)
    return build_model(config="mini", mode="train", memory="tsms", model_target=TRAIN_MODEL_TARGET,
                       overrides=NO_DROPOUT)


def _moving_batch(num_frames: int) -> ClipBatch:
    """Two clips of ``num_frames``: clip 0 a textured scene panning fast (two objects),
    clip 1 a nearly static one (one object), so MS would drop other frames in each."""
    g = torch.Generator().manual_seed(2)
    scene = torch.randn(3, SIZE, 2 * SIZE, generator=g)
    still = torch.randn(3, SIZE, SIZE, generator=g)
    images = torch.stack([torch.stack([scene[:, :, 9 * t: 9 * t + SIZE] if t % 3 else scene[:, :, :SIZE],
                                       still + 0.05 * torch.randn(3, SIZE, SIZE, generator=g)])
                          for t in range(num_frames)])
    masks = torch.zeros(num_frames, 3, SIZE, SIZE, dtype=torch.bool)
    for t in range(num_frames):
        masks[t, 0, 20 + 4 * t: 60 + 4 * t, 30:70] = True
        masks[t, 1, 90:110, 10 + 5 * t: 60 + 5 * t] = True
        masks[t, 2, 40:90, 40:90] = True
    return ClipBatch(images, masks, torch.tensor([0, 0, 1]))


def test_ms_prunes_during_the_training_forward(train_model):
    """Clips of 8 frames fill the 7-frame bank: from frame 6 on, MS drops 2 memory frames
    per object (the 3-4-frame clips of the other training tests never reach it)."""
    from models.memory_stats import record_memory_stats

    batch = _moving_batch(8)
    with torch.no_grad(), record_memory_stats() as calls:
        train_model(batch, _gen(0), MASK_PROMPTS)
    full = [s for s in calls if s.frames_in > 5]
    assert full and len(calls) == 7 * 3  # frames 1..7 tracked from memory, 3 objects each
    assert {(s.frames_in, s.frames_kept) for s in full} == {(6, 4), (7, 5)}
    assert all(s.frames_kept == s.frames_in for s in calls if s.frames_in <= 5)


def test_each_clip_prunes_as_if_it_were_alone(train_model_no_dropout):
    """One process with 2 clips == 2 DDP ranks with one clip each, with MS pruning: each clip's
    outputs are those it gets alone (a decision per clip, not one for the batch)."""
    from models.memory_stats import record_memory_stats
    from training.prompts import ObjectRows

    model, batch = train_model_no_dropout, _moving_batch(10)
    with torch.no_grad(), record_memory_stats() as calls:
        whole = model(batch, _gen(4), MASK_PROMPTS).final_masks()
    assert any(s.frames_kept < s.frames_in for s in calls)  # the clips do prune
    for clip, rows in ((0, slice(0, 2)), (1, slice(2, 3))):
        alone = ClipBatch(batch.images[:, clip: clip + 1], batch.masks[:, rows],
                          torch.zeros(rows.stop - rows.start, dtype=torch.long))
        with torch.no_grad():
            part = model(alone, _gen(4), MASK_PROMPTS, rows=ObjectRows(rows.start, 3)).final_masks()
        # measured 2026-12-06: 1e-7 (float reassociation); one decision per batch: 1.2e-4
        gap = float((part - whole[:, rows]).abs().max())
        assert gap <= 1e-5, (clip, gap)
