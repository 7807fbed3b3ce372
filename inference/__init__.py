"""Inference: video sources, prompts, mask writers and the predict_video pipeline."""

from inference.predict import VideoResult, run_videos, segment_video, write_summary
from inference.prompts import Prompt, build_prompts, parse_points, prompts_from_json
from inference.video_sources import ImageFolderSource, StreamSource, VideoFileSource, open_video_source

__all__ = [
    "VideoResult",
    "run_videos",
    "segment_video",
    "write_summary",
    "Prompt",
    "build_prompts",
    "parse_points",
    "prompts_from_json",
    "ImageFolderSource",
    "StreamSource",
    "VideoFileSource",
    "open_video_source",
]
