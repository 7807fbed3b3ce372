"""Aggregation: per frame -> per object -> per video -> overall.

* **Per object**: the mean over the scored frames of its video (both-empty frames = 1).
  J&F = (J + F) / 2 of those means (the same as the mean of per-frame J&F).
* **Per video**: the mean over its objects, and the std across its objects.
* **Overall, across objects** (the DAVIS "global" score): mean and std over every object
  of every video, pooled.
* **Overall, across videos**: mean and std of the per-video means.
* **Class metrics** (with a class map): per video from that video's frames, and overall
  from all scored frames of all videos pooled (the EndoVis convention).

Every std is the population standard deviation (``ddof=0``, NumPy's default).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from data.mask_io import natural_key
from eval.metrics import challenge_iou_per_frame, isinet_iou_per_frame, per_class_iou
from eval.scoring import VideoScores

logger = logging.getLogger(__name__)

METRICS = ("dice", "j", "f", "jf")
METRIC_LABELS = {"dice": "Dice", "j": "J", "f": "F", "jf": "J&F"}


@dataclass
class Summary:
    """Mean and population std (``ddof=0``) of ``n`` values; NaN when ``n == 0``."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return Summary(math.nan, math.nan, 0)
    return Summary(float(values.mean()), float(values.std()), int(values.size))


@dataclass
class ObjectResult:
    """One object: frame-mean scores and the per-frame values behind them."""

    video: str
    object_id: int
    class_name: Optional[str]
    scores: Dict[str, float]
    frames: Dict[str, np.ndarray]

    @property
    def n_frames(self) -> int:
        return len(self.frames["dice"])


@dataclass
class VideoResult:
    """One video: its objects, the mean and std across them, its class metrics."""

    name: str
    frames: List[str]
    objects: List[ObjectResult]
    summary: Dict[str, Summary]
    class_metrics: Optional[dict] = None
    missing_prediction: bool = False
    missing_frames: List[str] = field(default_factory=list)


@dataclass
class EvaluationResult:
    """Everything :func:`eval.evaluation.evaluate_predictions` computed, at every level."""

    videos: List[VideoResult]
    across_objects: Dict[str, Summary]
    across_videos: Dict[str, Summary]
    class_metrics: Optional[dict] = None
    settings: dict = field(default_factory=dict)
    scenarios: Optional[dict] = None  # eval.scenarios.scenario_report, with scenario metadata

    @property
    def objects(self) -> List[ObjectResult]:
        return [o for v in self.videos for o in v.objects]

    @property
    def n_frames(self) -> int:
        return sum(len(v.frames) for v in self.videos)


def object_result(video: str, object_id: int, frames: Dict[str, np.ndarray],
                  class_name: Optional[str] = None) -> ObjectResult:
    per_frame = {m: np.asarray(frames[m], np.float64) for m in ("dice", "j", "f")}
    per_frame["jf"] = (per_frame["j"] + per_frame["f"]) / 2.0
    scores = {m: float(per_frame[m].mean()) for m in METRICS}
    scores["jf"] = (scores["j"] + scores["f"]) / 2.0
    return ObjectResult(video, object_id, class_name, scores, per_frame)


def class_metrics_from_counts(classes: Sequence[str], counts: Dict[str, np.ndarray]) -> dict:
    """Challenge IoU, ISINet IoU, mcIoU and per-class IoU from ``[T, C]`` pixel counts."""
    inter, pred, gt = counts["intersection"], counts["pred_area"], counts["gt_area"]
    challenge = challenge_iou_per_frame(inter, pred, gt)
    isinet = isinet_iou_per_frame(inter, pred, gt)
    per_class = per_class_iou(inter, pred, gt)
    present = ~np.isnan(per_class)

    def nanmean(x):
        x = x[~np.isnan(x)]
        return float(x.mean()) if x.size else math.nan

    return {
        "challenge_iou": nanmean(challenge),
        "isinet_iou": nanmean(isinet),
        "mciou": nanmean(per_class),
        "per_class_iou": {c: float(v) for c, v, keep in zip(classes, per_class, present) if keep},
        "n_frames_challenge": int(np.count_nonzero(~np.isnan(challenge))),
        "n_frames_isinet": int(np.count_nonzero(~np.isnan(isinet))),
    }


def _pool_class_counts(videos: Sequence[VideoScores]):
    """Concatenate every video's ``[T, C]`` counts on the union of their class columns."""
    classes = sorted({c for v in videos for c in v.classes}, key=natural_key)
    column = {c: k for k, c in enumerate(classes)}
    pooled = {}
    for key in ("intersection", "pred_area", "gt_area"):
        parts = []
        for v in videos:
            block = np.zeros((len(v.frames), len(classes)), np.int64)
            block[:, [column[c] for c in v.classes]] = v.class_counts[key]
            parts.append(block)
        pooled[key] = np.concatenate(parts, axis=0)
    return classes, pooled


def aggregate(videos: Sequence[VideoScores], settings: Optional[dict] = None) -> EvaluationResult:
    """Turn raw per-frame scores into the per-object, per-video and overall summaries."""
    results: List[VideoResult] = []
    for v in videos:
        objects = [object_result(v.name, i, s, v.object_classes.get(i)) for i, s in sorted(v.objects.items())]
        if not objects:
            logger.warning("video %s has no ground-truth object to score; it is left out of the means", v.name)
        summary = {m: summarize([o.scores[m] for o in objects]) for m in METRICS}
        class_metrics = class_metrics_from_counts(v.classes, v.class_counts) if v.class_counts else None
        results.append(VideoResult(v.name, list(v.frames), objects, summary, class_metrics,
                                   v.missing_prediction, list(v.missing_frames)))
    all_objects = [o for r in results for o in r.objects]
    scored_videos = [r for r in results if r.objects]
    class_metrics = None
    with_classes = [v for v in videos if v.class_counts]
    if with_classes:
        class_metrics = class_metrics_from_counts(*_pool_class_counts(with_classes))
    return EvaluationResult(
        videos=results,
        across_objects={m: summarize([o.scores[m] for o in all_objects]) for m in METRICS},
        across_videos={m: summarize([r.summary[m].mean for r in scored_videos]) for m in METRICS},
        class_metrics=class_metrics,
        settings=dict(settings or {}),
    )
