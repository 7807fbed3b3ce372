"""EndoVis2017 (Robotic Instrument Segmentation) -> VOS layout.

Raw layout (as downloaded from the challenge; ``instrument_dataset_N`` may also sit one
folder deeper, e.g. ``train/instrument_dataset_1``)::

    instrument_dataset_N/left_frames/frameNNN.png                  1920x1080 RGB
    instrument_dataset_N/ground_truth/<Name>_labels/frameNNN.png   one folder per instrument

Frames and labels are cropped to 1280x1024 (rows 28:1052, cols 320:1600). Any other frame
size is an error naming the file. Object ids are either one id per instrument instance
(label folder, ids 1..K in sorted folder order) or the 7 instrument types.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import cv2
import numpy as np

from data.endovis import (
    SourceVideo, check_out_dir, check_split_outputs, find_sequence_dir, list_raw_frames, prepare_split, require_dir,
    require_file, resolve_splits,
)
from data.mask_io import frame_number, read_rgb
from utils.errors import UserError

log = logging.getLogger(__name__)

FRAME_SIZE = (1080, 1920)  # raw H, W
CROP_ROWS = (28, 1052)
CROP_COLS = (320, 1600)

INSTRUMENT_TYPES: Dict[int, str] = {
    1: "Bipolar Forceps",
    2: "Prograsp Forceps",
    3: "Large Needle Driver",
    4: "Vessel Sealer",
    5: "Grasping Retractor",
    6: "Monopolar Curved Scissors",
    7: "Other/Ultrasound Probe",
}
# Lower-case substrings of a label folder name -> type id (first match wins).
_TYPE_KEYWORDS: List[Tuple[str, int]] = [
    ("bipolar", 1),
    ("prograsp", 2),
    ("needle_driver", 3),
    ("vessel_sealer", 4),
    ("grasping_retractor", 5),
    ("monopolar", 6),
    ("curved_scissors", 6),
    ("ultrasound", 7),
    ("other", 7),
]
FOLDS: Dict[int, List[int]] = {0: [1, 3], 1: [2, 5], 2: [4, 8], 3: [6, 7]}
TRAIN_DATASETS = list(range(1, 9))
OBJECT_MODES = ("instance", "type")


def fold_splits(fold: int) -> Dict[str, List[int]]:
    """Standard 4-fold cross-validation: ``valid`` = the fold's datasets, ``train`` = the rest of 1..8."""
    if fold not in FOLDS:
        raise UserError(f"--fold must be one of {sorted(FOLDS)}, got {fold}")
    valid = FOLDS[fold]
    return {"train": [d for d in TRAIN_DATASETS if d not in valid], "valid": list(valid)}


def instrument_type(folder_name: str) -> int:
    """Instrument-type id of a ``<Name>_labels`` folder (``Left_Prograsp_Forceps_labels`` -> 2)."""
    lowered = folder_name.lower().replace(" ", "_")
    for keyword, type_id in _TYPE_KEYWORDS:
        if keyword in lowered:
            return type_id
    raise UserError(f"unknown EndoVis2017 instrument label folder: {folder_name}")


def crop(array: np.ndarray, path: Path) -> np.ndarray:
    """The 1280x1024 crop of a 1920x1080 array; other sizes are an error naming ``path``."""
    if array.shape[:2] != FRAME_SIZE:
        raise UserError(
            f"{path}: expected a {FRAME_SIZE[1]}x{FRAME_SIZE[0]} EndoVis2017 image, "
            f"got {array.shape[1]}x{array.shape[0]}"
        )
    return array[CROP_ROWS[0]:CROP_ROWS[1], CROP_COLS[0]:CROP_COLS[1]]


def _read_binary(path: Path) -> np.ndarray:
    image = cv2.imread(str(require_file(path)), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"cannot read label image: {path}")
    if image.ndim == 3:
        image = image.max(axis=2)
    return image > 0


def endovis17_video(dataset_dir: Path, objects: str = "instance") -> SourceVideo:
    """A :class:`SourceVideo` for one ``instrument_dataset_N`` folder."""
    if objects not in OBJECT_MODES:
        raise UserError(f"--objects must be one of {OBJECT_MODES}, got {objects!r}")
    frames = list_raw_frames(dataset_dir / "left_frames")
    gt_dir = require_dir(dataset_dir / "ground_truth")
    folders = sorted(p for p in gt_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    label_folders = []
    for folder in folders:
        if not folder.name.lower().endswith("_labels"):
            log.warning("ignoring %s: not a <Name>_labels folder", folder)
            continue
        label_folders.append((folder, instrument_type(folder.name)))
    if not label_folders:
        raise UserError(f"no <Name>_labels folders in {gt_dir}")
    if objects == "instance":
        ids = list(range(1, len(label_folders) + 1))
        names = {i: f"{folder.name[:-len('_labels')]} ({INSTRUMENT_TYPES[t]})"
                 for i, (folder, t) in zip(ids, label_folders)}
    else:
        ids = [t for _, t in label_folders]
        names = {t: INSTRUMENT_TYPES[t] for t in ids}

    def load(position: int) -> Tuple[np.ndarray, np.ndarray]:
        frame_path = frames[position]
        rgb = crop(read_rgb(frame_path), frame_path)
        label = np.zeros(rgb.shape[:2], np.uint8)
        for (folder, _), obj in zip(label_folders, ids):
            label_path = folder / frame_path.name
            label[crop(_read_binary(label_path), label_path)] = obj
        return np.ascontiguousarray(rgb), label

    return SourceVideo(
        name=dataset_dir.name,
        source=str(dataset_dir.resolve()),
        frame_numbers=[frame_number(p.name) for p in frames],
        load=load,
        object_names=names,
    )


def prepare_endovis17(
    raw_dir, out_dir, fold: Optional[int] = 0, splits: Optional[Iterable[str]] = None,
    objects: str = "instance", image_format: str = "jpg", overwrite: bool = False,
) -> Dict[str, Dict]:
    """Convert EndoVis2017 into ``out_dir/<split>/...``; returns ``{split: meta}``.

    Splits are ``train``/``valid`` of ``fold`` unless ``splits`` (``NAME=IDS`` strings) are given.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    check_out_dir(out_dir, raw_dir)
    if objects not in OBJECT_MODES:
        raise UserError(f"--objects must be one of {OBJECT_MODES}, got {objects!r}")
    plan = resolve_splits(fold_splits(fold) if not splits else {}, splits)
    # Resolve every folder first so that an incomplete tree fails before anything is written.
    videos = {
        split: [endovis17_video(find_sequence_dir(raw_dir, f"instrument_dataset_{i}"), objects) for i in ids]
        for split, ids in plan.items()
    }
    class_names = INSTRUMENT_TYPES if objects == "type" else {}
    options = {"objects": objects, "crop": [list(CROP_ROWS), list(CROP_COLS)]}
    check_split_outputs(out_dir, videos)
    return {
        split: prepare_split(
            out_dir, split, split_videos, dict(options, datasets=plan[split]), "EndoVis2017",
            class_names, image_format=image_format, overwrite=overwrite,
        )
        for split, split_videos in videos.items()
    }
