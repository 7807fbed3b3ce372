"""The MS rule on hand-made memory features, checked against an independent reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam2.modeling.memory_attention import MemoryAttention

from models.config import resolve_model_config
from models.memory_attention import TSMSMemoryAttention
from models.memory_pruning import frame_similarity, plan_pruning_groups, select_frames_to_prune
from models.memory_spec import MemorySpec
from models.memory_stats import record_memory_stats

HW, B, C = 6, 2, 4


# ---------------------------------------------------------------- reference implementation
def ref_similarity(cand: np.ndarray, ref: np.ndarray, kind: str) -> float:
    """cand/ref: [HW, B, C]; plain loops, no torch."""
    vals = []
    for b in range(cand.shape[1]):
        if kind == "cosine_spatial":
            for c in range(cand.shape[2]):
                x, y = cand[:, b, c], ref[:, b, c]
                vals.append(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))))
        else:
            for t in range(cand.shape[0]):
                x, y = cand[t, b], ref[t, b]
                vals.append(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))))
    return float(np.mean(vals))


def ref_dropped(frames: np.ndarray, bank: int, prune: int, split: bool, kind: str, thr=None):
    n = frames.shape[0]
    if prune <= 0 or n <= bank - prune:
        return []
    if split:
        h = n // 2
        groups = [(list(range(1, h)), 0, prune // 2), (list(range(h, n - 1)), n - 1, prune // 2)]
        groups = [g for g in groups if len(g[0]) > prune // 2]
    else:
        groups = [(list(range(1, n - 1)), n - 1, n + prune - bank)]
    dropped = []
    for cands, ref, k in groups:
        scored = [(ref_similarity(frames[i], frames[ref], kind), i) for i in cands]
        scored = [s for s in scored if thr is None or s[0] >= thr]
        scored.sort(key=lambda s: (-s[0], s[1]))
        dropped += [i for _, i in scored[:k]]
    return sorted(dropped)


def random_frames(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(HW, B, C))
    # Frames share a common component of random strength, so similarities are spread out.
    mix = rng.uniform(0.0, 2.0, size=n)
    return np.stack([mix[i] * base + rng.normal(size=(HW, B, C)) for i in range(n)])


# ---------------------------------------------------------------- the rule
@pytest.mark.parametrize("kind", ["cosine_spatial", "cosine"])
@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
def test_dropped_frames_match_reference(n, split, kind):
    for seed in range(5):
        frames = random_frames(n, seed + 100 * n)
        expected = ref_dropped(frames, bank=7, prune=2, split=split, kind=kind)
        got = select_frames_to_prune(
            torch.from_numpy(frames), memory_bank_size=7, prune_frames=2, use_mem_split=split, similarity=kind
        )
        assert got == expected
        assert 0 not in got and n - 1 not in got


@pytest.mark.parametrize(
    "n,split,expected_drops",
    [(3, True, 0), (5, True, 0), (6, True, 2), (7, True, 2), (8, True, 2), (6, False, 1), (7, False, 2), (8, False, 3)],
)
def test_drop_counts(n, split, expected_drops):
    frames = torch.from_numpy(random_frames(n, seed=n))
    assert len(select_frames_to_prune(frames, memory_bank_size=7, prune_frames=2, use_mem_split=split)) == expected_drops


def test_split_groups_for_seven_memories():
    groups = plan_pruning_groups(7, memory_bank_size=7, prune_frames=2, use_mem_split=True)
    assert [(g.candidates, g.reference, g.max_drop) for g in groups] == [((1, 2), 0, 1), ((3, 4, 5), 6, 1)]
    unsplit = plan_pruning_groups(7, memory_bank_size=7, prune_frames=2, use_mem_split=False)
    assert [(g.candidates, g.reference, g.max_drop) for g in unsplit] == [((1, 2, 3, 4, 5), 6, 2)]


def test_hand_made_redundancy_is_pruned():
    """m2 is a near-copy of m0 and m4 of m6: exactly those two go; 7 memories become 5."""
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(7, HW, B, C))
    frames[2] = frames[0] + 0.01 * rng.normal(size=(HW, B, C))
    frames[4] = frames[6] + 0.01 * rng.normal(size=(HW, B, C))
    for kind in ("cosine_spatial", "cosine"):
        dropped = select_frames_to_prune(torch.from_numpy(frames), similarity=kind)
        assert dropped == [2, 4]
        kept_tokens = (7 - len(dropped)) * HW
        assert 1 - kept_tokens / (7 * HW) >= 0.28


def test_threshold_only_drops_frames_at_or_above_it():
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(7, HW, B, C))
    frames[2] = frames[0] + 0.01 * rng.normal(size=(HW, B, C))  # very similar to m0
    t = torch.from_numpy(frames)
    sim_long = frame_similarity(t[[1, 2]], t[0], "cosine_spatial")
    sim_short = frame_similarity(t[[3, 4, 5]], t[6], "cosine_spatial")
    assert sim_long[1] > 0.99 and sim_short.max() < 0.5
    assert select_frames_to_prune(t, pruning_threshold=0.9) == [2]  # short half: nothing qualifies
    assert select_frames_to_prune(t, pruning_threshold=float(sim_long[1])) == [2]  # ">=" includes equality
    assert select_frames_to_prune(t, pruning_threshold=float(sim_long[1]) + 1e-4) == []
    for thr in (-1.0, 0.0, 0.3, 0.9):
        for split in (True, False):
            expected = ref_dropped(frames, 7, 2, split, "cosine_spatial", thr)
            assert select_frames_to_prune(t, pruning_threshold=thr, use_mem_split=split) == expected


def test_similarity_range_and_batch_average():
    rng = np.random.default_rng(2)
    frames = torch.from_numpy(rng.normal(size=(5, HW, B, C)))
    for kind in ("cosine_spatial", "cosine"):
        s = frame_similarity(frames[1:], frames[0], kind)
        assert s.shape == (4,) and bool(((s >= -1) & (s <= 1)).all())
        assert frame_similarity(frames[:1], frames[0], kind).item() == pytest.approx(1.0, abs=1e-6)
        assert frame_similarity(-frames[:1], frames[0], kind).item() == pytest.approx(-1.0, abs=1e-6)
        per_b = [frame_similarity(frames[1:, :, b : b + 1], frames[0, :, b : b + 1], kind) for b in range(B)]
        assert torch.allclose(s, torch.stack(per_b).mean(0), atol=1e-6)


# ---------------------------------------------------------------- the module
def _attend(module, *args, **kwargs):
    """Run a memory-attention call; returns its output and the stats it reported."""
    with record_memory_stats() as calls:
        out = module(*args, **kwargs)
    assert len(calls) == 1
    return out, calls[0]


def _mini_memory_attention(cls, **kwargs):
    from hydra.utils import instantiate

    cfg = resolve_model_config("mini").model.memory_attention
    cfg._target_ = f"{cls.__module__}.{cls.__qualname__}"
    torch.manual_seed(0)
    return instantiate(cfg, **kwargs).eval()


def _memory_inputs(n_frames: int, obj_ptr_tokens: int, seed=0, b=1):
    g = torch.Generator().manual_seed(seed)
    hw = 64  # 8x8 feature map, the mini config's
    curr = torch.randn(hw, b, 64, generator=g)
    curr_pos = torch.randn(hw, b, 64, generator=g)
    memory = torch.randn(n_frames * hw + obj_ptr_tokens, b, 32, generator=g)
    memory_pos = torch.randn(n_frames * hw + obj_ptr_tokens, b, 32, generator=g)
    return curr, curr_pos, memory, memory_pos


def test_module_without_pruning_is_sam2_bit_for_bit():
    stock = _mini_memory_attention(MemoryAttention)
    ours = _mini_memory_attention(TSMSMemoryAttention, enabled=False)
    ours.load_state_dict(stock.state_dict(), strict=True)
    curr, curr_pos, mem, mem_pos = _memory_inputs(7, 8)
    with torch.no_grad():
        a = stock([curr], mem, [curr_pos], mem_pos, num_obj_ptr_tokens=8)
        b, stats = _attend(ours, [curr], mem, [curr_pos], mem_pos, num_obj_ptr_tokens=8)
    assert torch.equal(a, b)
    assert stats.frames_kept == 7 and stats.attended_tokens == 7 * 64 + 8


def test_module_prunes_frames_and_keeps_object_pointers():
    """Eval mode prunes each batch element (object) on its own: every element equals SAM2's
    module over that element's kept frames, whatever else is in the batch."""
    stock = _mini_memory_attention(MemoryAttention)
    ours = _mini_memory_attention(TSMSMemoryAttention)
    ours.load_state_dict(stock.state_dict(), strict=True)
    curr, curr_pos, mem, mem_pos = _memory_inputs(7, 8, b=3)
    with torch.no_grad():
        with record_memory_stats() as calls:
            got = ours([curr], mem, [curr_pos], mem_pos, num_obj_ptr_tokens=8)
        for b in range(mem.shape[1]):
            one = slice(b, b + 1)
            dropped = select_frames_to_prune(mem[: 7 * 64, one].unflatten(0, (7, 64)))
            assert len(dropped) == 2
            keep = [i for i in range(7) if i not in dropped]

            def gather(x):
                frames = x[: 7 * 64, one].unflatten(0, (7, 64))[keep].flatten(0, 1)
                return torch.cat([frames, x[7 * 64 :, one]])

            expected = stock([curr[:, one]], gather(mem), [curr_pos[:, one]], gather(mem_pos), num_obj_ptr_tokens=8)
            assert torch.allclose(got[:, one], expected, atol=1e-5)
    for s in calls:
        assert (s.frames_in, s.frames_kept, s.obj_ptr_tokens) == (7, 5, 8)
        assert 1 - s.spatial_tokens_kept / s.spatial_tokens_in >= 0.28


