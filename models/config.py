"""Model configs: find them and apply Hydra-style overrides (memory: see memory_spec.py).

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
from typing import Mapping, Sequence, Union

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from utils.bootstrap import REPO_ROOT
from utils.errors import UserError

REPO_CONFIG_DIR = REPO_ROOT / "configs"
MODEL_CONFIG_DIR = REPO_CONFIG_DIR / "model"

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
