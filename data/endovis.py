"""Shared machinery for turning raw EndoVis trees into the VOS layout.

For every split the output is::

    <out>/<split>/JPEGImages/<video>/<NNNNN>.jpg   frames (file number = raw frame number)
    <out>/<split>/Annotations/<video>/<NNNNN>.png  palette PNGs, value = object id, 0 = background
    <out>/<split>/Prompts/<video>/<NNNNN>.png      the first frame's annotation (prompt masks)
    <out>/<split>/meta.json                        objects, names, first appearances, options

Re-runs are idempotent: a finished video leaves ``<out>/<split>/.prepared/<video>.json``
recording the options and the source; a video whose record matches is skipped. Each video is
written into temporary folders that are renamed into place only when it is complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from data.mask_io import frame_file_name, frame_number, write_label_png, write_rgb
from utils.errors import UserError
from utils.io import atomic_dir, atomic_write, check_not_input, check_replaceable, inside, plain_name

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
PREPARE_VERSION = 1
IMAGE_FORMATS = ("jpg", "png")


@dataclass
class SourceVideo:
    """A raw video ready to convert.

    Attributes:
        name: output video name (the raw folder name, e.g. ``instrument_dataset_1``).
        source: raw folder, recorded for idempotency.
        frame_numbers: raw frame numbers in order (``frame042.png`` -> 42).
        load: ``load(i) -> (rgb [H, W, 3] uint8, label [H, W] uint8)`` for the i-th frame.
        object_names: ``{object id: name}`` for ids that may appear.
    """

    name: str
    source: str
    frame_numbers: List[int]
    load: Callable[[int], Tuple[np.ndarray, np.ndarray]]
    object_names: Dict[int, str]


def parse_split(text: str) -> Tuple[str, List[int]]:
    """Parse ``NAME=1,2,5-7`` into ``("NAME", [1, 2, 5, 6, 7])``."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*=\s*([0-9,\s-]+)", text)
    if not match:
        raise UserError(f"bad --split {text!r}; expected NAME=ID,ID,... e.g. test=9,10")
    ids: List[int] = []
    for part in match.group(2).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = (int(v) for v in part.split("-", 1))
            ids.extend(range(low, high + 1))
        else:
            ids.append(int(part))
    if not ids:
        raise UserError(f"--split {text!r} lists no ids")
    return plain_name(match.group(1), f"split name in --split {text!r}"), sorted(set(ids))


def find_sequence_dir(raw_root: Path, folder_name: str) -> Path:
    """``raw_root/<folder_name>`` or ``raw_root/*/<folder_name>`` (challenge release folders)."""
    direct = raw_root / folder_name
    if direct.is_dir():
        return direct
    found = sorted(p for p in raw_root.glob(f"*/{folder_name}") if p.is_dir())
    if len(found) > 1:
        raise UserError(f"{folder_name} found more than once under {raw_root}: {', '.join(map(str, found))}")
    if not found:
        raise UserError(f"missing raw folder: {direct} (nor in a sub-folder of {raw_root})")
    return found[0]


def require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UserError(f"incomplete raw tree, missing directory: {path}")
    return path


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"incomplete raw tree, missing file: {path}")
    return path


def list_raw_frames(folder: Path) -> List[Path]:
    """``frameNNN.png`` files of a raw folder, sorted by frame number."""
    frames = [p for p in require_dir(folder).iterdir() if p.is_file() and re.fullmatch(r"frame\d+\.png", p.name)]
    if not frames:
        raise UserError(f"no frameNNN.png files in {folder}")
    return sorted(frames, key=lambda p: frame_number(p.name))


def check_out_dir(out_dir: Path, raw_dir: Path, **more_inputs) -> None:
    """``out_dir`` can hold the output and does not overlap what the run reads (``--raw_dir``
    and ``more_inputs``, e.g. ``isinet_root=...``), in either direction."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output path exists and is not a directory: {out_dir}")
    if not raw_dir.is_dir():
        raise UserError(f"raw data directory not found: {raw_dir}")
    if out_dir.resolve() == raw_dir.resolve():
        raise UserError("--out_dir must differ from --raw_dir")
    inputs = {"--raw_dir": raw_dir, **{f"--{k}": v for k, v in more_inputs.items() if v is not None}}
    check_not_input(out_dir, inputs.values(), "--out_dir", inputs.keys())


def is_split_meta(path: Path) -> bool:
    """A ``meta.json`` that a prepare run wrote (so a re-run may replace it)."""
    data = json.loads(Path(path).read_text())
    return isinstance(data, dict) and {"dataset", "split", "videos", "options"} <= set(data)


def check_split_outputs(out_dir: Path, videos: Dict[str, Sequence["SourceVideo"]]) -> None:
    """Before anything is written: every split's ``meta.json`` and video folders are absent
    or written by a prepare run, so no split fails half-way on a file of the user's."""
    for split, split_videos in videos.items():
        split_dir = out_dir / plain_name(split, "split name")
        check_replaceable(split_dir / "meta.json", "split file", is_split_meta, "a prepare run")
        for video in split_videos:
            marker = _marker_path(split_dir, plain_name(video.name, "video name"))
            for kind in ("JPEGImages", "Annotations", "Prompts"):
                folder = split_dir / kind / video.name
                if (folder.exists() or folder.is_symlink()) and not marker.is_file():
                    raise UserError(f"{folder} exists and was not written by this tool (no {marker}); "
                                    f"move it away or choose another --out_dir")