def test_module_prunes_one_element_exactly():
    stock = _mini_memory_attention(MemoryAttention)
    ours = _mini_memory_attention(TSMSMemoryAttention)
    ours.load_state_dict(stock.state_dict(), strict=True)
    curr, curr_pos, mem, mem_pos = _memory_inputs(7, 8)
    keep = [i for i in range(7) if i not in select_frames_to_prune(mem[: 7 * 64].unflatten(0, (7, 64)))]

    def gather(x):
        return torch.cat([x[: 7 * 64].unflatten(0, (7, 64))[keep].flatten(0, 1), x[7 * 64 :]])

    with torch.no_grad():
        expected = stock([curr], gather(mem), [curr_pos], gather(mem_pos), num_obj_ptr_tokens=8)
        got, s = _attend(ours, [curr], mem, [curr_pos], mem_pos, num_obj_ptr_tokens=8)
    assert torch.equal(got, expected)
    assert (s.frames_in, s.frames_kept) == (7, 5)


def test_prune_in_training_switch():
    ours = _mini_memory_attention(TSMSMemoryAttention, prune_in_training=False)
    curr, curr_pos, mem, mem_pos = _memory_inputs(7, 0)
    ours.train()
    assert _attend(ours, [curr], mem, [curr_pos], mem_pos)[1].frames_kept == 7
    ours.eval()
    assert _attend(ours, [curr], mem, [curr_pos], mem_pos)[1].frames_kept == 5


