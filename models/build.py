"""The one model builder: SAM2 / TSMS-SAM2 models and video predictors, from any config.

Training, inference, validation, the benchmarks and the quickstart all build through
:func:`build_model`. Hydra instantiation happens here, at the edge; the modules themselves
take plain keyword arguments. The memory travels as a :class:`~models.memory_spec.MemorySpec`.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence, Tuple

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from models.checkpoint import CheckpointError, checkpoint_config, fit_memory_bank, load_model_weights, read_checkpoint
from models.config import ConfigLike, apply_overrides, resolve_model_config
from models.speed import compile_predictor
from models.memory_spec import MemoryLike, MemorySpec, memory_spec_of_model_config, resolve_memory
from models.safe_config import check_config, check_targets
from models.weights_check import check_finite_weights
from utils.errors import UserError

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
    *,
    config: Optional[ConfigLike] = None,
    ckpt: Optional[Mapping] = None,
    memory: MemoryLike = None,
    memory_overrides: Optional[Mapping] = None,
    overrides: Sequence[str] = (),
    source: Optional[str] = None,
) -> Tuple[DictConfig, MemorySpec]:
    """The resolved model config and its memory: base config, memory, then overrides.

    ``memory=None`` keeps the memory of a config given as a mapping (ours, embedded in
    checkpoints); a config file with SAM2's own module gets ``tsms``. A preset name takes
    the config's bank size (``num_maskmem``); a ``MemorySpec`` is used as it is.
    The config is checked (:mod:`models.safe_config`) before anything in it is resolved or
    built; ``source`` names its file in the error.
    """
    if config is None:
        config = checkpoint_config(ckpt) if ckpt is not None else None
        if config is None:
            raise CheckpointError(
                "no model config given and the checkpoint embeds none "
                "(official SAM2 checkpoints need a config, e.g. --model_cfg configs/sam2.1/sam2.1_hiera_s.yaml)"
            )
        source = source or "the checkpoint's embedded config"
    elif source is None:
        source = "the model config" if isinstance(config, (Mapping, DictConfig)) else str(config)
    cfg = resolve_model_config(config)
    check_config(cfg, source=source)
    current = memory_spec_of_model_config(cfg)
    if memory is None and current.module == "sam2" and not isinstance(config, (Mapping, DictConfig)):
        memory = "tsms"
    if isinstance(memory, str):
        memory = MemorySpec.preset(memory).replace(memory_bank_size=current.memory_bank_size)
    spec = resolve_memory(memory, memory_overrides, default=current)
    spec.apply_to(cfg)
    apply_overrides(cfg, overrides)
    check_config(cfg, source=source)  # overrides may not name a callable either
    OmegaConf.resolve(cfg)
    check_targets(cfg, source=source)
    return cfg, memory_spec_of_model_config(cfg)  # raw overrides (num_maskmem=9) included


def build_model(
    *,
    config: Optional[ConfigLike] = None,
    checkpoint: Optional[str] = None,
    memory: MemoryLike = None,
    memory_overrides: Optional[Mapping] = None,
    overrides: Sequence[str] = (),
    device: str | torch.device = "cpu",
    mode: str = "eval",
    predictor: bool = False,
    model_target: Optional[str] = None,
    postprocessing: bool = True,
    compile: bool = False,
) -> torch.nn.Module:
    """Build a model; ``model.tsms_config`` is its resolved config, ``model.memory_spec`` its memory.

    Args:
        config: model config (path, sam2 config name, size alias or mapping); may be
            omitted for our checkpoints, which embed theirs.
        checkpoint: official SAM2 checkpoint or ours, loaded strictly. A smaller memory
            bank than the checkpoint's keeps its newest temporal encodings.
        memory: a :class:`MemorySpec`, a preset name (``tsms``, ``tsms_fast``, ``sam2`` ...)
            or ``None`` (see :func:`compose_model_config`).
        memory_overrides: fields to change on top, e.g. CLI flags
            ``{"pruning_threshold": 0.9, "memory_bank_size": 5}`` (``None`` values skipped).
        overrides: Hydra-style overrides of the model config, applied last.
        mode: ``"eval"`` or ``"train"``.
        predictor: build our :class:`~models.predictor.TSMSVideoPredictor` (with sam2's
            post-processing unless ``postprocessing=False``).
        model_target: another ``model._target_`` (e.g. the training model).
        compile: ``torch.compile`` the image encoder and the memory attention
            (:func:`models.speed.compile_predictor`).
    """
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    target = PREDICTOR_TARGET if predictor else model_target
    extra = [f"++model._target_={target}"] if target else []
    if predictor and postprocessing:
        extra += list(_POSTPROCESSING_OVERRIDES)
    ckpt = read_checkpoint(checkpoint) if checkpoint is not None else None
    if ckpt is not None:  # NaN/Inf weights would track nothing and say nothing
        check_finite_weights(ckpt["model"], str(checkpoint))
    source = f"checkpoint {checkpoint}" if config is None and checkpoint is not None else None
    cfg, spec = compose_model_config(config=config, ckpt=ckpt, memory=memory, memory_overrides=memory_overrides,
                                     overrides=extra + list(overrides), source=source)
    try:
        model = instantiate(cfg.model, _recursive_=True)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"cannot build the model from its config: {type(cause).__name__}: {cause}") from exc
    if ckpt is not None:
        weights = fit_memory_bank(ckpt["model"], spec.memory_bank_size, source=str(checkpoint))
        load_model_weights(model, weights, source=str(checkpoint))
    model = model.to(device)
    model.train(mode == "train")
    model.tsms_config = cfg  # the resolved config, for saving checkpoints
    model.memory_spec = spec
    if predictor:
        model.disable_unavailable_postprocessing()
    if compile:
        compile_predictor(model)
    log.debug("built %s with memory %s", type(model).__name__, spec.describe())
    return model


def build_tsms_sam2_video_predictor(
    config: Optional[ConfigLike] = None,
    ckpt_path: Optional[str] = None,
    device: str | torch.device = "cpu",
    memory: MemoryLike = None,
    hydra_overrides_extra: Sequence[str] = (),
    memory_options: Optional[Mapping] = None,
):
    """sam2's ``build_sam2_video_predictor`` signature over :func:`build_model` (for users
    coming from sam2): our :class:`~models.predictor.TSMSVideoPredictor`."""
    return build_model(config=config, checkpoint=ckpt_path, device=device, memory=memory,
                       memory_overrides=memory_options, overrides=hydra_overrides_extra, predictor=True)
