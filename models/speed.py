"""Speed options of tracking: compute dtype (bf16 autocast) and ``torch.compile``.

    model = build_model(config="tiny", predictor=True, compile=True)
    session = TrackingSession(model, video, dtype="bf16", batch_objects=True)

bf16 runs under ``torch.autocast`` on CPU and CUDA alike (the weights stay fp32, as sam2
does on GPU); masks are compared with fp32 by IoU in ``tests/test_speed_options.py``.
``compile`` compiles the image encoder and the memory attention (after MS: its memory
length changes from frame to frame, so the attention is compiled with dynamic shapes).
"""

from __future__ import annotations

import contextlib
import functools
import logging

import torch
from torch.utils._pytree import tree_map

log = logging.getLogger(__name__)

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return dtype


def autocast(device, dtype: str):
    """The compute context for ``dtype`` on ``device`` (a no-op for fp32)."""
    if DTYPES[check_dtype(dtype)] is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[dtype])


def compile_predictor(model, *, dynamic_memory: bool = True, mode: str | None = None):
    """Compile ``model``'s image encoder and memory attention in place (state-dict keys
    unchanged). Our memory attention compiles only SAM2's attention behind MS (the pruning
    decision moves scores to the host, which would break the graph); SAM2's own module is
    compiled whole. Returns the model."""
    model.image_encoder.compile(dynamic=False, mode=mode)
    attention = model.memory_attention
    if hasattr(attention, "attend"):
        attention.attend = torch.compile(attention.attend, dynamic=dynamic_memory, mode=mode)
    else:
        attention.compile(dynamic=dynamic_memory, mode=mode)
    log.debug("compiled image encoder and memory attention (dynamic memory: %s)", dynamic_memory)
    return model


def _autocast_on() -> bool:
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


def _to_fp32(x):
    return x.float() if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 else x


def run_in_fp32(module: torch.nn.Module) -> torch.nn.Module:
    """Run ``module`` outside autocast, its bf16 inputs cast to fp32 (a no-op without
    autocast). For the small heads whose outputs are thresholded (the mask decoder): their
    cost is small, and bf16 logits near 0 would flip mask pixels."""
    forward = module.forward

    @functools.wraps(forward)
    def fp32_forward(*args, **kwargs):
        if not _autocast_on():
            return forward(*args, **kwargs)
        args, kwargs = tree_map(_to_fp32, (args, kwargs))
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return forward(*args, **kwargs)

    module.forward = fp32_forward
    return module
