"""Checkpoint IO for official SAM2 files and our own.

* Official SAM2 files are ``{"model": state_dict}``; they load strictly into the matching
  config.
* Ours add ``"format": "tsms-sam2"``, ``"config"`` (the resolved model config, so the file
  alone rebuilds the model) and, from training, optimizer/scheduler/scaler/RNG state.

Reads always use ``torch.load(..., weights_only=True)``; writes go to a temporary file and
are renamed into place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from utils.errors import UserError
from utils.io import atomic_torch_save

FORMAT_NAME = "tsms-sam2"
FORMAT_VERSION = 1

# (Hiera embed_dim, number of blocks) -> size name
_HIERA_SIZES = {(96, 12): "tiny", (96, 16): "small", (112, 24): "base_plus", (144, 48): "large"}


class CheckpointError(UserError):
    """A file that is not a usable SAM2/TSMS checkpoint, or does not fit the model."""


def describe_sam2_weights(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A short human description of which SAM2 a state dict holds, e.g. 'SAM2.1 tiny'."""
    patch = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None:
        return "an unknown model (no Hiera trunk)"
    embed_dim = int(patch.shape[0])
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k))}
    size = _HIERA_SIZES.get((embed_dim, len(blocks)), "custom")
    version = "SAM2.1" if "no_obj_embed_spatial" in state_dict else "SAM2"
    return f"{version} {size} (Hiera embed_dim={embed_dim}, {len(blocks)} blocks)"


def read_checkpoint(path: os.PathLike | str) -> dict:
    """Load and validate a checkpoint file (weights only); returns the raw dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        if any("Weights only load failed" in ln for ln in lines):
            # torch's text suggests weights_only=False; we never do. Keep its diagnosis only.
            after = [ln for ln in lines[1:] if "WeightsUnpickler" not in ln and not ln.startswith("Check the documentation")]
            detail = f"not plain weights: {after[0]}" if after else "not plain weights"
        else:
            detail = lines[0] if lines else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({detail})") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), Mapping):
        raise CheckpointError(f"{path} is not a SAM2/TSMS checkpoint (expected a dict with a 'model' state dict)")
    if not any(k.startswith("image_encoder.") for k in ckpt["model"]):
        raise CheckpointError(f"{path} is not a SAM2/TSMS checkpoint (its 'model' has no image_encoder weights)")
    return ckpt


def checkpoint_config(ckpt: Mapping) -> Optional[dict]:
    """The model config embedded in one of our checkpoints, or None for official files."""
    cfg = ckpt.get("config")
    return dict(cfg) if isinstance(cfg, Mapping) else None


_TPOS_KEY = "maskmem_tpos_enc"  # [num_maskmem, 1, 1, C]: one temporal encoding per memory slot


def fit_memory_bank(state_dict: Mapping[str, torch.Tensor], memory_bank_size: int, source: str = "checkpoint"):
    """Weights for a model with ``memory_bank_size`` memory slots.

    SAM2 reads the encoding of a memory ``t`` frames back at index ``t - 1`` and that of
    the prompted (conditioning) frames at the last index, ``num_maskmem - 1``. A smaller
    bank therefore keeps the first ``memory_bank_size - 1`` encodings and the last one, and
    every memory it still attends gets the encoding it was trained with. A larger bank has
    no trained encodings for its oldest slots: refused.
    """
    tpos = state_dict.get(_TPOS_KEY)
    if tpos is None or tpos.shape[0] == memory_bank_size:
        return state_dict
    trained = int(tpos.shape[0])
    if memory_bank_size > trained:
        raise UserError(
            f"memory_bank_size {memory_bank_size} is larger than the {trained} memory slots {source} was trained "
            f"with (it holds no temporal encoding for the older slots); use memory_bank_size <= {trained}"
        )
    fitted = dict(state_dict)
    fitted[_TPOS_KEY] = torch.cat([tpos[: memory_bank_size - 1], tpos[-1:]]).clone()
    return fitted


def load_model_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load that explains a mismatch instead of dumping key lists."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shape_bad = [k for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape_bad:
        parts = []
        if shape_bad:
            k = shape_bad[0]
            parts.append(
                f"{len(shape_bad)} shape mismatches (e.g. {k}: checkpoint {list(state_dict[k].shape)} vs model {list(own[k].shape)})"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise CheckpointError(
            f"{source} does not match the model config: the checkpoint holds {describe_sam2_weights(state_dict)} "
            f"but the config builds {describe_sam2_weights(own)}; " + "; ".join(parts)
        )
    model.load_state_dict(state_dict, strict=True)


def _plain_config(config: Any) -> dict:
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return OmegaConf.to_container(OmegaConf.create(dict(config)), resolve=True)


def save_checkpoint(path: os.PathLike | str, model: torch.nn.Module, config: Any, **extra: Any) -> Path:
    """Write our format atomically: weights, the resolved model config, and any extra state.

    ``extra`` values must be weights-only loadable (tensors, numbers, strings, containers).
    """
    model = getattr(model, "module", model)  # unwrap DDP
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": _plain_config(config),
    }
    payload.update(extra)
    path = Path(path)
    atomic_torch_save(payload, path)
    return path
