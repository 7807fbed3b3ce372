"""Fine-tune SAM2 with TS and MS (TSMS-SAM2) from the command line.

    python training/train_tsms_sam2.py --config configs/tsms_sam2_surg.yaml --epochs 100 --batch_size 8
    python training/train_tsms_sam2.py experiment=synthetic_tiny
    python training/train_tsms_sam2.py -m experiment=synthetic_tiny sampler=uniform,multiscale seed=1,2,3
    torchrun --nproc_per_node=4 training/train_tsms_sam2.py experiment=endovis17
    python training/train_tsms_sam2.py experiment=endovis17 resume=auto

Flags of the original TSMS-SAM2 README map onto the config (see training/config.py); any
Hydra override ``key=value`` / ``group=option`` may follow. ``-m``/``--multirun`` runs the
cartesian product of comma-separated values, one job after another, each in
``<run_dir>/multirun/<i>_<swept values>/`` (see training/multirun.py).
"""

import sys, pathlib  # noqa: E401  (bootstrap: repo root first, before any project import)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging  # noqa: E402

from utils.cli import run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

log = logging.getLogger("train_tsms_sam2")


def main(argv=None) -> int:
    setup_logging()
    from training.config import compose_train_config, parse_cli
    from training.multirun import split_multirun_flag

    multirun, argv = split_multirun_flag(argv)
    config_path, overrides, print_only = parse_cli(argv)
    if multirun:
        if print_only:
            raise UserError("--print_config does not combine with -m/--multirun")
        from training.multirun import run_sweep

        metrics = run_sweep(config_path, overrides)
        log.info("multirun done: %d job(s), metrics %s", len(metrics), ", ".join(f"{m:.4f}" for m in metrics))
        return 0
    cfg = compose_train_config(config_path, overrides)
    if print_only:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return 0
    from training.trainer import train

    result = train(cfg)
    state = result.state
    best = f", best validation Dice {state.best_dice:.4f} (epoch {state.best_epoch})" if state.best_epoch >= 0 else ""
    log.info("done: %d steps, %d epochs%s; checkpoints in %s", state.step, state.epoch, best,
             result.run_dir / "checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
