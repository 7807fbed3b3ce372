"""Tracked masks on disk, so that a restart shows them again (and their confidence timeline).

``<output_dir>/.annotator/tracked-<generation>.jsonl`` is a log: a header line, then one
line per change of a frame, each the frame's whole state::

    {"seq": 7, "frame": 12, "png": "<base64 label PNG>" | null, "scores": {"1": 3.2}, "ious": {"1": 0.91}}

Lines are appended (and flushed) as masks change, so a kill loses at most the line being
written. The session file names the log and the last ``seq`` it covers: lines after it
come from a change whose session save never happened (a kill, a full disk) and are dropped,
so the masks always match the saved prompts. Each start compacts the log into a new
generation (the latest line per frame); the session then points at it and the old one goes.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from utils.io import normal_permissions

log = logging.getLogger(__name__)

FOLDER = ".annotator"
TOOL = "tsms-sam2 annotator tracked masks"
_NAME_RE = re.compile(r"tracked-[0-9a-f]{16}\.jsonl")

FrameState = Tuple[Optional[bytes], Dict[int, float], Dict[int, float]]  # label PNG, scores, ious


def valid_name(name) -> bool:
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


class TrackedLog:
    """The open log: ``append`` a frame's state, ``mark``/``rollback`` to take back lines."""

    def __init__(self, path: Path, seq: int):
        self.path, self.seq = Path(path), seq
        self._fh = open(self.path, "ab", buffering=0)  # unbuffered: a line is on disk or cut back

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, output_dir: Path, header: dict, frames: Iterable[Tuple[int, FrameState]]) -> "TrackedLog":
        """A new generation holding ``frames``, written to a temp file and renamed into place."""
        folder = Path(output_dir) / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"tracked-{secrets.token_hex(8)}.jsonl"
        tmp = folder / f".{path.name}.tmp"
        seq = 0
        try:
            with open(tmp, "wb") as fh:
                fh.write(_line(dict(header, tool=TOOL)))
                for frame, state in frames:
                    seq += 1
                    fh.write(_record(seq, frame, state))
                fh.flush()
                os.fsync(fh.fileno())
            normal_permissions(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return cls(path, seq)

    def append(self, frame: int, state: FrameState) -> int:
        """Write one frame's state; on failure (a full disk) the file is cut back as it was."""
        data = _record(self.seq + 1, frame, state)
        start = self._fh.tell()
        try:
            view = memoryview(data)
            while view:
                view = view[self._fh.write(view):]
        except OSError:
            self._cut(start)
            raise
        self.seq += 1
        return self.seq

    def mark(self) -> Tuple[int, int]:
        return self._fh.tell(), self.seq

    def rollback(self, mark: Tuple[int, int]) -> None:
        self._cut(mark[0])
        self.seq = mark[1]

    def _cut(self, offset: int) -> None:
        self._fh.truncate(offset)
        self._fh.seek(offset)

    def sync(self) -> None:
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def read(output_dir: Path, name: str, upto: int, header: dict) -> Tuple[Dict[int, FrameState], Optional[str]]:
    """The latest state per frame in log ``name`` up to line ``upto``, and a warning (or None)
    when part of it could not be used (what is missing must be re-tracked)."""
    path = Path(output_dir) / FOLDER / name
    frames: Dict[int, FrameState] = {}
    if not valid_name(name) or not path.is_file() or path.is_symlink():
        return frames, f"the tracked masks ({path}) are missing"
    problem = None
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                entry = json.loads(raw)
                if number == 1:
                    if {k: entry.get(k) for k in header} != header or entry.get("tool") != TOOL:
                        return {}, f"{path} belongs to another video or session"
                    continue
                seq, frame = entry["seq"], entry["frame"]
                if seq > upto:
                    break
                frames[int(frame)] = _parse(entry, header)
            except (ValueError, KeyError, TypeError) as exc:
                problem = f"{path} line {number} is damaged ({type(exc).__name__}); the masks after it are dropped"
                break
    return frames, problem


def remove_others(output_dir: Path, keep: str) -> None:
    """Older generations and temp files of the log (ours by name), once the session names ``keep``."""
    folder = Path(output_dir) / FOLDER
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        ours = valid_name(entry.name) or (entry.name.startswith(".tracked-") and entry.name.endswith(".tmp"))
        if ours and entry.name != keep and entry.is_file() and not entry.is_symlink():
            entry.unlink()


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _record(seq: int, frame: int, state: FrameState) -> bytes:
    png, scores, ious = state
    return _line({"seq": seq, "frame": frame, "png": None if png is None else base64.b64encode(png).decode("ascii"),
                  "scores": {str(o): v for o, v in scores.items()}, "ious": {str(o): v for o, v in ious.items()}})


def _parse(entry: dict, header: dict) -> FrameState:
    frame = entry["frame"]
    if not isinstance(frame, int) or not 0 <= frame < header["num_frames"]:
        raise ValueError(f"frame {frame!r}")
    png = None if entry["png"] is None else base64.b64decode(entry["png"], validate=True)
    scores = {int(o): float(v) for o, v in entry["scores"].items()}
    ious = {int(o): float(v) for o, v in entry["ious"].items()}
    return png, scores, ious
