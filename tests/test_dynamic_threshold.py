"""The dynamic pruning threshold (``pruning_threshold: auto``), on hand-made memory features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.memory_pruning import SimilarityHistory, select_frames_to_prune, similarity_history
from models.memory_spec import MemorySpec
from utils.errors import UserError
from utils.ms_rule import MIN_HISTORY

HW, C = 16, 8


def _bank(similarity_noise: float, seed: int, n: int = 7) -> torch.Tensor:
    """``[n, HW, 1, C]``: m_0 and m_{n-1} random, every other frame a noisy copy of the
    reference of its half (larger noise: less similar, i.e. more motion)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n, HW, 1, C, generator=g)
    h = n // 2
    for i in range(1, n - 1):
        ref = frames[0] if i < h else frames[n - 1]
        frames[i] = ref + similarity_noise * torch.randn(HW, 1, C, generator=g)
    return frames


def _select(frames, history, **kw):
    return select_frames_to_prune(frames, pruning_threshold="auto", history=history, **kw)


def test_static_phase_prunes_fast_motion_keeps_its_frames():
    history = SimilarityHistory()
    # a mixed history: half static calls, half with motion
    for k in range(6):
        _select(_bank(0.1 if k % 2 else 2.0, seed=k), history)
    assert len(history) == 6 * 5 and len(history.scores[0]) == 12  # m_1, m_2 | m_3, m_4, m_5
    static, motion = _bank(0.05, seed=100), _bank(3.0, seed=101)
    assert len(_select(static, history)) == 2  # more redundant than usual: drop the full count
    assert _select(motion, history) == []  # less redundant than usual: keep every frame
    # the fixed rule drops 2 frames in both cases
    assert len(select_frames_to_prune(motion)) == len(select_frames_to_prune(static)) == 2


def test_threshold_is_the_quantile_of_each_halfs_earlier_scores():
    history = SimilarityHistory()
    for half in (0, 1):
        history.add(half, np.linspace(0.2, 0.6, 41))
    assert history.threshold(0, 0.5) == pytest.approx(0.4)
    assert history.threshold(1, 0.75) == pytest.approx(0.5)
    frames = _bank(2.0, seed=3)
    expected = select_frames_to_prune(frames, pruning_threshold=0.4)  # the fixed rule at the quantile
    assert expected == [4] and select_frames_to_prune(frames) == [2, 4]
    before = len(history)
    assert _select(frames, history) == expected
    assert len(history) == before + 5  # this call's scores join the history
    lopsided = SimilarityHistory()
    lopsided.add(0, [0.99] * 20)  # the long-term half has been far more redundant so far
    lopsided.add(1, [-1.0] * 20)
    assert _select(frames, lopsided) == [4]  # only the short-term half drops


def test_warm_up_uses_the_count_rule_and_no_history_means_the_count_rule():
    history = SimilarityHistory()
    assert history.threshold(0, 0.5) is None
    low = _bank(5.0, seed=7)
    assert len(_select(low, history)) == 2  # fewer than MIN_HISTORY scores yet
    assert MIN_HISTORY > 3 and history.threshold(1, 0.5) is None
    assert len(select_frames_to_prune(low, pruning_threshold="auto")) == 2  # no active history


def test_the_count_varies_per_step_between_zero_and_prune_frames():
    history = SimilarityHistory()
    counts = [len(_select(_bank(noise, seed=s), history))
              for s, noise in enumerate([0.1, 2.0] * 8 + [0.02, 0.05, 4.0, 5.0])]
    assert set(counts[-4:]) == {0, 2} and counts[-4:] == [2, 2, 0, 0]
    assert all(0 <= c <= 2 for c in counts)


def test_module_reads_the_active_history_only():
    from models.memory_stats import record_memory_stats
    from tests.test_memory_pruning import _memory_inputs, _mini_memory_attention
    from models.memory_attention import TSMSMemoryAttention

    module = _mini_memory_attention(TSMSMemoryAttention, pruning_threshold="auto").eval()
    curr, curr_pos, mem, mem_pos = _memory_inputs(7, 0)
    history = SimilarityHistory()
    with torch.no_grad(), similarity_history(history), record_memory_stats() as calls:
        for _ in range(3):
            module([curr], mem, [curr_pos], mem_pos)
    assert len(history) == 15 and [s.frames_kept for s in calls] == [5, 5, 5]
    # the same bank again, with a history of much more similar frames: nothing is redundant
    history.scores.clear()
    history.add(0, [0.999] * 20)
    history.add(1, [0.999] * 20)
    with torch.no_grad(), similarity_history(history), record_memory_stats() as calls:
        module([curr], mem, [curr_pos], mem_pos)
    assert calls[0].frames_kept == 7


def test_spec_accepts_auto_and_refuses_other_words():
    spec = MemorySpec.preset("tsms").replace(pruning_threshold="auto", auto_quantile=0.7)
    assert spec.describe() == "tsms (pruning_threshold=auto, auto_quantile=0.7)"
    with pytest.raises(UserError, match="pruning_threshold must be null, 'auto'"):
        MemorySpec.preset("tsms").replace(pruning_threshold="sometimes")
    with pytest.raises(UserError, match="auto_quantile must lie in"):
        MemorySpec.preset("tsms").replace(auto_quantile=1.5)


def test_training_config_takes_auto(tmp_path):
    from training.builders import memory_spec
    from training.config import compose_train_config

    cfg = compose_train_config(overrides=["experiment=synthetic_tiny", f"run_dir={tmp_path}", "pruning_threshold=auto"])
    assert memory_spec(cfg).pruning_threshold == "auto"
