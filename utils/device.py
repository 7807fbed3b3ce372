"""Choosing the torch device from what the user asked for (``auto``, ``cpu``, ``cuda:1`` ...)."""

from __future__ import annotations

import torch

from utils.errors import UserError


def resolve_device(requested: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA on a machine without it is an error.

    A bare ``cuda`` becomes ``cuda:<local_rank>`` (one GPU per process under torchrun).
    """
    requested = str(requested or "auto")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise UserError(f"unknown device {requested!r} (use auto, cpu, cuda or cuda:N): {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {requested!r} requested but CUDA is not available on this machine (use cpu or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        elif device.index >= torch.cuda.device_count():
            raise UserError(f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type not in ("cpu", "mps"):
        raise UserError(f"unsupported device {requested!r} (use auto, cpu, cuda or cuda:N)")
    return device
