"""TSMS memory attention: SAM2's MemoryAttention with MS (split + prune) in front of it.

Selected through the model config (``model.memory_attention._target_``); it adds no
parameters, so every SAM2 state-dict key loads strictly. With pruning disabled it is
SAM2's module, bit for bit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch
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

    @property
    def spatial_tokens_in(self) -> int:
        return self.frames_in * self.tokens_per_frame

    @property
    def spatial_tokens_kept(self) -> int:
        return self.frames_kept * self.tokens_per_frame

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
        prune_in_training: also prune in ``train()`` mode (default, as in the paper's code).
        enabled: master switch; off means plain SAM2.
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
        if prune_frames < 0:
            raise ValueError(f"prune_frames must be >= 0, got {prune_frames}")
        if pruning_threshold is not None and not -1.0 <= float(pruning_threshold) <= 1.0:
            raise ValueError(f"pruning_threshold must lie in [-1, 1], got {pruning_threshold}")
        self.memory_bank_size = int(memory_bank_size)
        self.use_mem_split = bool(use_mem_split)
        self.prune_frames = int(prune_frames)
        self.pruning_threshold = None if pruning_threshold is None else float(pruning_threshold)
        self.similarity = similarity
        self.prune_in_training = bool(prune_in_training)
        self.enabled = bool(enabled)
        self.last_stats: Optional[MemoryAttentionStats] = None

    @property
    def pruning_active(self) -> bool:
        if not self.enabled or self.prune_frames == 0:
            return False
        return self.prune_in_training or not self.training

    def forward(self, curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens: int = 0):
        stats = memory_stats_from_inputs(curr, memory, num_obj_ptr_tokens)
        if self.pruning_active and stats.frames_in > 0:
            memory, memory_pos, stats = self._prune(memory, memory_pos, stats)
        self.last_stats = stats
        return super().forward(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens)

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
