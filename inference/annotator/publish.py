"""Publishing an export all at once, and finishing or dropping one that a kill interrupted.

An export (``<video>/`` masks, ``coco/<video>.json``, ``overlays/<video>.mp4``) is built
whole in a hidden staging folder ``.<video>.export-<pid>/``. Then:

1. ``publish.json`` is written into it (atomically): from here on the export is committed;
2. the COCO file and the overlay replace theirs (``os.replace``), then the old ``<video>/``
   is moved into the staging folder and the new one takes its place;
3. the staging folder is renamed ``...done`` and removed.

Each step can be repeated, so a start after a kill (:func:`recover`) finishes a committed
export, or removes one that was not committed and keeps the last complete export; it logs
which. The masks folder holds ``.annotator_export.json``: the marker that the annotator
wrote it, with the size and SHA-256 of the COCO file and overlay it published. A file at
those places that does not match it (a user's own) is never replaced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from utils.errors import UserError
from utils.io import atomic_write, file_sha256, inside

log = logging.getLogger(__name__)

MANIFEST = ".annotator_export.json"
COMMIT = "publish.json"
TOOL = "tsms-sam2 annotator export"

# Test hook: called with each step's name (fault injection); None in normal use.
STEP_HOOK: Optional[Callable[[str], None]] = None


def _step(name: str) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name)


def destinations(root: Path, video: str) -> Dict[str, Path]:
    return {"coco": inside(root, root / "coco" / f"{video}.json"),
            "overlay": inside(root, root / "overlays" / f"{video}.mp4"),
            "masks": inside(root, root / video)}


def staging_re(video: str):
    return re.compile(re.escape(f".{video}.export-") + r"\d+(\.done)?")


def _manifest(folder: Path) -> Optional[dict]:
    """The export manifest in ``folder`` (a published or moved-aside masks folder), or None."""
    path = folder / MANIFEST
    if folder.is_symlink() or not folder.is_dir() or path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == TOOL else None


def _matches(path: Path, entry) -> bool:
    return (isinstance(entry, dict) and path.is_file() and not path.is_symlink()
            and path.stat().st_size == entry.get("size") and file_sha256(path) == entry.get("sha256"))


def check_replaceable(root: Path, video: str, manifest: Optional[dict] = None) -> None:
    """A one-line :class:`UserError` if any destination holds something the annotator did not
    write (the rule of ``predict_video.py``: only our own outputs are replaced)."""
    dst = destinations(root, video)
    if manifest is None:
        manifest = _manifest(dst["masks"])
    for folder in (dst["coco"].parent, dst["overlay"].parent):
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise UserError(f"{folder} exists and is not a folder the annotator can write in; "
                            "move it away or choose another --output_dir")
    if dst["masks"].is_symlink() or (dst["masks"].exists() and _manifest(dst["masks"]) is None):
        raise UserError(f"{dst['masks']} exists and was not written by the annotator (no {MANIFEST}); "
                        "refusing to replace it: move it away or choose another --output_dir")
    for kind in ("coco", "overlay"):
        path = dst[kind]
        if (path.exists() or path.is_symlink()) and not _matches(path, (manifest or {}).get(kind)):
            raise UserError(f"{path} exists and was not written by the annotator (or was changed since); "
                            "refusing to replace it: move it away or choose another --output_dir")


class ExportStaging:
    """The hidden folder an export is built in: write ``masks_dir``, ``coco_path`` and
    ``overlay_path``, then :meth:`publish`; :meth:`discard` on failure."""

    def __init__(self, root: Path, video: str):
        self.root, self.video = Path(root), video
        check_replaceable(self.root, video)
        self.dir = inside(self.root, self.root / f".{video}.export-{os.getpid()}")
        if self.dir.is_symlink():
            raise UserError(f"{self.dir} is a symbolic link the annotator did not make; remove it")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.masks_dir = self.dir / "masks"
        self.masks_dir.mkdir()
        self.coco_path = self.dir / "coco.json"
        self.overlay_path = self.dir / "overlay.mp4"
        self.committed = False

    def publish(self) -> Dict[str, str]:
        check_replaceable(self.root, self.video)  # again: the user may have put a file there meanwhile
        manifest = {"tool": TOOL, "video": self.video, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "coco": {"size": self.coco_path.stat().st_size, "sha256": file_sha256(self.coco_path)},
                    "overlay": {"size": self.overlay_path.stat().st_size, "sha256": file_sha256(self.overlay_path)}}
        with atomic_write(self.masks_dir / MANIFEST) as fh:
            json.dump(manifest, fh, indent=1)
        _step("staged")
        with atomic_write(self.dir / COMMIT) as fh:  # the commit point
            json.dump({"video": self.video, "time": manifest["time"]}, fh)
        self.committed = True
        _step("committed")
        _finish(self.root, self.video, self.dir)
        return {k: str(v) for k, v in destinations(self.root, self.video).items()}

    def discard(self) -> None:
        """Remove an export that failed before its commit (after it, the next start finishes it)."""
        if not self.committed:
            shutil.rmtree(self.dir, ignore_errors=True)


def _finish(root: Path, video: str, staging: Path) -> None:
    """Steps 2-3 of a committed export; each is skipped when already done."""
    dst = destinations(root, video)
    for kind, src in (("coco", staging / "coco.json"), ("overlay", staging / "overlay.mp4")):
        if src.exists():
            dst[kind].parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst[kind])
            _step(f"{kind} published")
    if (staging / "masks").exists():
        if dst["masks"].exists():
            os.replace(dst["masks"], staging / "old-masks")
            _step("old masks moved aside")
        os.replace(staging / "masks", dst["masks"])
        _step("masks published")
    done = staging.with_name(f"{staging.name}.done") if not staging.name.endswith(".done") else staging
    if done != staging:
        os.replace(staging, done)
        _step("staging retired")
    shutil.rmtree(done)


def recover(root: Path, video: str) -> List[str]:
    """At a start: finish a committed export a kill interrupted, or remove an uncommitted one
    (the last complete export stays). Returns what was done, one line each (also logged)."""
    root, said = Path(root), []
    if not root.is_dir():
        return said
    pattern = staging_re(video)
    stagings = sorted(p for p in root.iterdir() if pattern.fullmatch(p.name))
    for staging in stagings:
        if staging.is_symlink() or not staging.is_dir():
            raise UserError(f"{staging} is not a staging folder the annotator made (a link or a file); "
                            "remove it, then start again")
    for staging in stagings:
        commit = staging / COMMIT
        if staging.name.endswith(".done"):
            shutil.rmtree(staging)
            last = _manifest(root / video) or {}
            said.append(f"the export of {video} from {last.get('time', '?')} was published whole before an "
                        "interruption; removed what it left behind")
            continue
        if commit.is_file() and not commit.is_symlink():
            new = _manifest(staging / "masks") or _manifest(root / video) or {}
            old = _manifest(root / video) if (staging / "masks").exists() else _manifest(staging / "old-masks")
            dst = destinations(root, video)
            for kind, src in (("coco", staging / "coco.json"), ("overlay", staging / "overlay.mp4")):
                if src.exists() and (dst[kind].exists() or dst[kind].is_symlink()) and not _matches(
                        dst[kind], (old or {}).get(kind)):
                    raise UserError(f"{dst[kind]} appeared while an interrupted export was being published "
                                    "and was not written by the annotator; move it away, then start again")
            if (staging / "masks").exists() and dst["masks"].exists() and old is None:
                raise UserError(f"{dst['masks']} was not written by the annotator; move it away, then start again")
            _finish(root, video, staging)
            said.append(f"finished publishing the export of {video} from {new.get('time', '?')} that was "
                        f"interrupted: masks, COCO and overlay in {root} are now all from it")
        else:
            shutil.rmtree(staging)
            last = _manifest(root / video)
            said.append(f"removed an unfinished export of {video} left by an interrupted run; "
                        + (f"the last complete export (from {last.get('time', '?')}) is kept" if last
                           else "there is no earlier export"))
    for line in said:
        log.warning(line)
    return said
