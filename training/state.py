"""Training state in checkpoints: counters, RNG states, and exact resume.

A training checkpoint is one of our model checkpoints (``models.save_checkpoint``: weights
plus the embedded model config, written atomically) with the rest of the training state:
optimizer, scheduler, grad scaler, :class:`TrainState` counters and every RNG state.
Everything is stored as tensors, numbers, strings and containers, so it loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from models import CheckpointError, read_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

TRAINING_KEYS = ("optimizer", "scheduler", "scaler", "train_state")


@dataclass
class TrainState:
    """Where training stands.

    Attributes:
        epoch: the current epoch (0-based).
        step: optimizer steps done so far (global, all epochs).
        batch_in_epoch: batches of ``epoch`` already consumed (the sampler's position).
        best_dice: best validation Dice so far (-1 before the first validation).
        best_epoch: the epoch it was reached at (-1 before).
        global_batch: clips per step over all ranks (``batch_size x world_size``), which
            ``batch_in_epoch`` counts in (0: unknown, older checkpoints).
    """

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    best_dice: float = -1.0
    best_epoch: int = -1
    global_batch: int = 0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainState":
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of one training step on one rank (a pure function, for exact resume)."""
    return (int(seed) * 1_000_003 + int(step) * 7919 + int(rank) * 104_729) % (2**63 - 1)


def capture_rng_state() -> Dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states, as weights-only-loadable values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "internal": list(py_state[1]), "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_training_checkpoint(path, model, model_config, optimizer, scheduler, scaler, train_state: TrainState,
                             **extra) -> Path:
    """Write a full training checkpoint atomically (our model format plus training state)."""
    return save_checkpoint(
        path,
        model,
        model_config,
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        scaler=scaler.state_dict(),
        train_state=train_state.as_dict(),
        rng=capture_rng_state(),
        **extra,
    )


def read_training_checkpoint(path) -> dict:
    """Read a checkpoint for resuming; it must carry the training state."""
    ckpt = read_checkpoint(path)
    missing = [k for k in TRAINING_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"cannot resume from {path}: it holds model weights but no training state ({', '.join(missing)} missing); "
            f"to start from its weights use model.checkpoint={path}"
        )
    return ckpt


def find_resume_checkpoint(resume: Optional[str], checkpoint_dir: Path) -> Optional[Path]:
    """Resolve ``resume``: ``None``/``""`` (fresh start), ``auto`` (``last.pt`` if any), or a path."""
    if resume in (None, "", False):
        return None
    if str(resume) == "auto":
        last = Path(checkpoint_dir) / "last.pt"
        if last.is_file():
            return last
        log.info("resume=auto: no %s yet, starting fresh", last)
        return None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"resume checkpoint not found: {path}")
    return path
