"""Dice per scenario and inside event windows, from a synthetic dataset's ``meta.json``.

``data/synthetic.py --scenario ...`` records each video's scenario and events (frame indices,
see data/synthetic_scenarios.py). Given per-frame scores (:class:`eval.aggregate.EvaluationResult`):

* **per scenario**: Dice over the objects of that scenario's videos, pooled (across objects),
  and over their per-video means (across videos);
* **per event type**: for every (event, object) pair, the object's mean Dice over the scored
  frames of the event's window, then mean and std over the pairs. Windows: ``[start, end]``
  for events with a span (``occluded``, ``static``, ``burst``, ``smoke``, ``blur``), and the
  ``window`` frames ``[frame, frame + window)`` from the event on for the others (``reappear``,
  ``crossing``, ``dropped_frames``, ``camera_jerk``, ``flash``). Objects: the event's
  ``obj_id`` / ``obj_ids``, else every object of the video. Inside an ``occluded`` window the
  ground truth is empty, so its Dice is the share of frames without a false positive.

Frames are matched by number (``00057.png`` is frame 57); frames that are not scored
(``--skip_first``) are left out of the windows. Every std is the population std (``ddof=0``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from eval.aggregate import EvaluationResult, summarize
from utils.errors import UserError

logger = logging.getLogger(__name__)

META_NAME = "meta.json"
DEFAULT_EVENT_WINDOW = 10


def find_meta(gt_dir: Path, meta: Optional[Path] = None) -> Optional[Path]:
    """``meta`` if given (it must exist), else ``meta.json`` in ``gt_dir`` or its parent
    (the dataset root above ``Annotations/``), else None."""
    if meta is not None:
        if not Path(meta).is_file():
            raise UserError(f"--meta file not found: {meta}")
        return Path(meta)
    for folder in (Path(gt_dir), Path(gt_dir).parent):
        if (folder / META_NAME).is_file():
            return folder / META_NAME
    return None


def load_meta(path: Path, explicit: bool = True) -> Optional[Dict[str, dict]]:
    """``{video: {"scenario": ..., "events": [...]}}`` from a generator ``meta.json``.

    A ``meta.json`` found by itself (``explicit=False``) that holds only ``basic`` videos
    without events gives None: there is nothing to report.
    """
    try:
        data = json.loads(Path(path).read_text())
        videos = data["videos"]
        if not isinstance(videos, dict):
            raise TypeError("'videos' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read scenario metadata {path}: {exc}") from exc
    out = {name: {"scenario": v.get("scenario", "basic"), "events": list(v.get("events", []))}
           for name, v in videos.items() if isinstance(v, dict)}
    for name, v in out.items():
        for event in v["events"]:
            keys = ("start", "end") if isinstance(event, dict) and "start" in event else ("frame",)
            if not (isinstance(event, dict) and isinstance(event.get("type"), str)
                    and all(isinstance(event.get(k), int) for k in keys)):
                raise UserError(f"{path}: video {name!r} has a malformed event {event!r} (expected a type and "
                                f"an integer frame, or start and end)")
    if not explicit and all(v["scenario"] == "basic" and not v["events"] for v in out.values()):
        return None
    return out


def event_frames(event: dict, window: int) -> range:
    """Frame indices of an event's window (see the module docstring)."""
    if "start" in event:
        return range(int(event["start"]), int(event["end"]) + 1)
    return range(int(event["frame"]), int(event["frame"]) + window)


def _frame_number(stem: str) -> Optional[int]:
    return int(stem) if stem.isdigit() else None


def _summary(values) -> dict:
    s = summarize(values)
    return {"mean": None if math.isnan(s.mean) else s.mean, "std": None if math.isnan(s.std) else s.std, "n": s.n}


def scenario_report(result: EvaluationResult, meta: Dict[str, dict], window: int = DEFAULT_EVENT_WINDOW,
                    source: str = "") -> dict:
    """JSON-ready per-scenario and per-event Dice for the scored videos found in ``meta``."""
    by_scenario: Dict[str, List] = {}
    rows: List[dict] = []
    labels: Dict[str, str] = {}  # event type -> its window rule
    unknown = [v.name for v in result.videos if v.name not in meta]
    if unknown:
        logger.warning("%d scored video(s) not in %s, left out of the scenario report: %s", len(unknown),
                       source or "the metadata", ", ".join(unknown[:5]))
    for video in result.videos:
        if video.name not in meta or not video.objects:
            continue
        info = meta[video.name]
        by_scenario.setdefault(info["scenario"], []).append(video)
        index = {n: k for k, n in enumerate(_frame_number(s) for s in video.frames) if n is not None}
        objects = {o.object_id: o for o in video.objects}
        for event in info["events"]:
            labels[event["type"]] = "[start, end]" if "start" in event else f"[frame, frame + {window})"
            frames = [index[t] for t in event_frames(event, window) if t in index]
            ids = event.get("obj_ids") or ([event["obj_id"]] if "obj_id" in event else sorted(objects))
            for obj in ids:
                if obj not in objects or not frames:
                    continue
                rows.append({"video": video.name, "scenario": info["scenario"], "type": event["type"],
                             "obj_id": int(obj), "first_frame": min(event_frames(event, window)),
                             "n_frames": len(frames), "dice": float(np.mean(objects[obj].frames["dice"][frames]))})
    per_scenario = {
        name: {"n_videos": len(videos), "n_objects": sum(len(v.objects) for v in videos),
               "dice_across_objects": _summary([o.scores["dice"] for v in videos for o in v.objects]),
               "dice_across_videos": _summary([v.summary["dice"].mean for v in videos])}
        for name, videos in sorted(by_scenario.items())
    }
    per_event = {kind: {"window": labels[kind], "dice": _summary([r["dice"] for r in rows if r["type"] == kind])}
                 for kind in sorted({r["type"] for r in rows})}
    return {"meta": source, "event_window": window, "per_scenario": per_scenario, "per_event": per_event,
            "events": rows}


def format_scenario_table(report: dict) -> str:
    """Console lines in percent: Dice per scenario, then per event window."""

    def pct(s):
        return "-" if s["n"] == 0 else f"{100 * s['mean']:6.2f} ± {100 * s['std']:5.2f}"

    lines = [f"Dice per scenario (% mean ± std; {report['meta']}):",
             f"{'scenario':<12} {'videos':>6} {'objects':>7}  {'across objects':^15}  {'across videos':^15}"]
    for name, s in report["per_scenario"].items():
        lines.append(f"{name:<12} {s['n_videos']:>6} {s['n_objects']:>7}  {pct(s['dice_across_objects']):^15}  "
                     f"{pct(s['dice_across_videos']):^15}")
    if report["per_event"]:
        lines.append(f"Dice inside event windows (over event x object pairs; point events: "
                     f"{report['event_window']} frames from the event on):")
        lines.append(f"{'event':<15} {'pairs':>5}  {'Dice':^15}  window")
        for kind, s in report["per_event"].items():
            lines.append(f"{kind:<15} {s['dice']['n']:>5}  {pct(s['dice']):^15}  {s['window']}")
    return "\n".join(lines)
