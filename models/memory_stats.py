"""What memory attention attended, per call: counted, and recorded only when someone asks.

Modules keep no per-call state. A memory-attention call reports its
:class:`MemoryAttentionStats` to the recorder that is active in the calling context (a
``contextvars`` variable), if any; the tracking session opens one around each frame.
SAM2's own module does not report, so :func:`watch_memory_attention` adds a forward hook
that reports for it, computed from its inputs (it attends everything it is given).
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from dataclasses import dataclass
from typing import Iterator, List, Optional

import torch


@dataclass(frozen=True)
class MemoryAttentionStats:
    """What memory attention attended for one object (one batch element) on one frame."""

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
    """Stats of an unpruned call: every frame given is attended."""
    hw = (curr[0] if isinstance(curr, (list, tuple)) else curr).shape[0]
    spatial = memory.shape[0] - num_obj_ptr_tokens
    n = spatial // hw if spatial % hw == 0 else 0
    return MemoryAttentionStats(n, n, hw, num_obj_ptr_tokens)


_ACTIVE: contextvars.ContextVar[Optional[List[MemoryAttentionStats]]] = contextvars.ContextVar(
    "tsms_memory_stats", default=None
)


@contextlib.contextmanager
def record_memory_stats() -> Iterator[List[MemoryAttentionStats]]:
    """Collect the stats of every memory-attention call made inside the block, in order."""
    calls: List[MemoryAttentionStats] = []
    token = _ACTIVE.set(calls)
    try:
        yield calls
    finally:
        _ACTIVE.reset(token)


def report_memory_stats(stats: MemoryAttentionStats, batch: int = 1) -> None:
    """Called by memory-attention modules, once per call: ``stats`` holds for each of the
    ``batch`` elements (objects tracked together). A no-op unless a recorder is active."""
    calls = _ACTIVE.get()
    if calls is not None:
        calls.extend([stats] * batch)


def _report_from_inputs(module, args, kwargs, output) -> None:
    if _ACTIVE.get() is not None:
        report_memory_stats(memory_stats_from_inputs(kwargs["curr"], kwargs["memory"],
                                                     kwargs.get("num_obj_ptr_tokens", 0)), batch=kwargs["memory"].shape[1])


_WATCHED: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


def watch_memory_attention(module: torch.nn.Module) -> None:
    """Make a module that does not report by itself (SAM2's) report through a hook; once."""
    if getattr(module, "reports_memory_stats", False) or module in _WATCHED:
        return
    module.register_forward_hook(_report_from_inputs, with_kwargs=True)
    _WATCHED.add(module)
