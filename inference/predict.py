"""Segment videos end to end: prompts in, palette PNGs (and overlays, summaries) out.

Outputs of one run, under ``output_dir``:

* ``<video>/<frame>.png``: palette PNG per frame, value = object id (DAVIS layout);
* ``per_object/<video>/<obj_id>/<frame>.png`` with ``per_object=True``;
* ``overlays/<video>.mp4`` with ``overlay=True``;
* ``summary.json``: frames, objects, FPS, latency (live), attended memory tokens, peak memory.

Each video is written into a hidden staging folder and moved into place only when it is
complete (a live stream stopped by Ctrl-C or its end is complete up to its last frame), so
an error never leaves half-written results behind; what may be replaced, and where, is the
business of :mod:`inference.outputs`. :func:`run_videos` runs several videos and writes the
summary even when a video fails or the run is interrupted.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from data.mask_io import read_label_png
from inference.outputs import (VideoOutputs, check_output_dir, check_summary, clean_stale_staging,
                               make_output_dir, merge_summary, output_lock, sigterm_as_interrupt, video_output_name)
from inference.distributed import ShardOutcome, merge_and_summarise, one_line_error, shard_jobs
from inference.prompts import Prompt
from inference.writers import MaskWriter, OverlayWriter, logits_to_label_map
from models.session import TrackingSession
from utils.distributed import DistInfo
from utils.errors import UserError
from utils.io import name_path
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


def _latency_stats(latencies: Sequence[float]) -> Optional[Dict[str, float]]:
    if not latencies:
        return None
    ms = sorted(1000.0 * x for x in latencies)
    return {"median": statistics.median(ms), "p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))], "max": ms[-1]}


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
    dtype: str = "fp32",
    batch_objects: bool = False,
) -> VideoResult:
    """Track the prompted objects through ``source`` and write the outputs (module doc).

    ``evict``, ``dtype`` and ``batch_objects`` go to :class:`models.session.TrackingSession`.
    """
    output_dir = Path(output_dir)
    check_output_dir(output_dir)
    video_output_name(source.name, getattr(source, "origin", None))
    live = bool(getattr(source, "live", False))
    num_frames = None if live else len(source)
    for p in prompts:
        p.validate(source.height, source.width, num_frames)
    if live and len({p.frame_idx for p in prompts}) > 1:
        raise UserError("live mode takes prompts on a single frame")
    if live and reverse:
        raise UserError("--reverse needs a recorded video, not a live stream")
    make_output_dir(output_dir)
    clean_stale_staging(output_dir)
    with sigterm_as_interrupt():
        outputs = VideoOutputs(output_dir, source.name, per_object, overlay)
        start = time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        try:
            writer = MaskWriter(outputs.tmp / "masks", source.name, outputs.tmp / "per_object" if per_object else None)
            session_options = dict(evict_outputs=evict, dtype=dtype, batch_objects=batch_objects)
            result = _track(predictor, source, prompts, outputs, writer, reverse, overlay, live, start, session_options)
            result.extras = outputs.publish()
        except BaseException as exc:
            outputs.discard()
            name_path(exc, output_dir, outputs.tmp)  # a full disk names the output folder
            raise
    return result


def _track(predictor, source, prompts, outputs, masks, reverse, overlay, live, start, session_options) -> VideoResult:
    h, w = source.height, source.width
    first_frame = _first_prompt_frames(prompts)
    overlay_writer = OverlayWriter(outputs.overlay_path, source.fps, w, h) if overlay and live else None
    session = TrackingSession(predictor, source, **session_options)
    applied = session.add_prompts(prompts)
    start_frame = min(applied)
    empty = np.zeros((h, w), dtype=np.uint8)
    if not reverse:
        for f in range(start_frame):  # nothing to track before the first prompt
            masks.write(source.frame_name(f), empty, [])
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
                masks.write(source.frame_name(frame_idx), labels, ids)
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
        _write_overlay_from_masks(source, outputs, masks, total)
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


def _write_overlay_from_masks(source, outputs: VideoOutputs, masks: MaskWriter, total: int) -> None:
    """Offline overlays are rendered in frame order once all masks exist (reverse passes
    produce frames out of order)."""
    writer = OverlayWriter(outputs.overlay_path, source.fps, source.width, source.height)
    try:
        for f in range(total):
            labels = read_label_png(masks.dir / f"{source.frame_name(f)}.png")
            writer.write(source.read(f), labels)
    finally:
        writer.close()


def write_summary(output_dir: Path, results: Sequence[VideoResult], run_info: dict) -> Path:
    """Add this run's videos to ``<output_dir>/summary.json`` (locked, merged: see inference.outputs)."""
    run = dict(run_info)
    run["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return merge_summary(Path(output_dir), run, [asdict(r) for r in results])


VideoJob = Tuple[str, Callable[[], tuple]]


def run_videos(predictor, jobs: Sequence[VideoJob], output_dir: Path, run_info: dict, *,
               dist: Optional[DistInfo] = None, sizes: Optional[Sequence[int]] = None, **options) -> List[VideoResult]:
    """Segment ``jobs`` and write ``summary.json``, also when a video fails or on Ctrl-C/SIGTERM.

    A job is ``(name, open)``, where ``open()`` returns ``(source, prompts)``, so that a video
    which cannot even be opened is the one named. Every name is checked before the first
    video starts. Under torchrun (``dist``) each rank takes its share of the jobs (``sizes``:
    frames per job, for balancing) and rank 0 writes one merged summary. With several jobs
    a failing video is recorded (``failed`` in the summary) and the others go on; the run
    then ends with one error naming it. A second run into the same folder while this one
    runs is refused (:func:`inference.outputs.output_lock`). Ctrl-C stops at once: the
    summary records the videos finished and ``interrupted_during``. ``options`` go to
    :func:`segment_video`.
    """
    output_dir = Path(output_dir)
    make_output_dir(output_dir)
    dist = dist or DistInfo(0, 1, 0, torch.device("cpu"))
    with output_lock(output_dir, dist):  # one run per output folder
        return _run_videos(predictor, jobs, output_dir, run_info, dist, sizes, options)


def _run_videos(predictor, jobs, output_dir: Path, run_info: dict, dist: DistInfo, sizes, options) -> List[VideoResult]:
    check_summary(output_dir)
    for name, _ in jobs:
        video_output_name(name)
    outcome = ShardOutcome(dist.rank)
    keep_going = len(jobs) > 1 or dist.enabled
    start, current = time.perf_counter(), None
    try:
        with sigterm_as_interrupt():
            for i in shard_jobs(sizes or [1] * len(jobs), dist.world_size, dist.rank):
                current = jobs[i][0]
                try:
                    outcome.results[i] = _run_job(predictor, jobs[i], output_dir, options)
                except Exception as exc:  # noqa: BLE001 (one video's failure; Ctrl-C still stops)
                    if not keep_going:
                        raise
                    outcome.failures[current] = one_line_error(exc)
                    log.error("video %s failed: %s", current, outcome.failures[current])
            current = None
    except KeyboardInterrupt:
        done = [outcome.results[i] for i in sorted(outcome.results)]
        write_summary(output_dir, done, dict(run_info, interrupted=True, interrupted_during=current))
        raise
    outcome.seconds = round(time.perf_counter() - start, 3)
    outcome.peak_rss_mb = round(peak_rss_mb(), 1)
    merge_and_summarise(outcome, dist, write_summary, output_dir, dict(run_info, interrupted=False))
    return [outcome.results[i] for i in sorted(outcome.results)]


def _run_job(predictor, job: VideoJob, output_dir: Path, options: dict) -> VideoResult:
    name, open_job = job
    source, prompts = open_job()
    try:
        log.info("segmenting %s (%s frames, %d objects)", name, "live" if source.live else len(source),
                 len({p.obj_id for p in prompts}))
        return segment_video(predictor, source, prompts, output_dir, **options)
    finally:
        if hasattr(source, "close"):
            source.close()
