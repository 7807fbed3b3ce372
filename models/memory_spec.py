"""MemorySpec: every memory setting of a model, as one frozen, validated value.

It is the only way memory settings travel: a preset name (``configs/memory/*.yaml``), a
composed config node (training's ``memory`` group) or a preset plus CLI flags become a
``MemorySpec``; the model builder writes it into the model config; Hydra instantiates the
module from there. Validation happens here and nowhere else.

    spec = MemorySpec.preset("tsms").replace(pruning_threshold=0.9)
    model = build_model(config="mini", memory=spec)
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from models.memory_pruning import AUTO, SIMILARITIES
from models.memory_rules import INFERENCE_ONLY, SELECTIONS
from utils.bootstrap import REPO_ROOT
from utils.errors import UserError

MEMORY_CONFIG_DIR = REPO_ROOT / "configs" / "memory"
SAM2_MEMORY_TARGET = "sam2.modeling.memory_attention.MemoryAttention"
TSMS_MEMORY_TARGET = "models.memory_attention.TSMSMemoryAttention"
MODULES = {"sam2": SAM2_MEMORY_TARGET, "tsms": TSMS_MEMORY_TARGET}
# Keys of a memory node that are not module arguments: the target, and the preset's name.
_NODE_META = ("_target_", "name")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class MemorySpec:
    """The memory of a SAM2 / TSMS-SAM2 model.

    Attributes:
        name: the preset it came from (``tsms``, ``tsms_fast``, ``sam2`` ...).
        module: ``"tsms"`` (:class:`models.memory_attention.TSMSMemoryAttention`) or
            ``"sam2"`` (SAM2's own module; every TSMS field below is then unused).
        memory_bank_size: SAM2's ``num_maskmem`` (1 prompted frame + the recent ones).
        use_mem_split: split into long- and short-term halves (TSMS) or not (SurgSAM-2).
        prune_frames: frames dropped once the bank is full (``prune_frames // 2`` per half).
        pruning_threshold: if set, only frames at least this similar may be dropped;
            ``"auto"``: the dynamic threshold, the ``auto_quantile`` quantile of the
            video's earlier scores (models/memory_pruning.py, docs/method.md).
        similarity: ``"cosine_spatial"`` or ``"cosine"``.
        prune_in_training: also prune (and pool) in ``train()`` mode.
        enabled: master switch; off is plain SAM2.
        pool_size: average-pool older kept frames this many tokens per side (1: off).
        full_res_frames: newest kept frames that stay at full resolution when pooling.
        auto_quantile: the quantile of the dynamic threshold (``pruning_threshold: auto``).
        selection: which past frames are memory candidates (:mod:`models.memory_rules`):
            ``recent`` (SAM2's last frames), ``quality`` (SAM 3 / SAM2Long: frames whose
            predicted quality passed ``quality_threshold``), ``samurai`` (IoU, object and
            Kalman motion scores), ``dam4sam`` (recent-appearance + distractor-resolving
            memory). MS pruning and pooling act on the selected frames.
        quality_threshold: SAM 3's ``mf_threshold`` on IoU x object presence.
        samurai_iou_threshold / samurai_obj_threshold / samurai_kf_threshold: SAMURAI's
            ``memory_bank_*_threshold``s.
        kf_score_weight: weight of the motion score in SAMURAI's mask choice.
        motion_mask_choice: SAMURAI's motion-aware choice among the multimask outputs.
        ram_size / ram_every / drm_size: DAM4SAM's RAM slots, RAM update period (frames)
            and DRM anchor slots.
    """

    name: str = "tsms"
    module: str = "tsms"
    memory_bank_size: int = 7
    use_mem_split: bool = True
    prune_frames: int = 2
    pruning_threshold: Optional[float] = None
    similarity: str = "cosine_spatial"
    prune_in_training: bool = True
    enabled: bool = True
    pool_size: int = 1
    full_res_frames: int = 2
    auto_quantile: float = 0.5
    selection: str = "recent"
    quality_threshold: float = 0.01
    samurai_iou_threshold: float = 0.5
    samurai_obj_threshold: float = 0.0
    samurai_kf_threshold: float = 0.0
    kf_score_weight: float = 0.15
    motion_mask_choice: bool = False
    ram_size: int = 3
    ram_every: int = 5
    drm_size: int = 3

    def __post_init__(self):
        if self.module not in MODULES:
            raise UserError(f"memory module must be one of {sorted(MODULES)}, got {self.module!r}")
        if not _is_int(self.memory_bank_size) or self.memory_bank_size < 1:
            raise UserError(f"memory_bank_size must be an integer >= 1, got {self.memory_bank_size!r}")
        if not _is_int(self.prune_frames) or self.prune_frames < 0:
            raise UserError(f"prune_frames must be an integer >= 0, got {self.prune_frames!r}")
        threshold = self.pruning_threshold
        if threshold is not None and threshold != AUTO:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1 <= threshold <= 1:
                raise UserError(f"pruning_threshold must be null, 'auto' or lie in [-1, 1], got {threshold!r}")
            object.__setattr__(self, "pruning_threshold", float(threshold))
        if self.similarity not in SIMILARITIES:
            raise UserError(f"unknown similarity {self.similarity!r}; expected one of {SIMILARITIES}")
        if not _is_int(self.pool_size) or self.pool_size < 1:
            raise UserError(f"pool_size must be an integer >= 1, got {self.pool_size!r}")
        if not _is_int(self.full_res_frames) or self.full_res_frames < 1:
            raise UserError(f"full_res_frames must be >= 1 (the newest frame keeps RoPE), got {self.full_res_frames!r}")
        q = self.auto_quantile
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 1:
            raise UserError(f"auto_quantile must lie in [0, 1], got {q!r}")
        if self.selection not in SELECTIONS:
            raise UserError(f"memory selection must be one of {SELECTIONS}, got {self.selection!r}")
        for key in ("quality_threshold", "samurai_iou_threshold", "samurai_obj_threshold", "samurai_kf_threshold",
                    "kf_score_weight"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise UserError(f"{key} must be a number, got {value!r}")
            object.__setattr__(self, key, float(value))
        if not 0 <= self.kf_score_weight <= 1:
            raise UserError(f"kf_score_weight must lie in [0, 1], got {self.kf_score_weight!r}")
        for key in ("ram_size", "ram_every", "drm_size"):
            if not _is_int(getattr(self, key)) or getattr(self, key) < 1:
                raise UserError(f"{key} must be an integer >= 1, got {getattr(self, key)!r}")
        for key in ("use_mem_split", "prune_in_training", "enabled", "motion_mask_choice"):
            if not isinstance(getattr(self, key), bool):
                raise UserError(f"{key} must be true or false, got {getattr(self, key)!r}")

    @property
    def active(self) -> bool:
        """A memory rule beyond SAM2's recent frames is on (models/memory_rules.py)."""
        return self.selection != "recent" or self.motion_mask_choice

    @property
    def trains(self) -> bool:
        """Training accepts this memory: not a rule its authors use only at inference."""
        return self.selection not in INFERENCE_ONLY and not self.motion_mask_choice

    @property
    def uses_motion(self) -> bool:
        """SAMURAI's Kalman filter runs (its selection or its mask choice)."""
        return self.selection == "samurai" or self.motion_mask_choice

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def preset(cls, name: str) -> "MemorySpec":
        """The preset ``configs/memory/<name>.yaml`` (each file is read once per process)."""
        return _load_presets().get(name) or _unknown_preset(name)

    @classmethod
    def from_node(cls, node: Mapping, name: Optional[str] = None) -> "MemorySpec":
        """From a memory config node: a preset's content (``_target_`` + module keys), e.g.
        training's composed ``memory`` group, or a model config's ``memory_attention``.

        Keys that are not memory settings (``d_model``, ``layer`` ...) are ignored.
        """
        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=True)
        node = dict(node)
        target = node.get("_target_", TSMS_MEMORY_TARGET)
        module = next((k for k, v in MODULES.items() if v == target), None)
        if module is None:
            raise UserError(f"unknown memory module {target!r}; expected one of {sorted(MODULES.values())}")
        fields = set(cls.field_names()) - {"name", "module"}
        values = {k: v for k, v in node.items() if k in fields}
        if module == "sam2":  # SAM2's module takes no TSMS settings; keep only the bank size
            values = {k: v for k, v in values.items() if k == "memory_bank_size"}
        spec = cls(name="custom", module=module, **values)
        return dataclasses.replace(spec, name=name or node.get("name") or spec.matching_preset())

    def replace(self, **changes: Any) -> "MemorySpec":
        """A copy with some fields changed (validated); unknown fields are a one-line error.

        The name stays the preset's; :meth:`describe` shows what differs from it.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UserError(f"unknown memory option(s) {unknown}; known: {sorted(known - {'name', 'module'})}")
        if self.module == "sam2" and set(changes) - {"memory_bank_size", "name"}:
            raise UserError(f"memory options {sorted(changes)} need a TSMS memory, not SAM2's (memory={self.name})")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ use
    def module_kwargs(self) -> Dict[str, Any]:
        """The TSMS module's memory arguments (empty for SAM2's module), name excluded."""
        if self.module == "sam2":
            return {}
        return {k: getattr(self, k) for k in self.field_names() if k not in ("name", "module")}

    def apply_to(self, model_cfg: DictConfig) -> DictConfig:
        """Write this memory into a model config (``{"model": ...}``) in place.

        The module's non-memory arguments (``d_model``, ``layer`` ...) are kept.
        """
        mem = model_cfg.model.memory_attention
        base = {k: v for k, v in mem.items() if k not in _MODULE_KEYS}
        node = OmegaConf.create(base)
        node._target_ = MODULES[self.module]
        if self.module == "tsms":
            node.name = self.name  # the module keeps it, so checkpoints report the real preset
            for key, value in self.module_kwargs().items():
                node[key] = value
            node.memory_bank_size = "${model.num_maskmem}"  # later num_maskmem overrides follow
        model_cfg.model.num_maskmem = self.memory_bank_size
        model_cfg.model.memory_attention = node
        return model_cfg

    def matching_preset(self) -> str:
        """The preset with these settings (the bank size aside: it is the model's), else ``"custom"``."""
        def key(spec):
            return dataclasses.replace(spec, name="", memory_bank_size=1)

        return next((n for n, p in _load_presets().items() if key(p) == key(self)), "custom")

    def describe(self) -> str:
        """``tsms`` or ``tsms (pruning_threshold=0.9)``: the name and what differs from it."""
        base = _load_presets().get(self.name)
        if base is None:
            return f"{self.name} ({self.module}: " + ", ".join(f"{k}={v}" for k, v in self.module_kwargs().items()) + ")"
        diff = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                if f.name != "name" and getattr(self, f.name) != getattr(base, f.name)]
        return f"{self.name} ({', '.join(diff)})" if diff else self.name

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


