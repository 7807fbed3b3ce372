"""Inference over many videos with several processes: ``torchrun --nproc_per_node=N
inference/predict_video.py --dataset_dir ...``.

Each rank (one device each: ``cuda:LOCAL_RANK``, or the CPU with gloo) takes its share of
the videos, largest first onto the least-loaded rank, and writes those videos itself, so the
PNGs are the ones a single process writes, byte for byte. A video that fails is logged and
recorded by name and the others go on. At the end the per-rank results are gathered and
rank 0 writes one ``summary.json`` (videos in the order of the job list) and, if any video
failed, raises one :class:`UserError` that names them. The loop itself is
:func:`inference.predict.run_videos`; without torchrun it is the plain single-process loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from utils.errors import UserError
from utils.io import disk_error_message
from utils.distributed import DistInfo, all_gather_objects, cleanup_distributed, init_distributed

log = logging.getLogger(__name__)

# A rank may finish its share hours before the others; the gather waits for them.
GATHER_TIMEOUT_S = 7 * 24 * 3600.0


def join_inference_ranks(device: str = "auto") -> DistInfo:
    """This process's rank and device (a process group only under torchrun)."""
    return init_distributed(device, timeout_s=GATHER_TIMEOUT_S)


def shard_jobs(sizes: Sequence[int], world_size: int, rank: int) -> List[int]:
    """Indices of the jobs of ``rank``: largest first onto the least-loaded rank (ties: the
    lower rank), returned in job-list order. A pure function, so every rank agrees."""
    loads = [0] * world_size
    owner = [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: (-int(sizes[i]), i)):
        r = min(range(world_size), key=lambda r: (loads[r], r))
        owner[i], loads[r] = r, loads[r] + max(int(sizes[i]), 1)
    return [i for i in range(len(sizes)) if owner[i] == rank]


@dataclass
class ShardOutcome:
    """What one rank did: results (``VideoResult``) by job index, failures by video name."""

    rank: int
    results: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def one_line_error(exc: BaseException) -> str:
    """An exception as ``run_cli`` would print it, on one line."""
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    if isinstance(exc, OSError) and disk_error_message(exc):
        return disk_error_message(exc)
    return " ".join(str(exc).split()) or type(exc).__name__


def merge_and_summarise(outcome: ShardOutcome, dist: DistInfo, write_summary: Callable, output_dir: Path,
                        run_info: dict) -> Optional[Path]:
    """Gather every rank's outcome; rank 0 writes the merged summary and raises one
    ``UserError`` naming the failed videos. Returns the summary path on rank 0."""
    gathered = all_gather_objects(outcome)
    path = None
    try:
        results = {i: r for o in gathered for i, r in o.results.items()}
        failures = {name: msg for o in gathered for name, msg in o.failures.items()}
        if dist.is_main:
            info = dict(run_info)
            if dist.enabled:
                info["world_size"] = dist.world_size
                info["ranks"] = [{"rank": o.rank, "videos": len(o.results) + len(o.failures), "seconds": o.seconds,
                                  "peak_rss_mb": o.peak_rss_mb} for o in gathered]
            info["failed"] = [{"video": name, "error": msg} for name, msg in sorted(failures.items())]
            path = write_summary(output_dir, [results[i] for i in sorted(results)], info)
            log.info("wrote %d video(s) to %s (summary: %s)", len(results), output_dir, path)
    finally:
        if dist.enabled:
            cleanup_distributed()
    if failures and dist.is_main:
        names = ", ".join(f"{name} ({msg})" for name, msg in sorted(failures.items()))
        raise UserError(f"{len(failures)} of {len(results) + len(failures)} video(s) failed: {names}; "
                        f"the others are in {output_dir}")
    return path

