"""Optimizer parameter groups, the learning-rate schedule and gradient clipping.

Parameter groups follow SAM2's fine-tuning recipe:

* the image encoder gets ``vision_lr``, everything else ``base_lr``;
* inside the image-encoder trunk (Hiera), layer-wise lr decay: block ``i`` of ``L`` gets
  ``layer_decay ** (L - i)``, the patch embedding ``layer_decay ** (L + 1)``; names
  matching ``layer_decay_skip`` (default: the positional embeddings) keep scale 1;
* weight decay is 0 on biases and on LayerNorm parameters (``nn.LayerNorm`` and sam2's
  ``LayerNorm2d``), ``weight_decay`` elsewhere;
* frozen parameters (``requires_grad=False``) are left out.

The schedule is a per-step cosine from each group's lr down to ``final_lr_ratio`` times it,
after an optional linear warm-up.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch

NORM_CLASS_NAMES = ("LayerNorm", "LayerNorm2d")


def _norm_param_names(model: torch.nn.Module) -> set:
    names = set()
    for module_name, module in model.named_modules():
        if type(module).__name__ in NORM_CLASS_NAMES:
            for param_name, _ in module.named_parameters(recurse=False):
                names.add(f"{module_name}.{param_name}" if module_name else param_name)
    return names


def trunk_layer_scale(name: str, trunk: torch.nn.Module, layer_decay: float, skip: Sequence[str] = ()) -> float:
    """lr scale of parameter ``name`` (full model name) inside a Hiera-like trunk."""
    if layer_decay == 1.0 or any(fnmatch.fnmatchcase(name, p) for p in skip):
        return 1.0
    num_layers = trunk.get_num_layers() + 1
    layer_id = trunk.get_layer_id(name)  # 0: patch/pos embed, i + 1: block i, else num_layers
    return layer_decay ** (num_layers - min(layer_id, num_layers))


def build_param_groups(
    model: torch.nn.Module,
    base_lr: float,
    vision_lr: float,
    weight_decay: float = 0.1,
    layer_decay: float = 0.9,
    layer_decay_target: str = "image_encoder.trunk",
    layer_decay_skip: Sequence[str] = ("*pos_embed*",),
    no_decay_on_bias_and_norm: bool = True,
) -> List[dict]:
    """Optimizer parameter groups (one per distinct lr/weight-decay pair).

    Each group carries ``name``, ``lr``, ``weight_decay`` and ``param_names``.
    """
    model = getattr(model, "module", model)
    norm_names = _norm_param_names(model) if no_decay_on_bias_and_norm else set()
    trunk = None
    if layer_decay != 1.0 and layer_decay_target:
        trunk = model.get_submodule(layer_decay_target)
        if not (hasattr(trunk, "get_layer_id") and hasattr(trunk, "get_num_layers")):
            raise ValueError(f"{layer_decay_target} has no get_layer_id/get_num_layers; set layer_decay: 1.0")
    groups: Dict[Tuple[str, float, float], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_vision = name.startswith("image_encoder.")
        lr = vision_lr if is_vision else base_lr
        if trunk is not None and name.startswith(layer_decay_target + "."):
            lr = lr * trunk_layer_scale(name, trunk, layer_decay, layer_decay_skip)
        no_decay = no_decay_on_bias_and_norm and (name.endswith("bias") or name in norm_names)
        wd = 0.0 if no_decay else weight_decay
        key = ("image_encoder" if is_vision else "other", lr, wd)
        group = groups.setdefault(key, {"name": f"{key[0]}_lr{lr:.3g}_wd{wd:g}", "params": [], "param_names": [],
                                        "lr": lr, "weight_decay": wd})
        group["params"].append(param)
        group["param_names"].append(name)
    if not groups:
        raise ValueError("no trainable parameters (is everything frozen?)")
    return list(groups.values())


def freeze_image_encoder(model: torch.nn.Module) -> int:
    """Stop gradients to the image encoder; returns how many parameters were frozen."""
    model = getattr(model, "module", model)
    count = 0
    for p in model.image_encoder.parameters():
        p.requires_grad_(False)
        count += p.numel()
    return count


@dataclass
class CosineSchedule:
    """lr multiplier at a step: linear warm-up, then cosine from 1 to ``final_lr_ratio``.

    A callable object (not a closure) so ``LambdaLR`` saves and restores it exactly.
    """

    total_steps: int
    warmup_steps: int = 0
    final_lr_ratio: float = 0.1

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return self.final_lr_ratio + (1 - self.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    final_lr_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step cosine schedule; call ``scheduler.step()`` after every optimizer step."""
    schedule = CosineSchedule(int(total_steps), int(warmup_steps), float(final_lr_ratio))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def clip_gradients(parameters, max_norm: float | None, norm_type: float = 2.0) -> torch.Tensor:
    """Clip in place and return the total norm before clipping (no clipping if max_norm is None)."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm is None or max_norm <= 0:
        norms = torch.stack([p.grad.detach().norm(norm_type) for p in params])
        return norms.norm(norm_type)
    return torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
