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

import math
import torch
import torch.nn.functional as F
from sam2.modeling.memory_attention import MemoryAttention

from models.memory_pruning import (active_clip_rows, gather_kept_frames, select_frames_to_prune,
                                   select_frames_to_prune_per_clip)
from models.memory_spec import MemorySpec
from models.memory_stats import MemoryAttentionStats, memory_stats_from_inputs, report_memory_stats
from utils.ms_rule import keep_indices


class TSMSMemoryAttention(MemoryAttention):
    """SAM2 memory attention that first drops redundant memory frames (the MS rule).

    Its memory arguments are the fields of :class:`~models.memory_spec.MemorySpec` (which
    validates them); every other keyword goes to SAM2's ``MemoryAttention`` (d_model,
    layer, num_layers, ...). Each call reports what it attended to the active
    :func:`~models.memory_stats.record_memory_stats` recorder; the module keeps no per-call
    state.
    """

    reports_memory_stats = True

    def __init__(self, **kwargs):
        memory = {k: kwargs.pop(k) for k in MemorySpec.field_names() if k in kwargs}
        super().__init__(**kwargs)
        memory.pop("module", None)
        spec = MemorySpec(module="tsms", **memory)
        self.spec = spec if "name" in memory else spec.replace(name=spec.matching_preset())
        for key, value in self.spec.module_kwargs().items():  # plain settings, read in forward
            setattr(self, key, value)

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
        if self.pruning_active and stats.frames_in > 0:
            keeps = self._frames_to_keep(memory, stats)
            if len(keeps) > 1:  # batch elements (objects) disagree: attend each group apart
                return self._forward_groups(keeps, curr, memory, curr_pos, memory_pos, stats)
            (keep, _), = keeps.items()
            return self._forward_kept(keep, curr, memory, curr_pos, memory_pos, stats)
        return self._attend(curr, memory, curr_pos, memory_pos, stats)

    def _frames_to_keep(self, memory, stats: MemoryAttentionStats):
        """``{kept frame indices: batch elements}``. In eval mode each batch element (one
        object, when objects are tracked in one batch) is pruned on its own, so results do
        not depend on what else is in the batch; in training each clip is (its objects
        averaged, see :func:`~models.memory_pruning.clips_in_batch`), so DDP ranks prune as
        one process; training mode outside a training forward takes one decision for the batch."""
        n, hw = stats.frames_in, stats.tokens_per_frame
        frames = memory[: n * hw].unflatten(0, (n, hw))  # [n, HW, B, C], a view
        batch = memory.shape[1]
        rule = dict(memory_bank_size=self.memory_bank_size, prune_frames=self.prune_frames,
                    use_mem_split=self.use_mem_split, similarity=self.similarity,
                    pruning_threshold=self.pruning_threshold, auto_quantile=self.auto_quantile)
        clips = active_clip_rows() if self.training else None
        if clips is not None:
            dropped = select_frames_to_prune_per_clip(frames, clips, **rule)
        else:
            per_element = not self.training and batch > 1
            dropped = select_frames_to_prune(frames, per_element=per_element, **rule)
            dropped = dropped if per_element else [dropped] * batch
        groups = {}
        for b, drops in enumerate(dropped):
            groups.setdefault(tuple(keep_indices(n, drops)), []).append(b)
        return groups

    def _forward_kept(self, keep, curr, memory, curr_pos, memory_pos, stats: MemoryAttentionStats):
        n, hw = stats.frames_in, stats.tokens_per_frame
        if len(keep) < n:
            memory = gather_kept_frames(memory, keep, hw, n)
            memory_pos = gather_kept_frames(memory_pos, keep, hw, n)
            stats = MemoryAttentionStats(n, len(keep), hw, stats.obj_ptr_tokens)
        return self._attend(curr, memory, curr_pos, memory_pos, stats)

    def _forward_groups(self, keeps, curr, memory, curr_pos, memory_pos, stats):
        curr, curr_pos = _unwrap(curr), _unwrap(curr_pos)
        out = None
        for keep, batch in keeps.items():
            idx = torch.tensor(batch, device=memory.device)
            part = self._forward_kept(keep, curr[:, idx], memory[:, idx], curr_pos[:, idx], memory_pos[:, idx], stats)
            if out is None:
                out = part.new_empty(part.shape[0], memory.shape[1], *part.shape[2:])
            out[:, idx] = part
        return out

    def _attend(self, curr, memory, curr_pos, memory_pos, stats: MemoryAttentionStats):
        num_k_exclude_rope = stats.obj_ptr_tokens
        if self.pooling_active and stats.frames_kept > self.full_res_frames:
            memory, memory_pos, stats = self._pool(memory, memory_pos, stats)
            num_k_exclude_rope = stats.frames_pooled * stats.pooled_tokens_per_frame + stats.obj_ptr_tokens
        report_memory_stats(stats, batch=memory.shape[1])
        # SAM2 passes num_obj_ptr_tokens on as the number of trailing keys without RoPE.
        return self.attend(curr, memory, curr_pos, memory_pos, num_k_exclude_rope)

    def attend(self, curr, memory, curr_pos, memory_pos, num_k_exclude_rope: int):
        """SAM2's memory attention over the memory left after MS (what ``--compile`` compiles)."""
        return super().forward(curr, memory, curr_pos, memory_pos, num_k_exclude_rope)

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


def _unwrap(x):
    return x[0] if isinstance(x, (list, tuple)) else x
