"""What ``predict_video.py`` does, importable: build the predictor, find prompts, run videos."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from inference.distributed import join_inference_ranks, merge_and_summarise, run_shard
from inference.predict import VideoResult, check_output_dir, segment_video, write_summary
from inference.prompts import Prompt, build_prompts, read_label_png
from inference.video_sources import ImageFolderSource, is_live_spec, open_video_source
from models import build_tsms_sam2_video_predictor

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_predictor(args, device=None):
    memory_options = {}
    if args.memory_bank_size is not None:
        memory_options["memory_bank_size"] = args.memory_bank_size
    if args.pruning_threshold is not None:
        memory_options["pruning_threshold"] = args.pruning_threshold
    return build_tsms_sam2_video_predictor(
        config=args.model_cfg,
        ckpt_path=args.checkpoint,
        device=device if device is not None else pick_device(args.device),
        memory=args.memory,
        memory_options=memory_options or None,
    )


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


def run_predict_video(args) -> List[VideoResult]:
    """Run ``predict_video.py`` with parsed arguments; returns one result per video."""
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir)
    dist = join_inference_ranks(args.device)
    predictor = build_predictor(args, dist.device)
    jobs = []
    if args.dataset_dir:
        root = Path(args.dataset_dir)
        videos = sorted(p for p in (root / "JPEGImages").glob("*") if p.is_dir())
        if not videos:
            raise FileNotFoundError(root / "JPEGImages")
        for video_dir in videos:
            jobs.append((ImageFolderSource(video_dir), None, root / "Annotations" / video_dir.name))
    else:
        source = open_video_source(args.video_path, live=args.live)
        ann = None
        if args.prompt_type == "mask" and not args.mask_path and not args.prompts and not source.live:
            ann = vos_annotation_dir(Path(args.video_path))
        jobs.append((source, None if ann else build_prompts(args), ann))
    def run_job(job) -> VideoResult:
        source, prompts, ann_dir = job
        try:
            if prompts is None:
                prompts = vos_prompts(source, ann_dir, args.track_later_objects)
            log.info("segmenting %s (%s frames, %d objects)", source.name, "live" if source.live else len(source), len({p.obj_id for p in prompts}))
            return segment_video(
                predictor,
                source,
                prompts,
                output_dir,
                reverse=args.reverse,
                per_object=args.save_per_object,
                overlay=args.overlay,
                evict=not args.no_evict,
            )
        finally:
            if hasattr(source, "close"):
                source.close()

    run_info = {
        "checkpoint": args.checkpoint,
        "model_cfg": args.model_cfg,
        "memory": args.memory,
        "device": str(predictor.device),
        "live": bool(args.live or (args.video_path and is_live_spec(str(args.video_path)))),
    }
    # under torchrun each rank runs its share of the videos; rank 0 writes the summary
    sizes = [0 if job[0].live else len(job[0]) for job in jobs]
    outcome = run_shard(jobs, run_job, lambda job: job[0].name, sizes, dist, keep_going=len(jobs) > 1 or dist.enabled)
    merge_and_summarise(outcome, dist, write_summary, output_dir, run_info)
    return [outcome.results[i] for i in sorted(outcome.results)]