def _marker_path(split_dir: Path, name: str) -> Path:
    return split_dir / ".prepared" / f"{name}.json"


def write_video(
    split_dir: Path, video: SourceVideo, options: Dict, image_format: str, overwrite: bool, bar: tqdm
) -> Dict:
    """Convert one video into ``split_dir`` (or skip it when already done); returns its info."""
    fingerprint = {
        "version": PREPARE_VERSION, "options": options, "source": video.source,
        "frames": video.frame_numbers, "image_format": image_format,
    }
    plain_name(video.name, "video name")
    marker = _marker_path(split_dir, video.name)
    folders = [split_dir / kind / video.name for kind in ("JPEGImages", "Annotations", "Prompts")]
    if not overwrite and marker.is_file() and all(f.is_dir() for f in folders):
        with contextlib.suppress(ValueError, OSError, KeyError):
            record = json.loads(marker.read_text())
            if record["fingerprint"] == fingerprint:
                log.info("%s/%s already prepared; skipping", split_dir.name, video.name)
                bar.update(len(video.frame_numbers))
                return record["info"]
    for folder in folders:  # replace only what a prepare run wrote (its record stays until the new one)
        if folder.exists() and not marker.is_file():
            raise UserError(f"{folder} exists and was not written by this tool (no {marker}); "
                            f"move it away or choose another --out_dir")
    objects: Dict[int, Dict] = {}
    with atomic_dir(folders[0]) as images, atomic_dir(folders[1]) as masks, atomic_dir(folders[2]) as prompts:
        for position, number in enumerate(video.frame_numbers):
            rgb, label = video.load(position)
            write_rgb(images / frame_file_name(number, image_format), rgb)
            write_label_png(masks / frame_file_name(number, "png"), label)
            if position == 0:
                write_label_png(prompts / frame_file_name(number, "png"), label)
            counts = np.bincount(label.reshape(-1), minlength=256)
            for obj in np.flatnonzero(counts[1:]) + 1:
                entry = objects.setdefault(int(obj), {
                    "name": video.object_names.get(int(obj), f"object {int(obj)}"),
                    "first_frame": int(number), "num_frames": 0,
                })
                entry["num_frames"] += 1
            bar.update(1)
    info = {
        "num_frames": len(video.frame_numbers),
        "first_frame": int(video.frame_numbers[0]),
        "source": video.source,
        "objects": {str(k): objects[k] for k in sorted(objects)},
    }
    with atomic_write(marker) as f:
        json.dump({"fingerprint": fingerprint, "info": info}, f, indent=1, sort_keys=True)
    return info


def prepare_split(
    out_dir: Path, split: str, videos: Sequence[SourceVideo], options: Dict, dataset: str,
    class_names: Dict[int, str], image_format: str = "jpg", overwrite: bool = False,
) -> Dict:
    """Write all ``videos`` of one split and its ``meta.json``; returns the meta dict."""
    if image_format not in IMAGE_FORMATS:
        raise UserError(f"--image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    split_dir = inside(out_dir, out_dir / plain_name(split, "split name"))
    total = sum(len(v.frame_numbers) for v in videos)
    meta = {
        "dataset": dataset, "split": split, "options": options, "image_format": image_format,
        "class_names": {str(k): v for k, v in sorted(class_names.items())}, "videos": {},
    }
    with tqdm(total=total, desc=f"{dataset} {split}", unit="frame") as bar:
        for video in videos:
            meta["videos"][video.name] = write_video(split_dir, video, options, image_format, overwrite, bar)
    with atomic_write(split_dir / "meta.json") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    log.info("%s %s: %d videos, %d frames -> %s", dataset, split, len(videos), total, split_dir)
    return meta


def resolve_splits(default: Dict[str, List[int]], user_splits: Optional[Iterable[str]]) -> Dict[str, List[int]]:
    """User ``NAME=IDS`` splits when given, else ``default``."""
    if not user_splits:
        return {name: list(ids) for name, ids in default.items()}
    splits: Dict[str, List[int]] = {}
    for text in user_splits:
        name, ids = parse_split(text)
        if name in splits:
            raise UserError(f"split {name!r} given twice")
        splits[name] = ids
    return splits
