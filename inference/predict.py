"""Segment videos end to end: prompts in, palette PNGs (and overlays, summaries) out.

Outputs of one run, under ``output_dir``:

* ``<video>/<frame>.png``: palette PNG per frame, value = object id (DAVIS layout);
* ``per_object/<video>/<obj_id>/<frame>.png`` with ``per_object=True``;
* ``overlays/<video>.mp4`` with ``overlay=True``;
* ``summary.json``: frames, objects, FPS, latency (live), attended memory tokens, peak memory.

Each video is written into a temporary folder and moved into place only when it is
complete (a live stream stopped by Ctrl-C or its end is complete up to its last frame), so
an error never leaves half-written results behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from data.mask_io import read_label_png
from inference.prompts import Prompt
from inference.writers import MaskWriter, OverlayWriter, logits_to_label_map
from models.session import TrackingSession
from utils.cli import UserError
from utils.io import atomic_write
from utils.resources import peak_rss_mb

log = logging.getLogger(__name__)


@dataclass
class VideoResult:
    """What one video's run produced (the ``summary.json`` entry)."""

    video: str
    frames: int
    frames_tracked: int
    objects: List[int]
    prompt_frames: Dict[int, List[int]]
    seconds: float
    fps: float
    live: bool = False
    interrupted: bool = False
    latency_ms: Optional[Dict[str, float]] = None
    attended_memory_tokens_mean: Optional[float] = None
    peak_rss_mb: float = 0.0
    peak_cuda_mb: Optional[float] = None
    extras: Dict[str, str] = field(default_factory=dict)


def check_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"output dir {output_dir} exists and is a file")


