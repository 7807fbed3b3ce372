"""The committed trained mini checkpoint (tests/assets/mini_trained.pt) and held-out
synthetic videos to track with it: the tests that see whether tracking works.

The file is the quickstart's recipe (tests/assets/mini_trained.md: command, sha256, Dice),
stored as an fp16 state dict (4.6 MB) that loads into the fp32 model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from data.mask_io import list_frames, read_label_png
from inference.video_sources import ImageFolderSource

ASSETS = Path(__file__).resolve().parent / "assets"
TRAINED_CHECKPOINT = ASSETS / "mini_trained.pt"
TRAINED_SHA256 = "41220e546c3a643b2b7b7eb7ceee97b56c09f277b4682bcd3451b472ec5cdfed"
HELD_OUT_SEED = 7777  # training used seeds 0 (train), 1000 (val), 2000 (quickstart test)


def write_held_out_videos(root: Path, num_videos: int = 4, num_frames: int = 24) -> Path:
    """Synthetic surgical videos of the quickstart's kind, from a seed training never saw."""
    from data.synthetic_video import write_synthetic_dataset

    write_synthetic_dataset(root, num_videos=num_videos, num_frames=num_frames, seed=HELD_OUT_SEED,
                            speed="mixed", size=(128, 128), write_mp4=False, progress=False)
    return root


def first_frame_masks(labels: np.ndarray) -> Dict[int, np.ndarray]:
    return {int(i): labels == i for i in np.unique(labels) if i > 0}


def track_videos(predictor, root: Path, **session_kwargs) -> Dict[str, dict]:
    """Track every video of ``root`` from its first-frame ground-truth masks; returns
    ``{video: {"pred": {obj: bool[T, H, W]}, "gt": {obj: bool[T, H, W]}}}``."""
    from models import TrackingSession

    out = {}
    for video in sorted(p for p in (root / "JPEGImages").iterdir() if p.is_dir()):
        gt_labels = np.stack([read_label_png(p) for p in list_frames(root / "Annotations" / video.name)])
        gt = {o: gt_labels == o for o in first_frame_masks(gt_labels[0])}
        session = TrackingSession(predictor, ImageFolderSource(video), **session_kwargs)
        for obj_id in gt:
            session.add_mask(0, obj_id, gt[obj_id][0])
        pred = {o: np.zeros_like(m) for o, m in gt.items()}
        for r in session.propagate():
            for obj_id in gt:
                pred[obj_id][r.frame_idx] = r.mask(obj_id)
        out[video.name] = {"pred": pred, "gt": gt}
    return out


def dice_per_object(tracked: Dict[str, dict]) -> List[float]:
    """Dice of every object, averaged over its frames after the prompted one (as
    ``eval/evaluate.py --skip_first``; 1 where prediction and truth are both empty)."""
    from eval.metrics import dice_score

    return [float(np.mean(dice_score(v["pred"][o][1:], v["gt"][o][1:]))) for v in tracked.values() for o in v["gt"]]
