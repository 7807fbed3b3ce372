"""Data for TSMS-SAM2: VOS datasets, temporal samplers (TS), clip transforms, EndoVis
preparation and synthetic surgical videos. See docs/data.md."""

from data.collate import ClipBatch, collate_clips
from data.mask_io import davis_palette, read_label_png, write_label_png
from data.motion_sampler import MotionAdaptiveTemporalSampler, VideoMotion, estimate_motion
from data.samplers import ClipIndices, MultiScaleTemporalSampler, TemporalSampler, UniformTemporalSampler
from data.transforms import ClipTransforms
from data.vos_dataset import VideoClip, VOSDataset
from data.vos_index import VideoRecord, scan_vos_root

__all__ = [
    "ClipBatch",
    "ClipIndices",
    "ClipTransforms",
    "MotionAdaptiveTemporalSampler",
    "MultiScaleTemporalSampler",
    "TemporalSampler",
    "UniformTemporalSampler",
    "VOSDataset",
    "VideoClip",
    "VideoMotion",
    "VideoRecord",
    "collate_clips",
    "davis_palette",
    "estimate_motion",
    "read_label_png",
    "scan_vos_root",
    "write_label_png",
]
