"""Evaluation: metrics (Dice, J, F, J&F, EndoVis class IoUs), mask reading and scoring.

``python eval/evaluate.py --pred_dir ... --gt_dir ...`` is the command-line entry point;
:func:`evaluate_predictions` is the same thing as a function (not named ``evaluate``: that
name is the ``eval.evaluate`` CLI module). See docs/evaluation.md.
"""

from eval.aggregate import EvaluationResult, ObjectResult, Summary, VideoResult, aggregate
from eval.class_map import ClassMap, load_class_map
from eval.evaluation import EvaluationConfig, evaluate_predictions
from eval.masks import LabelFrame, MaskSetFrame, scan_video
from eval.metrics import (
    DAVIS_BOUND_TH,
    binary_mask_scores,
    boundary_f_score,
    boundary_map,
    boundary_tolerance,
    challenge_iou,
    challenge_iou_per_frame,
    class_iou_table,
    dice_from_counts,
    dice_score,
    iou_from_counts,
    iou_score,
    isinet_iou,
    isinet_iou_per_frame,
    j_and_f,
    mean_class_iou,
    per_class_iou,
)
from eval.report import format_table, result_to_dict, write_dice_plot, write_json, write_object_csv
from eval.scoring import ScoringOptions, SequenceScorer, VideoScores, score_label_sequence, score_video

__all__ = [
    "DAVIS_BOUND_TH",
    "ClassMap",
    "EvaluationConfig",
    "EvaluationResult",
    "LabelFrame",
    "MaskSetFrame",
    "ObjectResult",
    "ScoringOptions",
    "SequenceScorer",
    "Summary",
    "VideoResult",
    "VideoScores",
    "aggregate",
    "binary_mask_scores",
    "boundary_f_score",
    "boundary_map",
    "boundary_tolerance",
    "challenge_iou",
    "challenge_iou_per_frame",
    "class_iou_table",
    "dice_from_counts",
    "dice_score",
    "evaluate_predictions",
    "format_table",
    "iou_from_counts",
    "iou_score",
    "isinet_iou",
    "isinet_iou_per_frame",
    "j_and_f",
    "load_class_map",
    "mean_class_iou",
    "per_class_iou",
    "result_to_dict",
    "scan_video",
    "score_label_sequence",
    "score_video",
    "write_dice_plot",
    "write_json",
    "write_object_csv",
]