@pytest.mark.parametrize(
    "kwargs,message",
    [({"similarity": "l2"}, "unknown similarity 'l2'"), ({"prune_frames": -1}, "prune_frames"),
     ({"pruning_threshold": 1.5}, "pruning_threshold"), ({"pool_size": 0}, "pool_size"),
     ({"full_res_frames": 0}, "full_res_frames")],
)
def test_module_rejects_bad_options(kwargs, message):
    with pytest.raises(Exception, match=message):  # Hydra wraps the ValueError
        _mini_memory_attention(TSMSMemoryAttention, **kwargs)


def _pool_by_hand(frames: torch.Tensor, k: int) -> torch.Tensor:
    """[n, 64, B, C] (8x8 grids) -> [n * (8/k)^2, B, C], plain mean over k x k blocks."""
    n, _, b, c = frames.shape
    g = frames.reshape(n, 8 // k, k, 8 // k, k, b, c).mean(dim=(2, 4))
    return g.reshape(n * (8 // k) ** 2, b, c)


@pytest.mark.parametrize("full_res", [1, 2])
def test_pooling_older_frames_matches_hand_built_memory(full_res):
    """tsms_pool: prune as tsms, then pool all kept frames but the newest ``full_res``;
    pooled tokens go behind the full-resolution frames and, like object pointers, skip RoPE."""
    stock = _mini_memory_attention(MemoryAttention)
    ours = _mini_memory_attention(TSMSMemoryAttention, pool_size=2, full_res_frames=full_res)
    ours.load_state_dict(stock.state_dict(), strict=True)
    curr, curr_pos, mem, mem_pos = _memory_inputs(7, 8)
    keep = [i for i in range(7) if i not in select_frames_to_prune(mem[: 7 * 64].unflatten(0, (7, 64)))]
    n_pool = len(keep) - full_res

    def build(x):
        frames = x[: 7 * 64].unflatten(0, (7, 64))[keep]
        return torch.cat([frames[n_pool:].flatten(0, 1), _pool_by_hand(frames[:n_pool], 2), x[7 * 64:]])

    with torch.no_grad():
        expected = stock([curr], build(mem), [curr_pos], build(mem_pos), num_obj_ptr_tokens=n_pool * 16 + 8)
        got, s = _attend(ours, [curr], mem, [curr_pos], mem_pos, num_obj_ptr_tokens=8)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert (s.frames_in, s.frames_kept, s.frames_pooled, s.pooled_tokens_per_frame) == (7, 5, n_pool, 16)
    assert s.attended_tokens == full_res * 64 + n_pool * 16 + 8
    # 2 full + 3 pooled frames: 2.75 frames' worth of tokens, 39% of SAM2's 7
    assert s.spatial_tokens_kept / s.spatial_tokens_in == pytest.approx((full_res * 64 + n_pool * 16) / (7 * 64))


def test_pooling_waits_until_there_are_older_frames():
    ours = _mini_memory_attention(TSMSMemoryAttention, pool_size=2, full_res_frames=2)
    curr, curr_pos, mem, mem_pos = _memory_inputs(2, 0)
    s = _attend(ours, [curr], mem, [curr_pos], mem_pos)[1]
    assert s.frames_pooled == 0 and s.attended_tokens == 2 * 64
    curr, curr_pos, mem, mem_pos = _memory_inputs(3, 0)
    s = _attend(ours, [curr], mem, [curr_pos], mem_pos)[1]
    assert s.frames_pooled == 1 and s.attended_tokens == 2 * 64 + 16


def test_tsms_fast_preset_attends_the_prompted_and_the_newest_frame():
    preset = MemorySpec.preset("tsms_fast").module_kwargs()
    stock = _mini_memory_attention(MemoryAttention)
    ours = _mini_memory_attention(TSMSMemoryAttention, **preset)
    ours.load_state_dict(stock.state_dict(), strict=True)
    curr, curr_pos, mem, mem_pos = _memory_inputs(7, 8)

    def first_and_last(x):
        frames = x[: 7 * 64].unflatten(0, (7, 64))[[0, 6]].flatten(0, 1)
        return torch.cat([frames, x[7 * 64:]])

    with torch.no_grad():
        expected = stock([curr], first_and_last(mem), [curr_pos], first_and_last(mem_pos), num_obj_ptr_tokens=8)
        got, s = _attend(ours, [curr], mem, [curr_pos], mem_pos, num_obj_ptr_tokens=8)
    assert torch.equal(got, expected)
    assert s.attended_tokens == 2 * 64 + 8  # 29% of SAM2's spatial tokens
