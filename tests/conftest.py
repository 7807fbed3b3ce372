"""Shared fixtures: a tiny random-weight SAM2 and a small synthetic two-object video."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.config import MINI_FROM_TINY_OVERRIDES

# Keep the 2 shared CI cores from oversubscribing.
torch.set_num_threads(min(2, os.cpu_count() or 1))

# The mini config as overrides on sam2's tiny config, so sam2's own builder can build it.
MINI_OVERRIDES = list(MINI_FROM_TINY_OVERRIDES)

VIDEO_HW = (96, 128)
NUM_FRAMES = 14


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def make_two_object_video(out_dir: Path, num_frames: int = NUM_FRAMES, hw=VIDEO_HW, seed: int = 0):
    """Two moving blobs on a textured background, as JPEG frames ``00000.jpg`` ...

    Returns the ground-truth masks ``{obj_id: bool[T, H, W]}``.
    """
    rng = np.random.default_rng(seed)
    h, w = hw
    out_dir.mkdir(parents=True, exist_ok=True)
    background = rng.integers(60, 120, size=(h, w, 3)).astype(np.uint8)
    background[..., 0] = np.clip(background[..., 0].astype(int) + 80, 0, 255)  # reddish
    masks = {1: np.zeros((num_frames, h, w), bool), 2: np.zeros((num_frames, h, w), bool)}
    for t in range(num_frames):
        img = background.copy()
        m1 = _disc(h, w, 30 + t, 20 + 5 * t, 12)
        m2 = _disc(h, w, 65 - t, 100 - 3 * t, 10) & ~m1
        img[m1] = (200, 200, 210)
        img[m2] = (40, 160, 60)
        masks[1][t], masks[2][t] = m1, m2
        Image.fromarray(img).save(out_dir / f"{t:05d}.jpg", quality=95)
    return masks


@pytest.fixture(scope="session")
def two_object_video(tmp_path_factory):
    video_dir = tmp_path_factory.mktemp("video") / "clip"
    masks = make_two_object_video(video_dir)
    return video_dir, masks


@pytest.fixture(scope="session")
def mini_checkpoint(tmp_path_factory):
    """An official-format (``{"model": state_dict}``) file with random mini weights."""
    from models import build_model

    torch.manual_seed(0)
    model = build_model(config="mini", memory="sam2")
    path = tmp_path_factory.mktemp("ckpt") / "mini_random.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture()
def one_torch_thread():
    """One intra-op thread for training-heavy tests: on 2 shared cores, 2 spinning threads
    per process are far slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def restore_logging():
    """CLI ``main()``s call ``setup_logging`` (handlers on pytest's captured stderr): undo it
    after every test, so no later test logs into a closed capture ("Logging error")."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
