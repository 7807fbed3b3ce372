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
import logging

import torch

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
