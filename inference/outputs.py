"""Where predictions go, and the rules that keep a user's files safe.

* Names derived from inputs (video names) are plain names, and not one of our own entries
  (``per_object``, ``overlays``, ``summary.json``).
* Every path we write resolves inside ``--output_dir``.
* A video is staged in a hidden ``.tmp-<video>-<pid>`` folder and moved into place when it
  is complete. Staging left by a killed run (its pid is gone) is removed at the next start.
* We replace only what we wrote earlier, recognised by a ``.tsms_output`` marker file in the
  folder (``<video>/``, ``per_object/<video>/``, ``overlays/``).
* One run writes an output folder at a time (``.tsms.lock``, :func:`output_lock`); a
  second is refused with a line naming the holder. ``summary.json`` is still updated under
  its own lock and merged, so runs one after the other leave a summary of every video.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Dict, Iterator, List

from utils.errors import UserError
from utils.io import atomic_write, check_writable, inside, plain_name, remove_stale_dirs

log = logging.getLogger(__name__)

MARKER = ".tsms_output"
RESERVED_NAMES = ("per_object", "overlays", "summary.json")
STAGING_PREFIX = ".tmp-"
SUMMARY = "summary.json"
SUMMARY_LOCK = ".summary.lock"
_STAGING_RE = re.compile(r"\.tmp-.*-(\d+)")


def check_output_dir(output_dir: Path) -> None:
    """A one-line error when ``output_dir`` cannot be used: a file, under a file, not writable."""
    check_writable(output_dir, "output dir", directory=True)


def make_output_dir(output_dir: Path) -> None:
    check_output_dir(output_dir)
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output dir {output_dir}: {exc.strerror or exc}") from exc


def video_output_name(name: str, origin=None) -> str:
    """``name`` if it can name a video's outputs (plain, not one of our own entries)."""
    what = f"video name derived from {origin}" if origin else "video name"
    plain_name(name, what)
    if name.lower() in RESERVED_NAMES:
        raise UserError(f"{what} {name!r} is reserved for this tool's own outputs ({', '.join(RESERVED_NAMES)}); "
                        f"rename the video")
    return name


def _is_ours(path: Path) -> bool:
    return (path / MARKER).is_file()


def _require_replaceable(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not (path.is_dir() and _is_ours(path))):
        raise UserError(f"{path} exists and was not written by predict_video.py (no {MARKER} marker); "
                        f"move it away or choose another --output_dir")


def _mark(folder: Path) -> None:
    (folder / MARKER).write_text("written by TSMS-SAM2 predict_video.py; replaced on re-runs\n")


def clean_stale_staging(output_dir: Path) -> List[Path]:
    """Remove staging folders of runs that no longer exist (killed with SIGKILL, power loss)."""
    removed = remove_stale_dirs(output_dir, _STAGING_RE.pattern)
    for entry in removed:
        log.info("removed staging folder %s left by an earlier, killed run", entry)
    return removed


@contextlib.contextmanager
def output_lock(output_dir: Path, dist=None) -> Iterator[None]:
    """Hold ``output_dir`` for this run (re-entrant). Under torchrun rank 0 holds it for all
    ranks, and every rank stops with the same one line when another run holds it."""
    from utils.distributed import hold_lock_for_all_ranks

    with hold_lock_for_all_ranks(output_dir, "predict_video.py run", dist):
        yield


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup path runs."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class VideoOutputs:
    """A video's outputs, staged in a hidden folder and published on success.

    Destinations are checked when staging starts (before any tracking) and again at
    publication: each must resolve inside ``output_dir`` and be absent or ours.
    """

    def __init__(self, output_dir: Path, video: str, per_object: bool, overlay: bool):
        self.output_dir, self.video = Path(output_dir), video_output_name(video)
        self.tmp = inside(self.output_dir, self.output_dir / f"{STAGING_PREFIX}{video}-{os.getpid()}")
        self.staged = {"masks": (self.tmp / "masks" / video, self.output_dir / video)}
        if per_object:
            self.staged["per_object"] = (self.tmp / "per_object" / video, self.output_dir / "per_object" / video)
        if overlay:
            self.staged["overlay"] = (self.tmp / "overlay.mp4", self.output_dir / "overlays" / f"{video}.mp4")
        self._check_destinations()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()

    @property
    def mask_dir(self) -> Path:
        return self.staged["masks"][0]

    @property
    def per_object_dir(self):
        return self.staged["per_object"][0] if "per_object" in self.staged else None

    @property
    def overlay_path(self) -> Path:
        return self.tmp / "overlay.mp4"

    def _check_destinations(self) -> None:
        for kind, (_, dst) in self.staged.items():
            inside(self.output_dir, dst)
            if kind == "overlay":
                _require_replaceable(dst.parent)
                if dst.exists() and (dst.is_symlink() or not dst.is_file()):
                    raise UserError(f"{dst} exists and is not an overlay video written by predict_video.py")
            else:
                if kind == "per_object":
                    _require_replaceable(dst.parent)
                _require_replaceable(dst)

    def publish(self) -> Dict[str, str]:
        self._check_destinations()
        published = {}
        for kind, (src, dst) in self.staged.items():
            if not src.exists():
                continue
            if kind == "overlay":
                self._make_ours(dst.parent)
                os.replace(src, dst)
            else:
                if kind == "per_object":
                    self._make_ours(dst.parent)
                _mark(src)
                old = self.tmp / f"old-{kind}"
                if dst.exists():
                    os.replace(dst, old)  # ours (checked): moved aside, then removed with the staging
                os.replace(src, dst)
            published[kind] = str(dst)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return published

    @staticmethod
    def _make_ours(folder: Path) -> None:
        if not folder.exists():
            folder.mkdir()
            _mark(folder)

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _read_summary(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        summary = None
    if not isinstance(summary, dict) or not isinstance(summary.get("videos"), list):
        raise UserError(f"{path} exists and is not a summary written by predict_video.py; "
                        f"move it away or choose another --output_dir")
    return summary


def check_summary(output_dir: Path) -> None:
    """Fail before any work when ``summary.json`` could not be updated later."""
    _read_summary(Path(output_dir) / SUMMARY)


def merge_summary(output_dir: Path, run: dict, videos: List[dict]) -> Path:
    """Add one run to ``summary.json`` under a lock: this run's videos replace entries of the
    same name, other videos stay, and ``runs`` lists every run."""
    output_dir = Path(output_dir)
    path = inside(output_dir, output_dir / SUMMARY)
    with open(output_dir / SUMMARY_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            summary = _read_summary(path)
            names = {v["video"] for v in videos}
            kept = [v for v in summary.get("videos", []) if v.get("video") not in names]
            runs = list(summary.get("runs", []))
            merged = dict(run)
            merged["videos"] = kept + videos
            merged["frames"] = sum(int(v.get("frames", 0)) for v in merged["videos"])
            merged["runs"] = runs + [dict(run, videos=[v["video"] for v in videos])]
            with atomic_write(path) as f:
                json.dump(merged, f, indent=2)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path
