"""Build SAM2 / TSMS-SAM2 models and video predictors, mirroring sam2's builders.

Hydra instantiation happens here, at the edge; the modules themselves take plain keyword
arguments.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence, Tuple

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from models.checkpoint import CheckpointError, checkpoint_config, load_model_weights, read_checkpoint
from models.config import ConfigLike, apply_overrides, resolve_model_config, set_memory
from utils.cli import UserError

log = logging.getLogger(__name__)

PREDICTOR_TARGET = "models.predictor.TSMSVideoPredictor"

# The same post-processing sam2's build_sam2_video_predictor applies.
_POSTPROCESSING_OVERRIDES = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
)


def compose_model_config(
    config: Optional[ConfigLike] = None,
    ckpt: Optional[Mapping] = None,
    memory: Optional[str] = None,
    memory_options: Optional[Mapping] = None,
    hydra_overrides_extra: Sequence[str] = (),
) -> DictConfig:
    """The resolved model config: base config, memory choice, then user overrides."""
    if config is None:
        config = checkpoint_config(ckpt) if ckpt is not None else None
        if config is None:
            raise CheckpointError(
                "no model config given and the checkpoint embeds none "
                "(official SAM2 checkpoints need a config, e.g. --model_cfg configs/sam2.1/sam2.1_hiera_s.yaml)"
            )
    cfg = resolve_model_config(config)
    set_memory(cfg, memory, memory_options)
    apply_overrides(cfg, hydra_overrides_extra)
    OmegaConf.resolve(cfg)
    return cfg


def _instantiate(cfg: DictConfig, ckpt: Optional[Mapping], ckpt_path, device, mode) -> torch.nn.Module:
    try:
        model = instantiate(cfg.model, _recursive_=True)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"cannot build the model from its config: {type(cause).__name__}: {cause}") from exc
    if ckpt is not None:
        load_model_weights(model, ckpt["model"], source=str(ckpt_path))
    model = model.to(device)
    if mode == "eval":
        model.eval()
    elif mode == "train":
        model.train()
    else:
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    model.tsms_config = cfg  # the resolved config, for saving checkpoints
    return model


def build_with_config(
    config: Optional[ConfigLike] = None,
    ckpt_path: Optional[str] = None,
    device: str | torch.device = "cpu",
    mode: str = "eval",
    memory: Optional[str] = None,
    memory_options: Optional[Mapping] = None,
    hydra_overrides_extra: Sequence[str] = (),
) -> Tuple[torch.nn.Module, DictConfig]:
    """Build a model and return it with its resolved config.

    Args:
        config: model config (path, sam2 config name, size alias or mapping); may be
            omitted for our checkpoints, which embed theirs.
        ckpt_path: official SAM2 checkpoint or ours, loaded strictly.
        mode: ``"eval"`` or ``"train"``.
        memory / memory_options / hydra_overrides_extra: see
            :func:`build_tsms_sam2_video_predictor`.
    """
    ckpt = read_checkpoint(ckpt_path) if ckpt_path is not None else None
    cfg = compose_model_config(config, ckpt, memory, memory_options, hydra_overrides_extra)
    return _instantiate(cfg, ckpt, ckpt_path, device, mode), cfg


def build_tsms_sam2(*args, **kwargs) -> torch.nn.Module:
    """Build a SAM2Base-style model (the config's own ``model._target_``).

    Same arguments as :func:`build_with_config`; returns only the model.
    """
    return build_with_config(*args, **kwargs)[0]


def build_tsms_sam2_video_predictor(
    config: Optional[ConfigLike] = None,
    ckpt_path: Optional[str] = None,
    device: str | torch.device = "cpu",
    memory: Optional[str] = None,
    hydra_overrides_extra: Sequence[str] = (),
    memory_options: Optional[Mapping] = None,
    mode: str = "eval",
    apply_postprocessing: bool = True,
):
    """Build our :class:`~models.predictor.TSMSVideoPredictor`.

    Args:
        config: a model config (path, sam2 config name, size alias or mapping). May be
            omitted when ``ckpt_path`` is one of our checkpoints, which embed their config.
        ckpt_path: official SAM2 checkpoint or ours; loaded strictly.
        memory: ``"tsms"`` (MS on), ``"sam2"`` (plain SAM2), another preset from
            ``configs/memory/``, or ``None`` (default): keep what the config says, which
            for our checkpoints is what they were trained with; sam2's own configs get
            ``"tsms"``.
        hydra_overrides_extra: Hydra-style overrides, applied last.
        memory_options: e.g. ``{"pruning_threshold": 0.9, "memory_bank_size": 7}``.
        apply_postprocessing: the same post-processing as sam2's builder.
    """
    overrides = [f"++model._target_={PREDICTOR_TARGET}"]
    if apply_postprocessing:
        overrides += list(_POSTPROCESSING_OVERRIDES)
    overrides += list(hydra_overrides_extra)
    model = build_tsms_sam2(config, ckpt_path, device, mode, memory, memory_options, overrides)
    model.disable_unavailable_postprocessing()
    return model