def _latency_stats(latencies: Sequence[float]) -> Optional[Dict[str, float]]:
    if not latencies:
        return None
    ms = sorted(1000.0 * x for x in latencies)
    return {"median": statistics.median(ms), "p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))], "max": ms[-1]}


class _VideoOutputs:
    """A video's outputs, staged in a temporary folder and published on success."""

    def __init__(self, output_dir: Path, video: str, per_object: bool):
        self.output_dir, self.video = output_dir, video
        self.tmp = output_dir / f".tmp-{video}-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.masks = MaskWriter(self.tmp / "masks", video, self.tmp / "per_object" if per_object else None)

    def publish(self) -> Dict[str, str]:
        staged = {
            "masks": (self.tmp / "masks" / self.video, self.output_dir / self.video),
            "per_object": (self.tmp / "per_object" / self.video, self.output_dir / "per_object" / self.video),
            "overlay": (self.tmp / "overlay.mp4", self.output_dir / "overlays" / f"{self.video}.mp4"),
        }
        published = {}
        for kind, (src, dst) in staged.items():
            if not src.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_dir():
                shutil.rmtree(dst)
            os.replace(src, dst)
            published[kind] = str(dst)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return published

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _first_prompt_frames(prompts: Sequence[Prompt]) -> Dict[int, int]:
    first: Dict[int, int] = {}
    for p in prompts:
        first[p.obj_id] = min(first.get(p.obj_id, p.frame_idx), p.frame_idx)
    return first


def _visible_labels(obj_ids, logits, frame_idx, first_frame, reverse, height, width) -> np.ndarray:
    """Without ``reverse``, an object has no mask before the frame it is first prompted on."""
    if not reverse:
        hidden = [i for i, obj in enumerate(obj_ids) if first_frame.get(obj, 0) > frame_idx]
        if hidden:
            logits = logits.clone()
            logits[hidden] = -1.0
    return logits_to_label_map(obj_ids, logits, height, width)


def segment_video(
    predictor,
    source,
    prompts: Sequence[Prompt],
    output_dir: Path,
    *,
    reverse: bool = False,
    per_object: bool = False,
    overlay: bool = False,
    evict: bool = True,
) -> VideoResult:
    """Track the prompted objects through ``source`` and write the outputs (module doc)."""
    output_dir = Path(output_dir)
    check_output_dir(output_dir)
    live = bool(getattr(source, "live", False))
    num_frames = None if live else len(source)
    for p in prompts:
        p.validate(source.height, source.width, num_frames)
    if live and len({p.frame_idx for p in prompts}) > 1:
        raise UserError("live mode takes prompts on a single frame")
    if live and reverse:
        raise UserError("--reverse needs a recorded video, not a live stream")
    output_dir.mkdir(parents=True, exist_ok=True)
    outputs = _VideoOutputs(output_dir, source.name, per_object)
    start = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        result = _track(predictor, source, prompts, outputs, reverse, overlay, evict, live, start)
    except BaseException:
        outputs.discard()
        raise
    result.extras = outputs.publish()
    return result


def _track(predictor, source, prompts, outputs, reverse, overlay, evict, live, start) -> VideoResult:
    h, w = source.height, source.width
    first_frame = _first_prompt_frames(prompts)
    overlay_writer = OverlayWriter(outputs.tmp / "overlay.mp4", source.fps, w, h) if overlay and live else None
    session = TrackingSession(predictor, source, evict_outputs=evict)
    applied = session.add_prompts(prompts)
    start_frame = min(applied)
    empty = np.zeros((h, w), dtype=np.uint8)
    if not reverse:
        for f in range(start_frame):  # nothing to track before the first prompt
            outputs.masks.write(source.frame_name(f), empty, [])
    written, latencies, interrupted = set(), [], False
    # With --reverse, frames before the last object's first prompt are written by the
    # backward pass, which starts there, so every object is tracked from its own prompt.
    reverse_start = max(first_frame.values()) if reverse else None
    obj_ids: List[int] = session.obj_ids
    try:
        for backwards in ([False, True] if reverse else [False]):
            begin = reverse_start if backwards else start_frame
            # sam2's propagate_in_video shows its own progress bar
            for frame in session.propagate(direction="reverse" if backwards else "forward", start_frame=begin):
                frame_idx, ids, logits = frame.frame_idx, frame.obj_ids, frame.mask_logits
                if frame_idx in written or (reverse and not backwards and frame_idx < reverse_start):
                    continue
                labels = _visible_labels(ids, logits, frame_idx, first_frame, reverse, h, w)
                outputs.masks.write(source.frame_name(frame_idx), labels, ids)
                written.add(frame_idx)
                if live:
                    arrived = source.arrival_time(frame_idx)
                    if arrived is not None:
                        latencies.append(time.perf_counter() - arrived)
                        log.debug("frame %d latency %.1f ms", frame_idx, 1000 * latencies[-1])
                    if overlay_writer is not None:
                        overlay_writer.write(source.read(frame_idx), labels)
    except KeyboardInterrupt:
        if not live:
            raise
        interrupted = True
        log.warning("interrupted: keeping the %d frames segmented so far", len(written))
    finally:
        if overlay_writer is not None:
            overlay_writer.close()
    seconds = time.perf_counter() - start
    total = start_frame + len(written) if live else len(source)
    if overlay and not live:
        _write_overlay_from_masks(source, outputs, total)
    tokens = session.mean_attended_tokens()
    session.close()
    result = VideoResult(
        video=source.name,
        frames=total,
        frames_tracked=len(written),
        objects=[int(o) for o in obj_ids],
        prompt_frames={int(k): v for k, v in applied.items()},
        seconds=round(seconds, 3),
        fps=round(len(written) / seconds, 3) if seconds > 0 else 0.0,
        live=live,
        interrupted=interrupted,
        latency_ms=_latency_stats(latencies),
        attended_memory_tokens_mean=round(tokens, 1) if tokens is not None else None,
        peak_rss_mb=round(peak_rss_mb(), 1),
        peak_cuda_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
    )
    if result.latency_ms:
        log.info("%s: per-frame latency median %.1f ms, p95 %.1f ms", source.name, result.latency_ms["median"], result.latency_ms["p95"])
    return result


def _write_overlay_from_masks(source, outputs: _VideoOutputs, total: int) -> None:
    """Offline overlays are rendered in frame order once all masks exist (reverse passes
    produce frames out of order)."""
    writer = OverlayWriter(outputs.tmp / "overlay.mp4", source.fps, source.width, source.height)
    try:
        for f in range(total):
            labels = read_label_png(outputs.masks.dir / f"{source.frame_name(f)}.png")
            writer.write(source.read(f), labels)
    finally:
        writer.close()


def write_summary(output_dir: Path, results: Sequence[VideoResult], run_info: dict) -> Path:
    from dataclasses import asdict

    summary = dict(run_info)
    summary["videos"] = [asdict(r) for r in results]
    summary["frames"] = sum(r.frames for r in results)
    summary["peak_rss_mb"] = round(peak_rss_mb(), 1)
    path = Path(output_dir) / "summary.json"
    with atomic_write(path) as f:
        json.dump(summary, f, indent=2)
    return path


