"""Refuse weights that hold NaN or Inf: such a model tracks nothing (every mask empty) and
says nothing, so the file is named with its first non-finite tensor before any video is read."""

from __future__ import annotations

from typing import Mapping

import torch

from models.checkpoint import CheckpointError


def check_finite_weights(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """A one-line :class:`CheckpointError` naming ``source`` and the first tensor (in
    state-dict order) with a NaN or Inf value; integer tensors are skipped."""
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor) or not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            kinds = [k for k, hit in (("NaN", torch.isnan(tensor).any()), ("Inf", torch.isinf(tensor).any())) if hit]
            raise CheckpointError(f"{source}: weight {name} holds {bad} non-finite value(s) ({'/'.join(kinds)}) of "
                                  f"{tensor.numel()}; the model would track nothing; use another checkpoint")
