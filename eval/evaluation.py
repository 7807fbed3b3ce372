"""Score a prediction folder against a ground-truth folder: validation, parallel scoring
over videos, aggregation. :func:`evaluate_predictions` is what ``eval/evaluate.py`` calls."""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from tqdm import tqdm

from eval.aggregate import EvaluationResult, aggregate
from eval.class_map import load_class_map
from data.mask_io import natural_key
from eval.masks import list_videos
from eval.metrics import DAVIS_BOUND_TH
from eval.scenarios import DEFAULT_EVENT_WINDOW, find_meta, load_meta, scenario_report
from eval.scoring import ScoringOptions, VideoScores, score_video
from utils.errors import UserError
from utils.io import printable_name, shown

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationConfig:
    """Inputs of :func:`evaluate` (the CLI flags of ``eval/evaluate.py``).

    class_map: a JSON path, the word "identity", or None (no class metrics).
    workers: processes; None = one per available CPU core, at most one per video;
    1 scores in this process.
    """

    pred_dir: Path
    gt_dir: Path
    skip_first: bool = False
    skip_last: bool = False
    videos: Optional[Sequence[str]] = None
    objects: Optional[Sequence[int]] = None
    class_map: Optional[str] = None
    allow_missing: bool = False
    workers: Optional[int] = None
    bound_th: float = DAVIS_BOUND_TH
    progress: bool = True
    meta: Optional[Path] = None  # scenario metadata (default: meta.json in gt_dir or its parent)
    event_window: int = DEFAULT_EVENT_WINDOW


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_videos(config: EvaluationConfig) -> List[str]:
    """Check both folders and return the videos to score (a :class:`UserError` if unusable)."""
    gt_dir, pred_dir = Path(config.gt_dir), Path(config.pred_dir)
    if not gt_dir.is_dir():
        raise UserError(f"ground-truth directory not found: {gt_dir}")
    if not pred_dir.is_dir():
        raise UserError(f"prediction directory not found: {pred_dir}")
    if gt_dir.resolve() == pred_dir.resolve() or os.path.samefile(gt_dir, pred_dir):
        raise UserError(f"--pred_dir {pred_dir} and --gt_dir {gt_dir} are the same folder: the ground truth would "
                        f"be scored against itself (100%); give the folder of the predictions")
    gt_videos = list_videos(gt_dir)
    if not gt_videos:
        raise UserError(f"ground-truth directory {gt_dir} is empty: expected one folder per video "
                        f"(<video>/<frame>.png or <video>/<object_id>/<frame>.png)")
    videos = gt_videos
    if config.videos:
        unknown = [v for v in config.videos if v not in set(gt_videos)]
        if unknown:
            raise UserError(f"--videos: not in the ground truth {gt_dir}: {', '.join(unknown)}")
        videos = sorted(set(config.videos), key=natural_key)
    pred_videos = set(list_videos(pred_dir))
    for v in sorted(set(gt_videos) | pred_videos, key=natural_key):  # names end up in log lines and table rows
        printable_name(v, f"video folder name in {gt_dir if v in set(gt_videos) else pred_dir}")
    same = [v for v in videos if v in pred_videos and os.path.samefile(gt_dir / v, pred_dir / v)]
    if same:
        raise UserError(f"prediction folder {pred_dir / same[0]} is the ground-truth folder {gt_dir / same[0]} "
                        f"(a link?); {len(same)} video(s) would be scored against themselves")
    missing = [v for v in videos if v not in pred_videos]
    if missing and not config.allow_missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"{len(missing)} ground-truth video(s) missing from the predictions {pred_dir}: "
                        f"{listed}; pass --allow_missing to score them as empty predictions")
    for v in missing:
        logger.warning("video %s has no prediction folder; scored as empty predictions", v)
    extra = sorted(pred_videos - set(gt_videos), key=natural_key)
    if extra:
        logger.warning("%d prediction folder(s) without ground truth ignored: %s", len(extra), ", ".join(extra[:5]))
    return videos


