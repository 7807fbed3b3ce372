"""Inference: video sources, prompts, mask writers and the predict_video pipeline.

Names are imported on first use, so that ``inference.onnx_backend`` (no torch) can be
imported where torch is not installed.
"""

import importlib

_EXPORTS = {
    "VideoResult": "inference.predict",
    "run_videos": "inference.predict",
    "segment_video": "inference.predict",
    "write_summary": "inference.predict",
    "Prompt": "inference.prompts",
    "build_prompts": "inference.prompts",
    "parse_points": "inference.prompts",
    "prompts_from_json": "inference.prompts",
    "ImageFolderSource": "inference.video_sources",
    "StreamSource": "inference.video_sources",
    "VideoFileSource": "inference.video_sources",
    "open_video_source": "inference.video_sources",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'inference' has no attribute {name!r}")
