"""Where the synthetic generator writes, and what a re-run may replace.

The generator owns six entries of its ``--out`` folder: ``JPEGImages/``, ``Annotations/``,
``Prompts/``, ``videos/``, ``ImageSets/`` and ``meta.json`` (``"generator":
"tsms-sam2-synthetic"``). A re-run into a folder it wrote:

* refuses, naming the file, when one of those entries holds anything that ``meta.json``
  does not account for (a frame or video of the user's, a stray file);
* replaces only those six entries; every other file or folder (``NOTES.txt``,
  ``preds/``) stays where it is, untouched.

The new dataset is built in a hidden staging folder and moved in entry by entry, with
``meta.json`` last; ``.synthetic-publishing.json`` records the new meta meanwhile, so a
run killed half-way leaves a folder the next run recognises as its own. Staging and
old-entry folders of killed runs are removed at the next start.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, Iterator, Optional, Set

from data.mask_io import frame_file_name
from data.synthetic_scenarios import SCENARIOS
from utils.errors import UserError
from utils.io import name_path, remove_stale_dirs

GENERATOR_NAME = "tsms-sam2-synthetic"
DATA_ENTRIES = ("JPEGImages", "Annotations", "Prompts", "videos", "ImageSets")
META = "meta.json"
JOURNAL = ".synthetic-publishing.json"
IMAGE_SETS = ("all", "slow", "fast") + SCENARIOS


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _ours(meta: Optional[dict]) -> bool:
    return bool(meta) and meta.get("generator") == GENERATOR_NAME and isinstance(meta.get("videos"), dict)


def _expected(metas) -> Set[str]:
    """Relative paths (files and folders) that the runs described by ``metas`` wrote."""
    paths = set(DATA_ENTRIES) | {f"ImageSets/{name}.txt" for name in IMAGE_SETS}
    for meta in metas:
        for name, info in meta["videos"].items():
            n = int(info.get("num_frames", 0)) if isinstance(info, dict) else 0
            for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png"), ("Prompts", "png")):
                paths.add(f"{kind}/{name}")
                paths.update(f"{kind}/{name}/{frame_file_name(t, ext)}" for t in range(n if kind != "Prompts" else 1))
            paths.add(f"videos/{name}.mp4")
    return paths


def _walk(root: Path, entry: str) -> Iterator[str]:
    """Relative paths under ``root/entry`` (the entry included), links not followed."""
    yield entry
    top = root / entry
    if top.is_dir() and not top.is_symlink():
        for folder, dirs, files in os.walk(top):
            rel = Path(folder).relative_to(root)
            for name in sorted(dirs) + sorted(files):
                yield (rel / name).as_posix()


def check_output(out: Path) -> bool:
    """Refuse an ``out`` the generator may not write (one line); True when it holds an
    earlier dataset of ours (a re-run), False when it is new or empty."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output path exists and is not a directory: {out}")
    if not out.is_dir():
        return False
    remove_stale_dirs(out, r"\.synthetic-(?:new|old)-(\d+)")
    if not any(out.iterdir()):
        return False
    meta = _read_json(out / META)
    if not _ours(meta) or (out / META).is_symlink():
        raise UserError(f"output directory is not empty and was not written by this generator: {out}")
    journal = _read_json(out / JOURNAL)
    expected = _expected([meta] + ([journal] if _ours(journal) else []))
    for entry in DATA_ENTRIES:
        if not (out / entry).exists() and not (out / entry).is_symlink():
            continue
        for rel in _walk(out, entry):
            path = out / rel
            if rel not in expected or path.is_symlink():
                raise UserError(f"{path} was not written by the generator (not listed in {out / META}); "
                                f"a re-run would replace it: move it away or choose another --out")
    return True


def staging_dir(out: Path) -> Path:
    """A fresh hidden folder to build the dataset in: inside ``out`` when it exists, else next to it."""
    if out.is_dir():
        path = out / f".synthetic-new-{os.getpid()}"
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_dirs(out.parent, rf"\.{out.name}\.synthetic-(\d+)")
        path = out.parent / f".{out.name}.synthetic-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    try:
        path.mkdir()
    except OSError as exc:
        name_path(exc, out, path)  # a read-only folder names --out, not the hidden staging
        raise
    return path


def publish(staged: Path, out: Path, meta: Dict) -> None:
    """Move the staged dataset into ``out``: whole when ``out`` is new, else our entries
    one by one (``meta.json`` last); nothing else in ``out`` is touched."""
    if not out.exists():
        os.replace(staged, out)
        return
    (out / JOURNAL).write_text(json.dumps(meta))
    old = out / f".synthetic-old-{os.getpid()}"
    old.mkdir(exist_ok=True)
    for entry in DATA_ENTRIES:
        if (out / entry).exists() or (out / entry).is_symlink():
            os.replace(out / entry, old / entry)
        if (staged / entry).exists():
            os.replace(staged / entry, out / entry)
    os.replace(staged / META, out / META)
    (out / JOURNAL).unlink()
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staged, ignore_errors=True)
