"""Fine-tune SAM2 with TS and MS (TSMS-SAM2) from the command line.

    python training/train_tsms_sam2.py --config configs/tsms_sam2_surg.yaml --epochs 100 --batch_size 8
    python training/train_tsms_sam2.py experiment=synthetic_tiny
    torchrun --nproc_per_node=4 training/train_tsms_sam2.py experiment=endovis17
    python training/train_tsms_sam2.py experiment=endovis17 resume=auto

Flags of the original TSMS-SAM2 README map onto the config (see training/config.py); any
Hydra override ``key=value`` / ``group=option`` may follow.
"""

import sys, pathlib  # noqa: E401  (bootstrap: repo root first, before any project import)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging  # noqa: E402

from utils.cli import run_cli  # noqa: E402
from utils.logging import setup_logging  # noqa: E402


def main(argv=None) -> int:
    setup_logging()
    from training.config import compose_train_config, parse_cli

    config_path, overrides, print_only = parse_cli(argv)
    cfg = compose_train_config(config_path, overrides)
    if print_only:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return 0
    from training.trainer import train

    summary = train(cfg)
    state = summary.state
    best = f", best validation Dice {state.best_dice:.4f} (epoch {state.best_epoch})" if state.best_epoch >= 0 else ""
    logging.getLogger("train_tsms_sam2").info(
        "done: %d steps, %d epochs%s; checkpoints in %s", state.step, state.epoch, best, summary.run_dir / "checkpoints"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