_MODULE_KEYS = MemorySpec.field_names() + _NODE_META


def memory_spec_of_model_config(model_cfg: DictConfig) -> MemorySpec:
    """The memory a model config builds (``num_maskmem`` is the bank size)."""
    node = OmegaConf.to_container(model_cfg.model.memory_attention, resolve=False)
    node["memory_bank_size"] = int(OmegaConf.select(model_cfg, "model.num_maskmem", default=7))
    return MemorySpec.from_node(node)


def resolve_memory(memory: "MemoryLike", overrides: Optional[Mapping] = None,
                   default: Optional[MemorySpec] = None) -> MemorySpec:
    """A spec from what callers pass: a spec, a preset name, or ``None`` (``default``);
    then ``overrides`` (e.g. CLI flags) on top."""
    if isinstance(memory, MemorySpec):
        spec = memory
    elif memory is None:
        spec = default if default is not None else MemorySpec.preset("tsms")
    elif isinstance(memory, str):
        spec = MemorySpec.preset(memory)
    else:
        raise UserError(f"memory must be a preset name or a MemorySpec, got {type(memory).__name__}")
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    return spec.replace(**changes) if changes else spec


MemoryLike = Optional[object]  # MemorySpec | preset name | None


@functools.lru_cache(maxsize=1)
def _load_presets() -> Dict[str, MemorySpec]:
    presets = {}
    for path in sorted(MEMORY_CONFIG_DIR.glob("*.yaml")):
        presets[path.stem] = MemorySpec.from_node(OmegaConf.to_container(OmegaConf.load(path)), name=path.stem)
    return presets


def preset_names() -> Tuple[str, ...]:
    return tuple(_load_presets())


def _unknown_preset(name: str):
    raise UserError(f"unknown memory {name!r}; choose one of: {', '.join(preset_names())}")
