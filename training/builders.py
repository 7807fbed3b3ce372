"""Build what training needs from the composed config (Hydra instantiation lives here).

* the model: :func:`models.build_model` with our :class:`training.model.TSMSTrainModel`
  as ``model._target_``, the :class:`~models.memory_spec.MemorySpec` of the ``memory``
  group, and the resolution;
* the datasets and the DataLoader (the data package's VOS dataset, temporal sampler,
  clip transforms and collate function);
* the optimizer, schedule and loss.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from models import MemorySpec, build_model
from models.config import resolution_overrides
from training.losses import LossWeights, SAM2VideoLoss
from training.model import SAM2_BASE_TARGET, TRAIN_MODEL_TARGET, init_local_memory_attention
from training.optim import build_param_groups, build_scheduler
from training.prompts import PromptConfig
from utils.errors import UserError

log = logging.getLogger(__name__)


def instantiate(node, *args, **kwargs):
    """Hydra's ``instantiate``, re-raising our one-line ``UserError`` instead of Hydra's wrapper."""
    try:
        return hydra_instantiate(node, *args, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"cannot instantiate {getattr(node, 'get', lambda k: None)('_target_')}: {cause or exc}") from exc


def memory_spec(cfg: DictConfig) -> MemorySpec:
    """The memory of the composed config: the ``memory`` group (a preset's content, with the
    top-level ``memory_bank_size`` and ``pruning_threshold`` interpolated into it)."""
    spec = MemorySpec.from_node(cfg.memory)
    if not spec.trains:
        raise UserError(f"memory={spec.name} ({spec.selection} selection) is an inference-time rule: its authors "
                        f"use it training-free; train with another memory (e.g. tsms or quality) and track with "
                        f"predict_video.py --memory {spec.name}")
    if spec.module == "sam2" and cfg.memory.get("pruning_threshold") is not None:
        log.warning("memory=sam2 does not prune; pruning_threshold=%s is ignored", cfg.memory.pruning_threshold)
    return spec


def model_overrides(cfg: DictConfig) -> List[str]:
    """Model-config overrides: the training resolution (and RoPE sizes that follow it)."""
    overrides = [f"++{o}" for o in resolution_overrides(int(cfg.resolution))]
    return overrides + list(cfg.model.get("overrides") or [])


def build_train_model(cfg: DictConfig, device: torch.device):
    """The training model and the model config to embed in checkpoints (a SAM2Base config).

    ``cfg.model.checkpoint`` (an official SAM2 file or ours) initialises the weights,
    strictly; ``null`` trains from scratch.
    """
    ckpt = cfg.model.get("checkpoint")
    if ckpt and not Path(ckpt).is_file():
        raise UserError(
            f"model.checkpoint not found: {ckpt} (download the official SAM2.1 weights into checkpoints/, "
            f"see checkpoints/README.md, or set model.checkpoint=null to train from scratch)"
        )
    model = build_model(config=cfg.model.config, checkpoint=ckpt or None, memory=memory_spec(cfg),
                        overrides=model_overrides(cfg), device=device, mode="train", model_target=TRAIN_MODEL_TARGET)
    model_cfg = model.tsms_config
    local_bias = cfg.model.get("local_memory_attention_init")
    if local_bias and not ckpt:
        init_local_memory_attention(model, float(local_bias))
    saved_cfg = OmegaConf.create(OmegaConf.to_container(model_cfg, resolve=True))
    saved_cfg.model._target_ = SAM2_BASE_TARGET  # checkpoints rebuild a plain SAM2 model
    source = f"from {ckpt}" if ckpt else "from scratch (random init)"
    log.info("model %s (%s, %.1fM params) %s, memory=%s", cfg.model.config, type(model).__name__,
             sum(p.numel() for p in model.parameters()) / 1e6, source, model.memory_spec.describe())
    return model, saved_cfg


def build_prompt_config(cfg: DictConfig) -> PromptConfig:
    """Prompt simulation settings (``model.prompts``), passed to every training forward."""
    return PromptConfig(**OmegaConf.to_container(cfg.model.prompts, resolve=True))


def build_sampler(cfg: DictConfig):
    """The temporal sampler of the ``sampler`` group, with the top-level knobs applied.

    ``num_frames`` always comes from the top block; ``temporal_scales`` and ``scale_probs``
    (``null``: uniform over the strides) replace the sampler's own where it has such a key.
    """
    node = OmegaConf.create(OmegaConf.to_container(cfg.sampler, resolve=True))
    node.num_frames = int(cfg.num_frames)
    if "temporal_scales" in node and cfg.get("temporal_scales") is not None:
        node.temporal_scales = list(cfg.temporal_scales)
    if "scale_probs" in node and "scale_probs" in cfg:  # null: all strides equally likely
        node.scale_probs = None if cfg.scale_probs is None else list(cfg.scale_probs)
    return instantiate(node)


def build_dataset(cfg: DictConfig, split: str, seed: int):
    """The training (``split='train'``) or validation dataset of the ``data`` group."""
    node = cfg.data.get(split)
    if node is None:
        return None
    root = node.get("root")
    if root is not None and not Path(root).is_dir():
        raise UserError(f"data.{split}.root not found: {root} (set data_root=... or data.{split}.root=...)")
    transforms = instantiate(cfg.transforms.train if split == "train" else cfg.transforms.val)
    return instantiate(node, sampler=build_sampler(cfg), transforms=transforms, seed=seed, _convert_="all")


def build_loss(cfg: DictConfig) -> SAM2VideoLoss:
    loss = cfg.loss
    return SAM2VideoLoss(
        weights=LossWeights(**loss.weights),
        focal_alpha=float(loss.focal_alpha),
        focal_gamma=float(loss.focal_gamma),
        supervise_all_iou=bool(loss.supervise_all_iou),
    )


def build_optimizer(cfg: DictConfig, model: torch.nn.Module, total_steps: int):
    """AdamW (or the configured optimizer) over SAM2's parameter groups, and its schedule."""
    groups = build_param_groups(model, **OmegaConf.to_container(cfg.optim.param_groups, resolve=True))
    optimizer = instantiate(cfg.optim.optimizer)(groups)
    scheduler = build_scheduler(optimizer, total_steps, **OmegaConf.to_container(cfg.optim.scheduler, resolve=True))
    return optimizer, scheduler


def amp_dtype(cfg: DictConfig, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype: the configured one on CUDA, none (fp32) on CPU."""
    if device.type != "cuda" or not cfg.optim.amp.enabled:
        return None
    name = str(cfg.optim.amp.dtype)
    if name not in ("bfloat16", "float16"):
        raise UserError(f"optim.amp.dtype must be bfloat16 or float16, got {name!r}")
    return getattr(torch, name)
