"""Clip-consistent augmentation built on ``torchvision.transforms.v2`` and ``tv_tensors``.

The whole clip is passed as one ``tv_tensors.Video`` ``[T, 3, H, W]`` together with one
``tv_tensors.Mask`` ``[T, N, H, W]``, so every v2 transform draws its random parameters
once and applies them to every frame and every mask: same flip, same affine, same resize,
same colour jitter. Masks always use nearest interpolation (v2 does this for ``Mask``) and
stay binary. Order (as SAM2's training recipe): horizontal flip, affine (degrees, shear),
square resize, colour jitter, grayscale, to float, normalize.

Randomness comes from the caller's ``numpy.random.Generator``: a seed is drawn from it and
the v2 pipeline runs under ``torch.random.fork_rng`` seeded with it, so a clip's
augmentation is a pure function of ``(seed, epoch, index)`` and never touches the global
torch RNG.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


class ClipTransforms:
    """Augment (or just resize and normalize) a clip with shared parameters.

    Args:
        resolution: output side length; frames and masks are resized to ``resolution x
            resolution`` (SAM2 trains at 1024). ``None`` keeps the input size.
        augment: ``False`` gives the evaluation pipeline: resize + normalize only.
        hflip_prob: probability of a horizontal flip.
        degrees: rotation range ``[-degrees, degrees]``.
        shear: x-shear range ``[-shear, shear]`` in degrees.
        affine_prob: probability of applying the affine at all.
        brightness, contrast, saturation, hue: colour-jitter ranges (torchvision meaning).
        grayscale_prob: probability of converting the clip to grayscale (3 channels kept).
        normalize: subtract ``mean`` and divide by ``std`` after scaling to [0, 1].
        interpolation: image interpolation for affine and resize
            (``bilinear``/``bicubic``/``nearest``); masks are always nearest.
    """

    def __init__(
        self,
        resolution: Optional[int] = 1024,
        augment: bool = True,
        hflip_prob: float = 0.5,
        degrees: float = 25.0,
        shear: float = 20.0,
        affine_prob: float = 1.0,
        brightness: float = 0.1,
        contrast: float = 0.03,
        saturation: float = 0.03,
        hue: float = 0.0,
        grayscale_prob: float = 0.05,
        normalize: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        interpolation: str = "bilinear",
    ):
        if interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}, got {interpolation!r}")
        mode = _INTERPOLATION[interpolation]
        self.resolution = None if resolution is None else int(resolution)
        self.augment = bool(augment)
        steps = []
        if self.augment:
            if hflip_prob > 0:
                steps.append(v2.RandomHorizontalFlip(p=float(hflip_prob)))
            if affine_prob > 0 and (degrees > 0 or shear > 0):
                affine = v2.RandomAffine(
                    degrees=float(degrees), shear=float(shear) if shear else None, interpolation=mode
                )
                steps.append(affine if affine_prob >= 1 else v2.RandomApply([affine], p=float(affine_prob)))
        if self.resolution is not None:
            steps.append(v2.Resize((self.resolution, self.resolution), interpolation=mode, antialias=True))
        if self.augment:
            if any(float(v) > 0 for v in (brightness, contrast, saturation, hue)):
                steps.append(
                    v2.ColorJitter(
                        brightness=float(brightness) or None,
                        contrast=float(contrast) or None,
                        saturation=float(saturation) or None,
                        hue=float(hue) or None,
                    )
                )
            if grayscale_prob > 0:
                steps.append(v2.RandomGrayscale(p=float(grayscale_prob)))
        steps.append(v2.ToDtype({tv_tensors.Video: torch.float32, "others": None}, scale=True))
        if normalize:
            steps.append(v2.Normalize(mean=[float(m) for m in mean], std=[float(s) for s in std]))
        self.pipeline = v2.Compose(steps)

    def __call__(
        self, frames: torch.Tensor, masks: torch.Tensor, rng: Optional[np.random.Generator] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Transform one clip.

        Args:
            frames: ``[T, 3, H, W]`` uint8 RGB.
            masks: ``[T, N, H, W]`` bool (N may be 0).
            rng: source of randomness; ``None`` uses a fresh unseeded generator.
        Returns:
            ``(frames [T, 3, S, S] float32, masks [T, N, S, S] bool)`` with ``S = resolution``.
        """
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [T, 3, H, W], got {tuple(frames.shape)}")
        if masks.ndim != 4 or masks.shape[0] != frames.shape[0] or masks.shape[-2:] != frames.shape[-2:]:
            raise ValueError(
                f"masks must be [T, N, H, W] matching frames {tuple(frames.shape)}, got {tuple(masks.shape)}"
            )
        rng = rng if rng is not None else np.random.default_rng()
        seed = int(rng.integers(0, 2**63 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            video, mask = self.pipeline(tv_tensors.Video(frames), tv_tensors.Mask(masks.to(torch.uint8)))
        return video.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).bool()

    def __repr__(self) -> str:
        return f"ClipTransforms(resolution={self.resolution}, augment={self.augment}, pipeline={self.pipeline})"