def map_videos(fn: Callable[[str], VideoScores], videos: Sequence[str], workers: int,
               progress: bool = True) -> List[VideoScores]:
    """Apply ``fn`` to every video, in ``workers`` processes, with a progress bar (stderr)."""
    results = {}
    disable = None if progress else True  # None: only on a terminal
    if workers <= 1:
        with tqdm(total=len(videos), desc="evaluating", unit="video", disable=disable) as bar:
            for name in videos:
                results[name] = fn(name)
                bar.update()
    else:
        # The pool exists before tqdm starts its monitor thread, so no thread is forked.
        with multiprocessing.get_context().Pool(workers) as pool:
            with tqdm(total=len(videos), desc="evaluating", unit="video", disable=disable) as bar:
                for scores in pool.imap_unordered(fn, videos):
                    results[scores.name] = scores
                    bar.update()
    return [results[name] for name in videos]


def warn_extra_frames(scores: Sequence[VideoScores]) -> int:
    """One warning with counts when predicted frames have no ground truth (they are not
    scored: a prediction folder of another video, or ground truth that lacks frames)."""
    extra = [(s.name, s.extra_frames) for s in scores if s.extra_frames]
    total = sum(len(frames) for _, frames in extra)
    if total:
        listed = "; ".join(f"{name}: {len(frames)} ({', '.join(map(shown, frames[:3]))}"
                           f"{', ...' if len(frames) > 3 else ''})" for name, frames in extra[:5])
        logger.warning("%d predicted frame(s) in %d video(s) have no ground-truth frame and were not scored: %s%s",
                       total, len(extra), listed, f"; and {len(extra) - 5} more video(s)" if len(extra) > 5 else "")
    return total


def evaluate_predictions(config: EvaluationConfig) -> EvaluationResult:
    """Score every selected video and aggregate (see ``docs/evaluation.md``)."""
    start = time.perf_counter()
    if config.event_window < 1:
        raise UserError(f"--event_window must be at least 1, got {config.event_window}")
    videos = resolve_videos(config)
    meta_path = find_meta(Path(config.gt_dir), config.meta)
    meta = load_meta(meta_path, explicit=config.meta is not None) if meta_path is not None else None
    class_map = load_class_map(config.class_map)
    objects = frozenset(int(i) for i in config.objects) if config.objects else None
    options = ScoringOptions(config.skip_first, config.skip_last, config.allow_missing, objects, config.bound_th)
    workers = config.workers if config.workers is not None else available_cpus()
    workers = max(1, min(workers, len(videos)))
    logger.info("scoring %d video(s) with %d worker(s)", len(videos), workers)
    fn = partial(score_video, gt_root=Path(config.gt_dir), pred_root=Path(config.pred_dir),
                 options=options, class_map=class_map)
    scores = map_videos(fn, videos, workers, config.progress)
    warn_extra_frames(scores)
    if not any(s.objects for s in scores):
        which = f" with ids {sorted(objects)}" if objects else ""
        raise UserError(f"no ground-truth object{which} found in {config.gt_dir}; nothing to score")
    settings = {
        "gt_dir": str(config.gt_dir),
        "pred_dir": str(config.pred_dir),
        "videos": list(videos),
        "objects": sorted(objects) if objects else None,
        "skip_first": config.skip_first,
        "skip_last": config.skip_last,
        "allow_missing": config.allow_missing,
        "class_map": config.class_map,
        "bound_th": config.bound_th,
        "workers": workers,
    }
    result = aggregate(scores, settings)
    if meta is not None:  # a synthetic dataset with scenarios: Dice per scenario and event window
        result.scenarios = scenario_report(result, meta, config.event_window, str(meta_path))
    logger.info("evaluated %d frames of %d video(s) in %.1f s", result.n_frames, len(videos),
                time.perf_counter() - start)
    return result
