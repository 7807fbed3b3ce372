"""Fine-tuning SAM2 with TS and MS: the training forward, SAM2's losses, the trainer.

Public API (imported lazily, so ``training.config`` stays light for the CLI)::

    from training import compose_train_config, train
    dice = train(compose_train_config(overrides=["experiment=synthetic_tiny"]))  # best validation Dice
    dice.state, dice.model                     # a float that carries the TrainSummary (training/result.py)

See docs/training.md.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "compose_train_config": "training.config",
    "parse_cli": "training.config",
    "train": "training.trainer",
    "Trainer": "training.trainer",
    "TrainSummary": "training.trainer",
    "TrainResult": "training.result",
    "run_sweep": "training.multirun",
    "TrainingDivergedError": "training.trainer",
    "TSMSTrainModel": "training.model",
    "PromptConfig": "training.prompts",
    "plan_prompts": "training.prompts",
    "SAM2VideoLoss": "training.losses",
    "LossWeights": "training.losses",
    "ClipOutputs": "training.batch",
    "FrameOutputs": "training.batch",
    "build_param_groups": "training.optim",
    "TrainState": "training.state",
    "VideoValidator": "training.validation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
