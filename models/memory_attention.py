"""TSMS memory attention: SAM2's MemoryAttention with MS (split + prune) in front of it.

Selected through the model config (``model.memory_attention._target_``); it adds no
parameters, so every SAM2 state-dict key loads strictly. With pruning disabled it is
SAM2's module, bit for bit.

Beyond the paper (``memory=tsms_pool``): after pruning, the kept frames older than the
newest ``full_res_frames`` can be average-pooled ``pool_size x pool_size``. SAM2's RoPE
rotates keys in whole frame-sized chunks, so pooled tokens are moved behind the
full-resolution frames and, like object pointers, excluded from RoPE; they keep SAM2's
additive spatial and temporal encodings (pooled the same way).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from sam2.modeling.memory_attention import MemoryAttention

from models.memory_pruning import SIMILARITIES, keep_indices, select_frames_to_prune

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryAttentionStats:
    """What one memory-attention call attended (counted per call, i.e. per frame and object batch)."""

    frames_in: int
    frames_kept: int
    tokens_per_frame: int
    obj_ptr_tokens: int
    frames_pooled: int = 0  # of the kept frames, how many were spatially pooled ...
    pooled_tokens_per_frame: int = 0  # ... to this many tokens each

    @property
    def spatial_tokens_in(self) -> int:
        return self.frames_in * self.tokens_per_frame

    @property
    def spatial_tokens_kept(self) -> int:
        full = self.frames_kept - self.frames_pooled
        return full * self.tokens_per_frame + self.frames_pooled * self.pooled_tokens_per_frame

    @property
    def attended_tokens(self) -> int:
        """All memory tokens the cross-attention sees: kept frames plus object pointers."""
        return self.spatial_tokens_kept + self.obj_ptr_tokens


def memory_stats_from_inputs(curr, memory: torch.Tensor, num_obj_ptr_tokens: int) -> MemoryAttentionStats:
    """Stats of an unpruned call (for SAM2's own module, observed through a hook)."""
    hw = (curr[0] if isinstance(curr, (list, tuple)) else curr).shape[0]
    spatial = memory.shape[0] - num_obj_ptr_tokens
    n = spatial // hw if spatial % hw == 0 else 0
    return MemoryAttentionStats(n, n, hw, num_obj_ptr_tokens)


def stats_of_call(module, kwargs) -> MemoryAttentionStats:
    """What a memory-attention call just attended, from a forward hook's view: ours reports
    it after pruning; SAM2's own module attends everything it was given."""
    stats = getattr(module, "last_stats", None)
    if stats is None:
        stats = memory_stats_from_inputs(kwargs["curr"], kwargs["memory"], kwargs.get("num_obj_ptr_tokens", 0))
    return stats


class TSMSMemoryAttention(MemoryAttention):
    """SAM2 memory attention that first drops redundant memory frames (the MS rule).

    Args:
        memory_bank_size: SAM2's ``num_maskmem`` (the builder ties the two together).
        use_mem_split: split into long- and short-term halves (TSMS) or not (SurgSAM-2).
        prune_frames: frames dropped when the bank is full (``prune_frames // 2`` per half).
        pruning_threshold: if set, only candidates with similarity >= it may be dropped.
        similarity: ``"cosine_spatial"`` (default, the paper's code) or ``"cosine"``.
        prune_in_training: also prune (and pool) in ``train()`` mode (default, as in the
            paper's code).
        enabled: master switch; off means plain SAM2.
        pool_size: average-pool the older kept frames this many tokens per side (1: off).
        full_res_frames: the newest kept frames that stay at full resolution when pooling.
        **kwargs: SAM2 ``MemoryAttention`` arguments (d_model, layer, num_layers, ...).
    """

    def __init__(
        self,
        *,
        memory_bank_size: int = 7,
        use_mem_split: bool = True,
        prune_frames: int = 2,
        pruning_threshold: Optional[float] = None,
        similarity: str = "cosine_spatial",
        prune_in_training: bool = True,
        enabled: bool = True,
        pool_size: int = 1,
        full_res_frames: int = 2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
        if prune_frames < 0:
            raise ValueError(f"prune_frames must be >= 0, got {prune_frames}")
        if pruning_threshold is not None and not -1.0 <= float(pruning_threshold) <= 1.0:
            raise ValueError(f"pruning_threshold must lie in [-1, 1], got {pruning_threshold}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if full_res_frames < 1:
            raise ValueError(f"full_res_frames must be >= 1 (the newest frame keeps RoPE), got {full_res_frames}")
        self.memory_bank_size = int(memory_bank_size)
        self.use_mem_split = bool(use_mem_split)
        self.prune_frames = int(prune_frames)
        self.pruning_threshold = None if pruning_threshold is None else float(pruning_threshold)
        self.similarity = similarity
        self.prune_in_training = bool(prune_in_training)
        self.enabled = bool(enabled)
        self.pool_size = int(pool_size)
        self.full_res_frames = int(full_res_frames)
        self.last_stats: Optional[MemoryAttentionStats] = None

    @property
    def _reduction_active(self) -> bool:
        return self.enabled and (self.prune_in_training or not self.training)

    @property
    def pruning_active(self) -> bool:
        return self._reduction_active and self.prune_frames > 0

    @property
    def pooling_active(self) -> bool:
        return self._reduction_active and self.pool_size > 1

    def forward(self, curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens: int = 0):
        stats = memory_stats_from_inputs(curr, memory, num_obj_ptr_tokens)
        num_k_exclude_rope = num_obj_ptr_tokens
        if self.pruning_active and stats.frames_in > 0:
            memory, memory_pos, stats = self._prune(memory, memory_pos, stats)
        if self.pooling_active and stats.frames_kept > self.full_res_frames:
            memory, memory_pos, stats = self._pool(memory, memory_pos, stats)
            num_k_exclude_rope = stats.frames_pooled * stats.pooled_tokens_per_frame + num_obj_ptr_tokens
        self.last_stats = stats
        # SAM2 passes num_obj_ptr_tokens on as the number of trailing keys without RoPE.
        return super().forward(curr, memory, curr_pos, memory_pos, num_k_exclude_rope)

    def _prune(self, memory, memory_pos, stats: MemoryAttentionStats):
        n, hw = stats.frames_in, stats.tokens_per_frame
        spatial = n * hw
        frames = memory[:spatial].unflatten(0, (n, hw))  # [n, HW, B, C]
        dropped = select_frames_to_prune(
            frames,
            memory_bank_size=self.memory_bank_size,
            prune_frames=self.prune_frames,
            use_mem_split=self.use_mem_split,
            similarity=self.similarity,
            pruning_threshold=self.pruning_threshold,
        )
        if not dropped:
            return memory, memory_pos, stats
        keep = torch.tensor(keep_indices(n, dropped), device=memory.device)

        def gather(x):
            kept = x[:spatial].unflatten(0, (n, hw)).index_select(0, keep).flatten(0, 1)
            return torch.cat([kept, x[spatial:]], dim=0)

        kept_stats = MemoryAttentionStats(n, len(keep), hw, stats.obj_ptr_tokens)
        return gather(memory), gather(memory_pos), kept_stats

    def _pool(self, memory, memory_pos, stats: MemoryAttentionStats):
        """Pool all but the newest ``full_res_frames`` kept frames; order the keys as
        [full-resolution frames, pooled frames, object pointers]."""
        n, hw, k = stats.frames_kept, stats.tokens_per_frame, self.pool_size
        side = math.isqrt(hw)
        if side * side != hw:  # SAM2's RoPE assumes square feature maps too
            return memory, memory_pos, stats
        n_pool = n - self.full_res_frames
        spatial = n * hw

        def pool(x):
            old = x[: n_pool * hw].unflatten(0, (n_pool, side, side))  # [n_pool, H, W, B, C]
            batch = old.shape[3]
            grid = old.permute(0, 3, 4, 1, 2).flatten(0, 1)  # [n_pool * B, C, H, W]
            pooled = F.avg_pool2d(grid, k, ceil_mode=True)
            pooled = pooled.unflatten(0, (n_pool, batch)).flatten(3).permute(0, 3, 1, 2).flatten(0, 1)
            return torch.cat([x[n_pool * hw: spatial], pooled, x[spatial:]], dim=0), pooled.shape[0] // n_pool

        memory, per_frame = pool(memory)
        memory_pos, _ = pool(memory_pos)
        pooled_stats = MemoryAttentionStats(stats.frames_in, n, hw, stats.obj_ptr_tokens, n_pool, per_frame)
        return memory, memory_pos, pooled_stats
