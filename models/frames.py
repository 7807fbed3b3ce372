"""Lazy, model-ready frames: what SAM2's predictor indexes as ``inference_state["images"]``.

SAM2 preloads every frame of a video as a ``[T, 3, S, S]`` float tensor (12 GB for 1,000
frames at 1024 px). :class:`LazyFrameTensors` is indexed the same way but decodes a frame
only when the model asks for it and keeps just a few. Any source with ``read(idx)`` returning
an RGB ``uint8`` array, ``height``, ``width``, ``live`` and ``__len__`` works.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

IMG_MEAN = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
IMG_STD = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]

# A live stream's length is unknown; SAM2 only needs an upper bound.
LIVE_NUM_FRAMES = 2**31 - 1


class EndOfStream(Exception):
    """A live source ran out of frames."""

    def __init__(self, num_frames: int):
        super().__init__(f"end of stream after {num_frames} frames")
        self.num_frames = num_frames


def preprocess_frame(rgb: np.ndarray, image_size: int) -> torch.Tensor:
    """RGB ``uint8 [H, W, 3]`` -> normalised ``float32 [3, S, S]``, exactly as sam2's loader."""
    resized = np.array(Image.fromarray(rgb).resize((image_size, image_size))) / 255.0
    tensor = torch.from_numpy(resized).permute(2, 0, 1).float()
    return (tensor - IMG_MEAN) / IMG_STD


class LazyFrameTensors:
    """``frames[idx]`` decodes and preprocesses frame ``idx``; only ``cache_size`` are kept."""

    def __init__(self, source, image_size: int, cache_size: int = 2):
        self.source = source
        self.image_size = image_size
        self.cache_size = cache_size
        self._cache: "OrderedDict[int, torch.Tensor]" = OrderedDict()

    def __len__(self) -> int:
        return LIVE_NUM_FRAMES if getattr(self.source, "live", False) else len(self.source)

    def __getitem__(self, idx: int) -> torch.Tensor:
        if idx in self._cache:
            self._cache.move_to_end(idx)
            return self._cache[idx]
        tensor = preprocess_frame(self.source.read(idx), self.image_size)
        self._cache[idx] = tensor
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return tensor
