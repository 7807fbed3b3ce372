"""Validation during training: track held-out videos with our video predictor, score Dice.

Every object visible on a video's first annotated frame is prompted with its ground-truth
mask there; the predictor (the same weights, SAM2's inference path, MS memory included)
propagates it through the video. Dice is computed on every later annotated frame (an
empty prediction of an absent object scores 1), averaged per object, then per video, then
over videos.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from data.mask_io import list_frames
from data.vos_index import VideoRecord, scan_vos_root
from eval.metrics import dice_score
from models import TrackingSession, build_model, load_model_weights

log = logging.getLogger(__name__)


@dataclass
class ValidationResult:
    mean_dice: float
    per_video: Dict[str, float] = field(default_factory=dict)
    num_frames: int = 0


def _frame_positions(video: VideoRecord) -> Dict[int, int]:
    """Annotated frame number -> index in the folder's sorted JPEGs (what the predictor uses)."""
    folder = Path(video.frame_paths[0]).parent
    jpgs = [p for p in list_frames(folder) if p.suffix.lower() in (".jpg", ".jpeg")]
    by_path = {str(p): i for i, p in enumerate(jpgs)}
    positions = {}
    for number, path in zip(video.frame_ids, video.frame_paths):
        if str(Path(path)) in by_path:
            positions[number] = by_path[str(Path(path))]
    return positions


class VideoValidator:
    """Scores a training model on validation videos with :class:`models.TSMSVideoPredictor`.

    Args:
        root: a VOS tree (``JPEGImages/`` + ``Annotations/``) with JPEG frames.
        model_config: the resolved model config (a SAM2Base config, as saved in checkpoints).
        device: where to run.
        video_list: optional subset of video names (or a text file).
        max_videos: score at most this many videos (sorted by name).
        max_frames: track at most this many frames per video.
    """

    def __init__(self, root, model_config: DictConfig, device: torch.device, video_list=None,
                 max_videos: Optional[int] = None, max_frames: Optional[int] = None):
        self.videos: List[VideoRecord] = scan_vos_root(root, video_list=video_list)
        if max_videos:
            self.videos = self.videos[: int(max_videos)]
        self.max_frames = int(max_frames) if max_frames else None
        # a mapping config keeps its own memory: the one being trained
        self.predictor = build_model(config=OmegaConf.to_container(model_config, resolve=True), device=device,
                                     predictor=True)

    @torch.inference_mode()
    def score_video(self, video: VideoRecord) -> Optional[List[float]]:
        positions = _frame_positions(video)
        if not positions:
            log.warning("validation video %s has no JPEG frames; skipped", video.name)
            return None
        first_label = video.load_label(0)
        object_ids = [int(i) for i in np.unique(first_label) if i != 0]
        if not object_ids:
            log.warning("validation video %s shows no object on its first annotated frame; skipped", video.name)
            return None
        start = positions[video.frame_ids[0]]
        wanted = {positions[n]: i for i, n in enumerate(video.frame_ids) if n in positions}  # position -> record index
        scores: Dict[int, List[float]] = {obj_id: [] for obj_id in object_ids}
        with TrackingSession(self.predictor, os.path.dirname(video.frame_paths[0])) as session:
            for obj_id in object_ids:
                session.add_mask(start, obj_id, first_label == obj_id)
            for result in session.propagate(start_frame=start, max_frames=self.max_frames):
                if result.frame_idx == start or result.frame_idx not in wanted:
                    continue
                label = video.load_label(wanted[result.frame_idx])
                for obj_id, pred in zip(result.obj_ids, result.masks()):
                    scores[obj_id].append(dice_score(pred, label == obj_id))
        return [float(np.mean(v)) for v in scores.values() if v]

    def __call__(self, model: torch.nn.Module) -> ValidationResult:
        """Copy ``model``'s weights into the predictor and score every validation video."""
        model = getattr(model, "module", model)
        load_model_weights(self.predictor, model.state_dict(), source="training model")
        per_video, frames = {}, 0
        for video in self.videos:
            per_object = self.score_video(video)
            if per_object:
                per_video[video.name] = float(np.mean(per_object))
                frames += video.num_frames
        mean = float(np.mean(list(per_video.values()))) if per_video else float("nan")
        return ValidationResult(mean_dice=mean, per_video=per_video, num_frames=frames)
