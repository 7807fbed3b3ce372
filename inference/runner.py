"""What ``predict_video.py`` does, importable: build the predictor, find prompts, run videos."""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from data.mask_io import read_label_png
from inference.distributed import join_inference_ranks
from inference.outputs import output_lock
from inference.predict import VideoResult, check_output_dir, run_videos
from inference.prompts import Prompt, PromptSpec, build_prompts
from inference.video_sources import ImageFolderSource, is_live_spec, list_video_dirs, open_video_source
from models import build_model
from models.memory_spec import resolve_memory
from utils.device import resolve_device

log = logging.getLogger(__name__)


@dataclass
class PredictOptions:
    """Everything ``predict_video.py`` takes (its flags, same names and defaults).

    Give exactly one of ``video_path`` and ``dataset_dir``, and a ``checkpoint`` and/or a
    ``model_cfg``. ``memory`` / ``memory_bank_size`` / ``pruning_threshold`` choose the
    :class:`~models.memory_spec.MemorySpec` (``None``: the checkpoint's own).
    """

    video_path: Optional[str] = None
    dataset_dir: Optional[str] = None
    live: bool = False
    checkpoint: Optional[str] = None
    model_cfg: Optional[str] = None
    memory: Optional[str] = None
    memory_bank_size: Optional[int] = None
    pruning_threshold: Optional[float] = None
    device: str = "auto"
    dtype: str = "fp32"
    batch_objects: bool = False
    compile: bool = False
    prompt: PromptSpec = dataclasses.field(default_factory=PromptSpec)
    track_later_objects: bool = False
    output_dir: str = "./results"
    reverse: bool = False
    save_per_object: bool = False
    overlay: bool = False
    no_evict: bool = False
    backend: str = "torch"
    onnx_dir: Optional[str] = None

    @classmethod
    def from_namespace(cls, args) -> "PredictOptions":
        """From parsed CLI arguments (flags of other groups, e.g. ``--quiet``, are ignored)."""
        given = vars(args)
        names = {f.name for f in dataclasses.fields(cls)} - {"prompt"}
        prompt = PromptSpec(prompt_type=given.get("prompt_type", "mask"), mask_path=given.get("mask_path"),
                            box=given.get("box"), points=given.get("points"),
                            frame=given.get("prompt_frame", 0), json_path=given.get("prompts"))
        return cls(prompt=prompt, **{k: v for k, v in given.items() if k in names})


def build_predictor(options: PredictOptions, device=None):
    if options.backend == "onnxruntime":
        return build_onnx_predictor(options)
    return build_model(
        config=options.model_cfg,
        checkpoint=options.checkpoint,
        device=device if device is not None else resolve_device(options.device),
        memory=options.memory,
        memory_overrides={"memory_bank_size": options.memory_bank_size, "pruning_threshold": options.pruning_threshold},
        predictor=True,
        compile=options.compile,
    )


def build_onnx_predictor(options: PredictOptions):
    """The onnxruntime predictor of ``options.onnx_dir``; ``--memory`` and its flags choose
    the host-side memory rule (the export's by default; the bank size must be the export's)."""
    from inference.onnx_backend import OnnxVideoPredictor, read_manifest
    from models.memory_spec import MemorySpec

    exported = MemorySpec(**read_manifest(options.onnx_dir)["memory"])
    memory = MemorySpec.preset(options.memory).replace(memory_bank_size=exported.memory_bank_size) \
        if options.memory else exported
    spec = resolve_memory(memory, {"memory_bank_size": options.memory_bank_size,
                                   "pruning_threshold": options.pruning_threshold})
    predictor = OnnxVideoPredictor(options.onnx_dir, memory=spec.as_dict())
    predictor.memory_spec = spec
    return predictor


def vos_annotation_dir(video_dir: Path) -> Optional[Path]:
    """``<root>/JPEGImages/<video>`` -> ``<root>/Annotations/<video>`` if it exists."""
    video_dir = Path(video_dir)
    if video_dir.parent.name != "JPEGImages":
        return None
    ann = video_dir.parent.parent / "Annotations" / video_dir.name
    return ann if ann.is_dir() else None


def vos_prompts(source: ImageFolderSource, ann_dir: Path, later_objects: bool = False) -> List[Prompt]:
    """First-frame ground truth as mask prompts, as SAM2's VOS evaluation does.

    With ``later_objects``, an object absent from the first annotated frame is prompted
    with its mask on the first frame it appears in.
    """
    names = {source.frame_name(i): i for i in range(len(source))}
    ann_files = sorted((p for p in ann_dir.glob("*.png") if p.stem in names), key=lambda p: names[p.stem])
    if not ann_files:
        raise FileNotFoundError(ann_dir / f"{source.frame_name(0)}.png")
    prompts, seen = [], set()
    for path in ann_files if later_objects else ann_files[:1]:
        labels = read_label_png(path)
        for obj_id in (int(i) for i in np.unique(labels) if i != 0 and int(i) not in seen):
            prompts.append(Prompt(obj_id=obj_id, frame_idx=names[path.stem], mask=labels == obj_id))
            seen.add(obj_id)
    return prompts


def _vos_job(video_dir: Path, ann_dir: Path, later_objects: bool):
    source = ImageFolderSource(video_dir)
    return source, vos_prompts(source, ann_dir, later_objects)


def run_predict_video(options: PredictOptions) -> List[VideoResult]:
    """Run ``predict_video.py``; returns one result per video (this rank's, under torchrun)."""
    output_dir = Path(options.output_dir)
    check_output_dir(output_dir)
    dist = join_inference_ranks(options.device)
    with output_lock(output_dir, dist):  # before the model is built: a second run is refused at once
        return _run(options, output_dir, dist)


def _run(options: PredictOptions, output_dir: Path, dist) -> List[VideoResult]:
    predictor = build_predictor(options, dist.device)
    if options.dataset_dir:
        images = Path(options.dataset_dir) / "JPEGImages"
        videos = list_video_dirs(images) if images.is_dir() else []  # hidden folders are never videos
        if not videos:
            raise FileNotFoundError(images)
        ann_root = Path(options.dataset_dir) / "Annotations"
        jobs = [(d.name, partial(_vos_job, d, ann_root / d.name, options.track_later_objects)) for d in videos]
        sizes = [sum(1 for _ in d.iterdir()) for d in videos]  # frames, to balance the ranks
    else:
        source = open_video_source(options.video_path, live=options.live)
        ann = None
        if options.prompt.wants_vos_annotations and not source.live:
            ann = vos_annotation_dir(Path(options.video_path))
        prompts = vos_prompts(source, ann, options.track_later_objects) if ann else build_prompts(options.prompt)
        jobs, sizes = [(source.name, lambda: (source, prompts))], [1]
    run_info = {
        "backend": options.backend,
        "onnx_dir": options.onnx_dir,
        "checkpoint": options.checkpoint,
        "model_cfg": options.model_cfg,
        "memory": predictor.memory_spec.describe(),
        "memory_spec": predictor.memory_spec.as_dict(),
        "device": str(predictor.device),
        "live": bool(options.live or (options.video_path and is_live_spec(str(options.video_path)))),
    }
    return run_videos(predictor, jobs, output_dir, run_info, dist=dist, sizes=sizes, reverse=options.reverse,
                      per_object=options.save_per_object, overlay=options.overlay, evict=not options.no_evict,
                      dtype=options.dtype, batch_objects=options.batch_objects)
