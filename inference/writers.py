"""Writing predictions as they are produced: palette PNGs, per-object PNGs, overlay video."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from data.mask_io import davis_palette, write_label_png



def logits_to_label_map(obj_ids: Sequence[int], logits: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Per-object mask logits ``[N, 1, H, W]`` -> id map ``[H, W]`` (highest positive logit wins)."""
    labels = np.zeros((height, width), dtype=np.uint8)
    if len(obj_ids) == 0:
        return labels
    scores = logits[:, 0].float()
    best = scores.argmax(dim=0)
    positive = scores.gather(0, best[None])[0] > 0
    ids = torch.as_tensor(list(obj_ids), dtype=torch.int64)
    labels[...] = torch.where(positive, ids[best], torch.zeros_like(best)).cpu().numpy()
    return labels


class MaskWriter:
    """Writes ``<root>/<video>/<frame>.png`` palette masks, and optionally per-object PNGs
    under ``<per_object_root>/<video>/<obj_id>/<frame>.png``."""

    def __init__(self, root: Path, video: str, per_object_root: Optional[Path] = None):
        self.dir = Path(root) / video
        self.dir.mkdir(parents=True, exist_ok=True)
        self.per_object_dir = Path(per_object_root) / video if per_object_root else None
        self.written = 0

    def write(self, frame_name: str, labels: np.ndarray, obj_ids: Sequence[int]) -> None:
        write_label_png(self.dir / f"{frame_name}.png", labels)
        if self.per_object_dir is not None:
            for obj_id in obj_ids:
                d = self.per_object_dir / str(obj_id)
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(((labels == obj_id) * 255).astype(np.uint8)).save(d / f"{frame_name}.png")
        self.written += 1


class OverlayWriter:
    """An mp4 of the frames with coloured masks and object ids at each object's centroid."""

    def __init__(self, path: Path, fps: float, width: int, height: int, alpha: float = 0.5):
        self.path = Path(path)
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            raise RuntimeError(f"cannot open video writer for {self.path}")
        self.alpha = alpha
        self.colors = davis_palette()

    def write(self, rgb: np.ndarray, labels: np.ndarray) -> None:
        out = rgb.astype(np.float32)
        for obj_id in np.unique(labels):
            if obj_id == 0:
                continue
            region = labels == obj_id
            color = self.colors[int(obj_id) % 256].astype(np.float32)
            out[region] = (1 - self.alpha) * out[region] + self.alpha * color
        bgr = cv2.cvtColor(out.astype(np.uint8), cv2.COLOR_RGB2BGR)
        for obj_id in np.unique(labels):
            if obj_id == 0:
                continue
            ys, xs = np.nonzero(labels == obj_id)
            org = (int(xs.mean()), int(ys.mean()))
            cv2.putText(bgr, str(int(obj_id)), org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        self.writer.write(bgr)

    def close(self) -> None:
        self.writer.release()
