"""Per-frame scoring of one video: every ground-truth object, every scored frame.

An object is scored on every scored frame of its video, including frames where it is
absent from both the ground truth and the prediction; those count as 1 for Dice, J and F
(the DAVIS convention, and SurgSAM-2's per-frame Dice). The objects of a video are the
ids found in *any* of its ground-truth frames, skipped frames included (the prompted first
frame defines the objects). Predicted ids that never occur in the ground truth are not
objects: they only count towards the class metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence

import numpy as np

from eval.class_map import ClassMap
from data.mask_io import natural_key
from eval.masks import LabelFrame, empty_frame, scan_video
from eval.metrics import DAVIS_BOUND_TH, binary_mask_scores, region_counts
from utils.errors import UserError

logger = logging.getLogger(__name__)

FRAME_METRICS = ("dice", "j", "f")


@dataclass(frozen=True)
class ScoringOptions:
    """What to score. ``objects``: restrict to these ids (others count as background)."""

    skip_first: bool = False
    skip_last: bool = False
    allow_missing: bool = False
    objects: Optional[FrozenSet[int]] = None
    bound_th: float = DAVIS_BOUND_TH


@dataclass
class VideoScores:
    """Raw per-frame scores of one video.

    frames: the scored frame names ``[T]``. objects: ``{id: {"dice"|"j"|"f": float [T]}}``
    for each ground-truth object. object_classes: ``{id: class}`` (with a class map).
    classes ``[C]`` and class_counts ``{"intersection"|"pred_area"|"gt_area": int64 [T, C]}``
    feed the class metrics (empty without a class map). missing_prediction: the whole video
    had no prediction folder; missing_frames: frames scored as empty predictions;
    extra_frames: predicted frames with no ground-truth frame (not scored).
    """

    name: str
    frames: List[str]
    objects: Dict[int, Dict[str, np.ndarray]]
    object_classes: Dict[int, str] = field(default_factory=dict)
    classes: List[str] = field(default_factory=list)
    class_counts: Dict[str, np.ndarray] = field(default_factory=dict)
    missing_prediction: bool = False
    missing_frames: List[str] = field(default_factory=list)
    extra_frames: List[str] = field(default_factory=list)  # predicted frames without ground truth


def select_frames(names: Sequence[str], skip_first: bool, skip_last: bool) -> List[str]:
    """The frames to score: ``names`` without the first and/or the last one."""
    start = 1 if skip_first else 0
    stop = len(names) - 1 if skip_last else len(names)
    return list(names[start:max(stop, start)])


class SequenceScorer:
    """Accumulates per-object Dice/J/F and per-class pixel counts over ``n_frames`` frames."""

    def __init__(self, n_frames: int, objects: Optional[FrozenSet[int]] = None,
                 bound_th: float = DAVIS_BOUND_TH, class_table: Optional[Dict[int, str]] = None):
        self.n_frames = n_frames
        self.objects = objects
        self.bound_th = bound_th
        self.gt_ids: set = set()
        self._scores: Dict[int, Dict[str, np.ndarray]] = {}
        self.class_table = class_table
        self.classes: List[str] = []
        if class_table is not None:
            self.classes = sorted(set(class_table.values()), key=natural_key)
            index = {c: k + 1 for k, c in enumerate(self.classes)}
            # lut: id -> class column + 1; 0 = background or not selected; -1 = unmapped
            self._lut = np.full(256, -1, dtype=np.int64)
            self._lut[0] = 0
            for object_id, name in class_table.items():
                self._lut[object_id] = index[name]
            if objects is not None:
                keep = np.zeros(256, dtype=bool)
                keep[[i for i in objects if 0 < i < 256]] = True
                self._lut[~keep] = 0
            c = len(self.classes)
            self._counts = {k: np.zeros((n_frames, c), np.int64) for k in ("intersection", "pred_area", "gt_area")}

    def _selected(self, ids) -> List[int]:
        return [i for i in ids if self.objects is None or i in self.objects]

    def observe_ground_truth(self, gt) -> None:
        """Record the objects of a ground-truth frame that is not scored (skipped)."""
        self.gt_ids.update(self._selected(gt.object_ids()))

    def add(self, t: int, pred, gt, pred_name: str = "prediction", gt_name: str = "ground truth") -> None:
        """Score frame ``t`` (``pred``/``gt``: LabelFrame or MaskSetFrame of equal shape)."""
        gt_ids = self._selected(gt.object_ids())
        self.gt_ids.update(gt_ids)
        for object_id in sorted(set(gt_ids) | set(self._selected(pred.object_ids()))):
            scores = self._scores.get(object_id)
            if scores is None:
                scores = self._scores[object_id] = {m: np.ones(self.n_frames) for m in FRAME_METRICS}
            d, j, f = binary_mask_scores(pred.mask(object_id), gt.mask(object_id), self.bound_th)
            scores["dice"][t], scores["j"][t], scores["f"][t] = d, j, f
        if self.class_table is not None:
            self._add_class_counts(t, pred, gt, pred_name, gt_name)

    def _check_mapped(self, frame, name: str) -> None:
        unmapped = [i for i in frame.object_ids() if self._lut[i] < 0]
        if unmapped:
            raise UserError(f"class map has no class for object id {unmapped[0]} (found in {name})")

    def _add_class_counts(self, t, pred, gt, pred_name, gt_name) -> None:
        self._check_mapped(gt, gt_name)
        self._check_mapped(pred, pred_name)
        c = len(self.classes)
        if isinstance(pred, LabelFrame) and isinstance(gt, LabelFrame):
            # One joint histogram of (gt class, pred class) gives every count at once.
            joint = np.bincount((self._lut[gt.labels] * (c + 1) + self._lut[pred.labels]).ravel(),
                                minlength=(c + 1) ** 2).reshape(c + 1, c + 1)
            self._counts["intersection"][t] = np.diagonal(joint)[1:]
            self._counts["gt_area"][t] = joint.sum(axis=1)[1:]
            self._counts["pred_area"][t] = joint.sum(axis=0)[1:]
            return
        for k in range(c):
            ids = np.flatnonzero(self._lut == k + 1)
            inter, p_area, g_area = region_counts(pred.union_mask(ids), gt.union_mask(ids))
            self._counts["intersection"][t, k] = inter
            self._counts["pred_area"][t, k] = p_area
            self._counts["gt_area"][t, k] = g_area

    def object_scores(self) -> Dict[int, Dict[str, np.ndarray]]:
        """``{id: {"dice"|"j"|"f": [T]}}`` for every ground-truth object seen so far."""
        out = {}
        for object_id in sorted(self.gt_ids):
            out[object_id] = self._scores.get(object_id) or {m: np.ones(self.n_frames) for m in FRAME_METRICS}
        return out

    def class_counts(self) -> Dict[str, np.ndarray]:
        return dict(self._counts) if self.class_table is not None else {}


def score_label_sequence(gt_labels, pred_labels, bound_th: float = DAVIS_BOUND_TH,
                         objects: Optional[FrozenSet[int]] = None) -> Dict[int, Dict[str, np.ndarray]]:
    """Score in-memory id maps ``[T, H, W]`` (uint8): ``{id: {"dice"|"j"|"f": [T]}}``."""
    gt_labels, pred_labels = np.asarray(gt_labels, np.uint8), np.asarray(pred_labels, np.uint8)
    if gt_labels.shape != pred_labels.shape or gt_labels.ndim != 3:
        raise ValueError(f"expected two [T, H, W] id maps of equal shape, got {gt_labels.shape}, {pred_labels.shape}")
    scorer = SequenceScorer(len(gt_labels), objects=objects, bound_th=bound_th)
    for t, (g, p) in enumerate(zip(gt_labels, pred_labels)):
        scorer.add(t, LabelFrame(p), LabelFrame(g))
    return scorer.object_scores()


def score_video(name: str, gt_root: Path, pred_root: Path, options: ScoringOptions,
                class_map: Optional[ClassMap] = None) -> VideoScores:
    """Read and score one video. Runs in a worker process; raises :class:`UserError`."""
    gt = scan_video(Path(gt_root) / name)
    if gt.layout == "empty":
        raise UserError(f"ground-truth video {gt.path} contains no mask PNGs")
    pred_path = Path(pred_root) / name
    pred = scan_video(pred_path) if pred_path.is_dir() else None
    if pred is None and not options.allow_missing:
        raise UserError(f"video {name!r} is in the ground truth but not in the predictions "
                        f"({pred_root}); pass --allow_missing to score it as empty predictions")
    names = gt.frame_names()
    scored = select_frames(names, options.skip_first, options.skip_last)
    if not scored:
        raise UserError(f"video {name!r} has {len(names)} ground-truth frame(s); none left after skipping")
    class_table = class_map.for_video(name) if class_map is not None else None
    scorer = SequenceScorer(len(scored), options.objects, options.bound_th, class_table)
    for stem in sorted(set(names) - set(scored), key=natural_key):
        scorer.observe_ground_truth(gt.load(stem))
    missing = []
    for t, stem in enumerate(scored):
        gt_frame, gt_file = gt.load(stem), gt.frame_file(stem)
        if pred is not None and pred.has_frame(stem):
            pred_frame = pred.load(stem, reference=(gt_frame.shape, gt_file))
            pred_file = pred.frame_file(stem)
        elif options.allow_missing:
            pred_frame, pred_file = empty_frame(gt_frame.shape), "missing prediction"
            missing.append(stem)
        else:
            raise UserError(f"no prediction for frame {stem!r} of video {name!r} in {pred_path} "
                            f"(ground truth {gt_file}); pass --allow_missing to score it as empty")
        scorer.add(t, pred_frame, gt_frame, str(pred_file), str(gt_file))
    if missing and pred is not None:
        logger.warning("video %s: %d frame(s) without prediction scored as empty", name, len(missing))
    objects = scorer.object_scores()
    return VideoScores(
        name=name,
        frames=scored,
        objects=objects,
        object_classes={i: class_table[i] for i in objects if class_table and i in class_table},
        classes=scorer.classes,
        class_counts=scorer.class_counts(),
        missing_prediction=pred is None,
        missing_frames=missing,
        extra_frames=[] if pred is None else sorted(set(pred.frame_names()) - set(names), key=natural_key),
    )
