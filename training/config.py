"""Composing the training config: Hydra's compose API, the original CLI flags, checks.

``configs/tsms_sam2_surg.yaml`` is the primary config; groups live beside it
(``model_size/``, ``data/``, ``sampler/``, ``memory/``, ``optim/``, ``trainer/``,
``experiment/``). Overrides use Hydra's grammar (``key=value``, ``group=option``,
``+key=value``). The original TSMS-SAM2 flags map onto the top-level knobs:

=================  ======================
``--epochs N``      ``epochs=N``
``--batch_size B``  ``batch_size=B``
``--lr X``          ``base_lr=X vision_lr=X``
``--resume P``      ``resume=P``
``--output_dir D``  ``run_dir=D``
``--device D``      ``device=D``
=================  ======================
"""

from __future__ import annotations

import contextlib

from pathlib import Path
from typing import List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from models.safe_config import TRAINING_RESOLVERS, TRAINING_TARGETS, check_config
from utils.bootstrap import REPO_ROOT
from utils.errors import UserError

DEFAULT_CONFIG = REPO_ROOT / "configs" / "tsms_sam2_surg.yaml"

LEGACY_FLAGS = {
    "epochs": ("epochs",),
    "batch_size": ("batch_size",),
    "lr": ("base_lr", "vision_lr"),
    "resume": ("resume",),
    "output_dir": ("run_dir",),
    "device": ("device",),
}


def legacy_flag_overrides(**flags) -> List[str]:
    """Hydra overrides for the original CLI flags (``None`` values are skipped)."""
    overrides = []
    for flag, value in flags.items():
        if value is None:
            continue
        if flag not in LEGACY_FLAGS:
            raise ValueError(f"unknown flag {flag!r}")
        for key in LEGACY_FLAGS[flag]:
            overrides.append(f"{key}={value}")
    return overrides


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text.split(" Config search path:")[0]  # Hydra appends its search path; not useful here
    return text or type(exc).__name__


@contextlib.contextmanager
def hydra_config_dir(config_dir):
    """Hydra initialised on ``config_dir`` for the block, then put back as it was.

    sam2 initialises Hydra's global state on its own config module at import time and its
    builders rely on it, so it must survive our compositions.
    """
    import sam2  # noqa: F401  (sam2 sets up its Hydra state on first import; save that one)
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    saved = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            yield
    finally:  # Hydra swaps the singleton object on exit: look it up again
        GlobalHydra.instance().clear()
        if saved is not None:
            GlobalHydra.instance().initialize(saved)


def compose_train_config(config_path=DEFAULT_CONFIG, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose and check the training config (``config_path`` is any primary config file)."""
    from hydra import compose

    path = Path(config_path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        with hydra_config_dir(path.parent):
            cfg = compose(config_name=path.stem, overrides=list(overrides))
    except Exception as exc:  # Hydra raises several exception types for bad configs/overrides
        raise UserError(f"cannot compose {path}: {_one_line(exc)}") from exc
    check_config(cfg, source=str(path), allowed=TRAINING_TARGETS, resolvers=TRAINING_RESOLVERS)
    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:
        raise UserError(f"cannot resolve {path}: {_one_line(exc)}") from exc
    check_train_config(cfg)
    return cfg


def _require(cfg: DictConfig, key: str, test, what: str, hint: str = "") -> None:
    value = OmegaConf.select(cfg, key)
    if value is None or not test(value):
        raise UserError(f"{key} must be {what}, got {value!r}{hint}")


def check_train_config(cfg: DictConfig) -> None:
    """One-line errors for values that would only fail deep inside training."""
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    _require(cfg, "batch_size", lambda v: is_int(v) and v >= 1, "an integer >= 1", " (--batch_size)")
    _require(cfg, "epochs", lambda v: is_int(v) and v >= 1, "an integer >= 1", " (--epochs)")
    _require(cfg, "num_frames", lambda v: is_int(v) and v >= 2, "an integer >= 2",
             " (a clip needs a frame tracked from memory)")
    _require(cfg, "max_num_objects", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    _require(cfg, "resolution", lambda v: is_int(v) and v >= 32 and v % 32 == 0, "a multiple of 32")
    for key in ("base_lr", "vision_lr"):
        _require(cfg, key, lambda v: isinstance(v, (int, float)) and v > 0, "a positive number")
    scales = OmegaConf.select(cfg, "temporal_scales")
    if scales is not None and (not list(scales) or any(not is_int(s) or s < 1 for s in scales)):
        raise UserError(f"temporal_scales must be a non-empty list of integers >= 1, got {list(scales)}")
    probs = OmegaConf.select(cfg, "scale_probs")
    if scales is not None and probs is not None and len(list(probs)) != len(list(scales)):
        raise UserError(f"scale_probs {list(probs)} must have one entry per temporal_scales {list(scales)} "
                        f"(or be null for equal probabilities)")
    if probs is not None:
        values = list(probs)
        if any(not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1 for p in values) \
                or abs(sum(values) - 1.0) > 1e-6:
            raise UserError(f"scale_probs {values} must be probabilities in [0, 1] that sum to 1 "
                            f"(they sum to {sum(v for v in values if isinstance(v, (int, float))):g})")
    from training.builders import memory_spec

    memory_spec(cfg)  # the memory settings are validated by MemorySpec, in one place
    max_steps = OmegaConf.select(cfg, "trainer.max_steps")
    if max_steps is not None and not (is_int(max_steps) and max_steps >= 1):
        raise UserError(f"trainer.max_steps must be null or an integer >= 1, got {max_steps!r}")


def parse_cli(argv: Optional[Sequence[str]]):
    """``(config_path, overrides, print_only)`` from the command line (flags, ``key=value`` overrides,
    ``--print_config``)."""
    from utils.cli import ArgumentParser

    parser = ArgumentParser(
        prog="train_tsms_sam2.py",
        description="Fine-tune SAM2 with TS (multi-scale temporal sampling) and MS (memory splitting + pruning).",
        epilog="Any number of Hydra overrides may follow, e.g.: experiment=endovis17 resolution=512 "
        "memory=sam2 pruning_threshold=0.9 model.checkpoint=checkpoints/sam2.1_hiera_small.pt",
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="primary config (default: %(default)s)")
    parser.add_argument("--epochs", type=int, help="epochs (overrides epochs=)")
    parser.add_argument("--batch_size", type=int, help="clips per GPU per step (overrides batch_size=)")
    parser.add_argument("--lr", type=float, help="learning rate of all parameters (base_lr= and vision_lr=)")
    parser.add_argument("--resume", help="checkpoint to resume from, or 'auto' (the run's last.pt)")
    parser.add_argument("--output_dir", help="run directory (overrides run_dir=)")
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--print_config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    args = parser.parse_intermixed_args(argv)
    for flag in ("epochs", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag} must be >= 1, got {value}")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"overrides must look like key=value, got {bad[0]!r}")
    flags = {k: getattr(args, k) for k in LEGACY_FLAGS}
    return args.config, legacy_flag_overrides(**flags) + list(args.overrides), args.print_config
