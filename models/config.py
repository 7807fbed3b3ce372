"""Model configs: find them, apply Hydra-style overrides, choose the memory module.

A model config is a mapping with a top-level ``model`` key, the layout of sam2's own YAML
files. ``resolve_model_config`` accepts:

* a path to a YAML file (ours in ``configs/model/`` or any user file);
* a name from sam2's package (``configs/sam2.1/sam2.1_hiera_t.yaml``, ``sam2.1_hiera_t``)
  or from ``configs/model/`` (``sam2.1_hiera_mini``);
* a size alias: ``tiny``, ``small``, ``base_plus``, ``large`` (SAM2.1), or ``sam2_tiny`` ...
  for the original SAM2;
* an already-loaded mapping (e.g. the resolved config stored in our checkpoints).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from utils.cli import UserError

REPO_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
MODEL_CONFIG_DIR = REPO_CONFIG_DIR / "model"
MEMORY_CONFIG_DIR = REPO_CONFIG_DIR / "memory"

SAM2_SIZE_ALIASES = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_large": "configs/sam2/sam2_hiera_l.yaml",
    "mini": "sam2.1_hiera_mini",
}

# configs/model/sam2.1_hiera_mini.yaml expressed as overrides on sam2's own tiny config, so
# sam2's builder can build the same model (parity tests, benchmarks); a test keeps them equal.
MINI_FROM_TINY_OVERRIDES = (
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
    "++model.image_encoder.neck.d_model=64",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "++model.memory_attention.d_model=64",
    "++model.memory_attention.num_layers=2",
    "++model.memory_attention.layer.d_model=64",
    "++model.memory_attention.layer.dim_feedforward=256",
    "++model.memory_attention.layer.self_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.self_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.cross_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=32",
    "++model.memory_encoder.out_dim=32",
    "++model.memory_encoder.in_dim=64",
    "++model.memory_encoder.position_encoding.num_pos_feats=32",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "++model.memory_encoder.fuser.layer.dim=64",
    "++model.image_size=128",
)


def resolution_overrides(image_size: int) -> list:
    """Overrides that run a model at another input size (RoPE grids follow image_size / 16)."""
    if image_size % 16:
        raise UserError(f"image size must be a multiple of 16, got {image_size}")
    grid = f"[{image_size // 16},{image_size // 16}]"
    return [
        f"model.image_size={image_size}",
        f"model.memory_attention.layer.self_attention.feat_sizes={grid}",
        f"model.memory_attention.layer.cross_attention.feat_sizes={grid}",
    ]


SAM2_MEMORY_TARGET = "sam2.modeling.memory_attention.MemoryAttention"
TSMS_MEMORY_KEYS = (
    "memory_bank_size",
    "use_mem_split",
    "prune_frames",
    "pruning_threshold",
    "similarity",
    "prune_in_training",
    "enabled",
    "pool_size",
    "full_res_frames",
)

ConfigLike = Union[str, Path, Mapping, DictConfig]


def _sam2_config_root() -> Path:
    return Path(str(importlib.resources.files("sam2")))


def _candidate_files(name: str):
    """Places a config name may refer to, most specific first."""
    yield Path(name)
    stem = name[:-5] if name.endswith(".yaml") else name
    root = _sam2_config_root()
    yield root / name
    yield root / f"{stem}.yaml"
    yield MODEL_CONFIG_DIR / f"{stem}.yaml"
    for sub in ("configs/sam2.1", "configs/sam2"):
        yield root / sub / f"{stem}.yaml"


def find_model_config_file(name: Union[str, Path]) -> Path:
    name = SAM2_SIZE_ALIASES.get(str(name), str(name))
    for path in _candidate_files(name):
        if path.is_file():
            return path
    known = sorted(SAM2_SIZE_ALIASES) + sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.yaml"))
    raise UserError(f"model config not found: {name!r} (not a file; known names: {', '.join(known)})")


def resolve_model_config(config: ConfigLike, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a model config and apply ``key=value`` / ``++key=value`` / ``~key`` overrides."""
    if isinstance(config, (DictConfig, Mapping)):
        cfg = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(config), resolve=False))
    else:
        cfg = OmegaConf.load(find_model_config_file(config))
    if "model" not in cfg:
        cfg = OmegaConf.create({"model": cfg})
    apply_overrides(cfg, overrides)
    return cfg


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply Hydra override strings in place (same grammar and semantics as Hydra's)."""
    if not overrides:
        return cfg
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as exc:  # Hydra's parser raises its own exception types
        raise UserError(f"cannot parse overrides {list(overrides)}: {exc}") from exc
    for ov in parsed:
        key = ov.key_or_group
        exists = OmegaConf.select(cfg, key, default="__missing__") != "__missing__"
        if ov.is_delete():
            if not exists:
                raise UserError(f"override ~{key}: no such key in the model config")
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            del node[leaf]
        elif ov.is_add() and exists:
            raise UserError(f"override +{key}: key already exists (use ++{key}=... to force)")
        elif not ov.is_add() and not ov.is_force_add() and not exists:
            raise UserError(f"override {key}: no such key in the model config (use +{key}=... to add)")
        else:
            OmegaConf.update(cfg, key, ov.value(), merge=True, force_add=True)
    return cfg


def load_memory_preset(name: str) -> DictConfig:
    path = MEMORY_CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in MEMORY_CONFIG_DIR.glob("*.yaml"))
        raise UserError(f"unknown memory {name!r}; choose one of: {', '.join(known)}")
    return OmegaConf.load(path)


def uses_tsms_memory(cfg: DictConfig) -> bool:
    return OmegaConf.select(cfg, "model.memory_attention._target_") != SAM2_MEMORY_TARGET


def set_memory(
    cfg: DictConfig,
    memory: Optional[str] = None,
    memory_options: Optional[Mapping] = None,
) -> DictConfig:
    """Choose the memory module in place.

    Args:
        memory: a preset in ``configs/memory/`` (``sam2``, ``tsms``, ``surgsam2`` ...), or
            ``None`` to keep the config's own choice (a config with SAM2's module then
            gets ``tsms``).
        memory_options: keys to change on top, e.g. ``{"pruning_threshold": 0.9}``.
            ``memory_bank_size`` sets SAM2's ``num_maskmem``, which sizes the memory bank.
    """
    mem = cfg.model.memory_attention
    if memory is None and not uses_tsms_memory(cfg):
        memory = "tsms"
    options = dict(memory_options or {})
    if "memory_bank_size" in options:
        cfg.model.num_maskmem = int(options.pop("memory_bank_size"))
    if memory is not None:
        base = {k: v for k, v in mem.items() if k not in TSMS_MEMORY_KEYS}
        mem = OmegaConf.merge(OmegaConf.create(base), load_memory_preset(memory))
    if options:
        if not uses_tsms_memory(OmegaConf.create({"model": {"memory_attention": mem}})):
            raise UserError(f"memory options {sorted(options)} need a TSMS memory, not SAM2's")
        unknown = sorted(set(options) - set(TSMS_MEMORY_KEYS))
        if unknown:
            raise UserError(f"unknown memory option(s) {unknown}; known: {list(TSMS_MEMORY_KEYS)}")
        mem = OmegaConf.merge(mem, options)
    if mem._target_ != SAM2_MEMORY_TARGET:
        mem.memory_bank_size = "${model.num_maskmem}"  # one source of truth for the bank size
    cfg.model.memory_attention = mem
    return cfg
