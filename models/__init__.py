"""SAM2 + TSMS: the memory spec, the model builder, checkpoint IO, the MS memory rule, the
video predictor and the tracking session."""

from models.build import build_model, build_tsms_sam2_video_predictor, compose_model_config
from models.checkpoint import (
    CheckpointError,
    describe_sam2_weights,
    load_model_weights,
    read_checkpoint,
    save_checkpoint,
)
from models.config import resolve_model_config
from models.memory_attention import TSMSMemoryAttention
from models.memory_pruning import frame_similarity, plan_pruning_groups, select_frames_to_prune
from models.memory_spec import MemorySpec, resolve_memory
from models.memory_stats import MemoryAttentionStats, record_memory_stats
from models.predictor import TSMSVideoPredictor
from models.session import FrameResult, TrackingSession
from models.speed import compile_predictor

__all__ = [
    "build_model",
    "build_tsms_sam2_video_predictor",
    "compose_model_config",
    "CheckpointError",
    "describe_sam2_weights",
    "load_model_weights",
    "read_checkpoint",
    "save_checkpoint",
    "resolve_model_config",
    "TSMSMemoryAttention",
    "frame_similarity",
    "plan_pruning_groups",
    "select_frames_to_prune",
    "MemorySpec",
    "resolve_memory",
    "MemoryAttentionStats",
    "record_memory_stats",
    "TSMSVideoPredictor",
    "FrameResult",
    "TrackingSession",
    "compile_predictor",
]
