"""SAM2 + TSMS: model building, checkpoint IO, the MS memory rule and the video predictor."""

from models.build import build_tsms_sam2, build_tsms_sam2_video_predictor, build_with_config, compose_model_config
from models.checkpoint import (
    CheckpointError,
    describe_sam2_weights,
    load_model_weights,
    read_checkpoint,
    save_checkpoint,
)
from models.config import resolve_model_config, set_memory
from models.memory_attention import MemoryAttentionStats, TSMSMemoryAttention
from models.memory_pruning import frame_similarity, plan_pruning_groups, select_frames_to_prune
from models.predictor import TSMSVideoPredictor, attended_tokens_per_frame

__all__ = [
    "build_tsms_sam2",
    "build_tsms_sam2_video_predictor",
    "build_with_config",
    "compose_model_config",
    "CheckpointError",
    "describe_sam2_weights",
    "load_model_weights",
    "read_checkpoint",
    "save_checkpoint",
    "resolve_model_config",
    "set_memory",
    "MemoryAttentionStats",
    "TSMSMemoryAttention",
    "frame_similarity",
    "plan_pruning_groups",
    "select_frames_to_prune",
    "TSMSVideoPredictor",
    "attended_tokens_per_frame",
]
