"""TensorBoard logging (rank zero only): scalars and prediction-vs-ground-truth panels."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from data.transforms import IMAGENET_MEAN, IMAGENET_STD


GT_COLOUR = (0.1, 0.9, 0.2)
PRED_COLOUR = (0.95, 0.2, 0.1)


def _overlay(image: torch.Tensor, mask: torch.Tensor, colour, alpha: float = 0.5) -> torch.Tensor:
    """``image [3, H, W]`` in [0, 1] with ``mask [H, W]`` bool painted in ``colour``."""
    tint = torch.tensor(colour, dtype=image.dtype).view(3, 1, 1).expand_as(image)
    return torch.where(mask[None], (1 - alpha) * image + alpha * tint, image)


def prediction_panel(images: torch.Tensor, gt: torch.Tensor, pred_logits: torch.Tensor, max_frames: int = 8,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """A ``[3, 2H, F*W]`` image: ground truth (top row) and prediction (bottom row) per frame.

    Args:
        images: ``[T, 3, H, W]`` normalised frames of one clip.
        gt: ``[T, H, W]`` bool; pred_logits: ``[T, H, W]`` logits of one object.
    """
    images = images[:max_frames].detach().float().cpu()
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    images = (images * std_t + mean_t).clamp(0, 1)
    gt = gt[:max_frames].detach().cpu().bool()
    pred = (pred_logits[:max_frames].detach().float().cpu() > 0)
    top = torch.cat([_overlay(img, m, GT_COLOUR) for img, m in zip(images, gt)], dim=2)
    bottom = torch.cat([_overlay(img, m, PRED_COLOUR) for img, m in zip(images, pred)], dim=2)
    return torch.cat([top, bottom], dim=1)


class TensorBoardLogger:
    """A thin wrapper around ``SummaryWriter``; a no-op object on non-zero ranks."""

    def __init__(self, log_dir: Optional[Path], enabled: bool = True, flush_secs: int = 30):
        self.writer = None
        if enabled and log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir), flush_secs=flush_secs)

    def scalars(self, values: Dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}{key}", float(value), global_step=step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image, global_step=step, dataformats="CHW")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
