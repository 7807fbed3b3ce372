"""A config that came from a file is data: what it may instantiate is allowlisted.

Hydra's ``instantiate`` imports and calls whatever a ``_target_`` names, so a checkpoint
whose embedded config says ``_target_: builtins.open`` would run that call on load, and
``torch.load(weights_only=True)`` alone cannot stop it. Every config read from a file (a
checkpoint, a model YAML, a training YAML) passes :func:`check_config` before anything is
resolved or built:

1. interpolations may only point at other nodes (``${memory_bank_size}``); resolver calls
   (``${oc.decode:...}``, ``${eval:...}``, any ``${name:...}``) are refused, except the few
   named in ``resolvers`` (plain lookups, for user-written training YAMLs);
2. after resolution, every ``_target_`` anywhere in the tree (nested nodes, ``_args_``
   lists, ``_partial_`` nodes) must be on the allowlist: the classes a SAM2/TSMS model is
   made of, plus, for training configs, our datasets, samplers, transforms and optimizers.

Anything else raises :class:`UnsafeConfigError` naming the target and the file; nothing was
imported or called.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping, Tuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from utils.errors import UserError

# The modules of SAM2 / SAM2.1 (every size, sam2 1.1.0's configs) and ours.
MODEL_TARGETS = frozenset({
    "sam2.modeling.sam2_base.SAM2Base",
    "sam2.sam2_video_predictor.SAM2VideoPredictor",
    "sam2.sam2_video_predictor.SAM2VideoPredictorVOS",
    "sam2.modeling.backbones.image_encoder.ImageEncoder",
    "sam2.modeling.backbones.image_encoder.FpnNeck",
    "sam2.modeling.backbones.hieradet.Hiera",
    "sam2.modeling.position_encoding.PositionEmbeddingSine",
    "sam2.modeling.memory_attention.MemoryAttention",
    "sam2.modeling.memory_attention.MemoryAttentionLayer",
    "sam2.modeling.sam.transformer.RoPEAttention",
    "sam2.modeling.memory_encoder.MemoryEncoder",
    "sam2.modeling.memory_encoder.MaskDownSampler",
    "sam2.modeling.memory_encoder.Fuser",
    "sam2.modeling.memory_encoder.CXBlock",
    "models.memory_attention.TSMSMemoryAttention",
    "models.predictor.TSMSVideoPredictor",
    "training.model.TSMSTrainModel",
})

# What a training config builds besides the model (configs/data, sampler, optim groups).
TRAINING_TARGETS = MODEL_TARGETS | frozenset({
    "data.vos_dataset.VOSDataset",
    "data.transforms.ClipTransforms",
    "data.samplers.UniformTemporalSampler",
    "data.samplers.MultiScaleTemporalSampler",
    "data.motion_sampler.MotionAdaptiveTemporalSampler",
    "torch.optim.AdamW",
    "torch.optim.Adam",
    "torch.optim.SGD",
})

# Lookups that read a value and call nothing; allowed in user-written training YAMLs only.
TRAINING_RESOLVERS = frozenset({"oc.env", "oc.select"})

_INTERPOLATION = re.compile(r"(?<!\\)\$\{")
_NODE_REFERENCE = re.compile(r"\$\{\s*\.*[A-Za-z_][\w\-]*(?:\.[\w\-]+|\[\w+\])*\s*\}")
_RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


class UnsafeConfigError(UserError):
    """A config from a file names a callable or a resolver we do not allow."""


def _walk(node: Any, path: str = "") -> Iterator[Tuple[str, Any, Any]]:
    """``(path, key, value)`` for every entry of a plain container tree (keys included)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            yield sub, key, value
            yield from _walk(value, sub)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            sub = f"{path}[{i}]"
            yield sub, i, value
            yield from _walk(value, sub)


def _plain(node: Any, resolve: bool) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=resolve)
    if isinstance(node, (Mapping, list, tuple)):
        return OmegaConf.to_container(OmegaConf.create(node), resolve=resolve)
    return node


def check_interpolations(node: Any, *, source: str, resolvers: Iterable[str] = ()) -> None:
    """Refuse resolver calls (``${name:...}``) other than ``resolvers``; node references pass."""
    allowed = frozenset(resolvers)
    for path, key, value in _walk(_plain(node, resolve=False)):
        for text in (key, value):
            if not isinstance(text, str) or not _INTERPOLATION.search(text):
                continue
            called = [m.group(1) for m in _RESOLVER_CALL.finditer(text)]
            bad = [name for name in called if name not in allowed]
            leftover = _NODE_REFERENCE.sub("", text)
            for name in called:
                leftover = re.sub(r"\$\{\s*" + re.escape(name) + r"\s*:[^${}]*\}", "", leftover)
            if bad or _INTERPOLATION.search(leftover):
                what = f"resolver {bad[0]!r}" if bad else "interpolation"
                raise UnsafeConfigError(
                    f"{source}: {path} uses the {what} {text!r}; configs read from files may only "
                    f"reference other keys (${{key}}), never call resolvers"
                )


def check_targets(node: Any, *, source: str, allowed: frozenset = MODEL_TARGETS) -> None:
    """Every ``_target_`` in the (resolved) tree is on ``allowed``; checks the keys only."""
    try:
        tree = _plain(node, resolve=True)
    except UserError:
        raise
    except Exception as exc:  # omegaconf's errors: a missing key, a bad reference
        raise UserError(f"cannot resolve {source}: {str(exc).splitlines()[0]}") from exc
    for path, key, value in _walk(tree):
        if key != "_target_":
            continue
        if not isinstance(value, str) or value not in allowed:
            raise UnsafeConfigError(
                f"{source}: {path} names {value!r}, which is not a SAM2/TSMS class this toolkit builds; "
                f"refusing to load it (nothing was called)"
            )


def check_config(node: Any, *, source: str, allowed: frozenset = MODEL_TARGETS, resolvers: Iterable[str] = ()) -> None:
    """Both checks: first the raw interpolations (nothing is resolved before), then the targets."""
    check_interpolations(node, source=source, resolvers=resolvers)
    check_targets(node, source=source, allowed=allowed)
