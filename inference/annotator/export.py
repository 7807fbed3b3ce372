"""Exports of an annotated video, and loading earlier masks to correct them.

Under ``output_dir`` (the annotator writes nowhere else):

* ``<video>/<frame>.png``: DAVIS palette PNGs, value = object id (what ``eval/evaluate.py``
  and ``predict_video.py`` use); frames never tracked are empty;
* ``coco/<video>.json``: COCO instances with RLE masks (pycocotools), object names and types;
* ``overlays/<video>.mp4``: the frames with coloured masks and ids.

Each is written to a hidden temporary path, then renamed into place. An existing
``<video>/`` folder is replaced only if this annotator wrote it (its session file says so).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Dict

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from data.mask_io import list_frames, read_label_png, write_label_png
from inference.annotator.records import AnnotatorError
from inference.annotator.session_file import SESSION_NAME
from inference.outputs import video_output_name
from inference.writers import OverlayWriter
from utils.errors import UserError
from utils.io import atomic_write, inside

log = logging.getLogger(__name__)


# Entries of --output_dir the annotator writes besides the <video>/ folders.
OWN_ENTRIES = ("coco", SESSION_NAME)


def check_video_name(name: str) -> str:
    """``name`` if it can name the video's outputs: predict_video.py's rule (plain, not one of
    its entries such as ``overlays``), and not one of the annotator's own entries."""
    video_output_name(name)
    if name.lower() in OWN_ENTRIES:
        raise UserError(f"video name {name!r} is reserved for the annotator's own outputs "
                        f"({', '.join(OWN_ENTRIES)}); rename the video")
    return name


def _inside(root: Path, *parts: str) -> Path:
    return inside(root, Path(root).joinpath(*parts))


def export(state) -> Dict[str, str]:
    """Write the PNG masks, the COCO JSON and the overlay video; returns their paths."""
    with state._idle():
        root, video = state.output_dir, state.source.name
        mask_dir = _inside(root, check_video_name(video))
        if mask_dir.exists() and not state.exported:
            raise AnnotatorError(409, f"{mask_dir} exists and was not written by the annotator; "
                                      "refusing to replace it (choose another --output_dir)")
        root.mkdir(parents=True, exist_ok=True)
        tmp = _inside(root, f".{video}.export-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            for f in tqdm(range(state.num_frames), desc="export", unit="frame", leave=False):
                write_label_png(tmp / f"{state.source.frame_name(f)}.png", state.store.labels(f))
            coco_path = _inside(root, "coco", f"{video}.json")
            with atomic_write(coco_path) as fh:
                json.dump(coco_dict(state), fh)
            overlay_path = _inside(root, "overlays", f"{video}.mp4")
            write_overlay(state, overlay_path)
            if mask_dir.exists():
                shutil.rmtree(mask_dir)
            os.replace(tmp, mask_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        state.exported = True
        state.save()
        log.info("exported %d frames of %s to %s", state.num_frames, video, root)
        return {"masks": str(mask_dir), "coco": str(coco_path), "overlay": str(overlay_path)}


def coco_dict(state) -> dict:
    """COCO instances: one image per frame, one annotation per object and frame it is in."""
    types = sorted({o.type or "object" for o in state.objects.values()})
    category = {name: i + 1 for i, name in enumerate(types)}
    images, annotations = [], []
    for f in range(state.num_frames):
        images.append({"id": f + 1, "file_name": state.source.frame_name(f), "frame_index": f,
                       "width": state.width, "height": state.height})
        labels = state.store.labels(f)
        for obj_id in (int(i) for i in np.unique(labels) if i):
            obj = state.objects.get(obj_id)
            rle = mask_utils.encode(np.asfortranarray((labels == obj_id).astype(np.uint8)))
            score = state.store.scores.get(obj_id, {}).get(f)
            annotations.append({
                "id": len(annotations) + 1, "image_id": f + 1, "track_id": obj_id,
                "category_id": category[(obj.type if obj else "") or "object"],
                "name": obj.name if obj else f"object {obj_id}",
                "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0, "object_score": score, "predicted_iou": state.store.ious.get(obj_id, {}).get(f),
            })
    return {
        "info": {"description": f"TSMS-SAM2 annotator export of {state.source.name}", "video": state.source.name},
        "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "instrument"} for name, i in category.items()],
        "objects": [o.as_dict() for o in state.objects.values()],
    }


def write_overlay(state, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # cv2 picks the codec from the suffix
    writer = OverlayWriter(tmp, state.source.fps or 30.0, state.width, state.height)
    try:
        for f in range(state.num_frames):
            writer.write(state.source.read(f), state.store.labels(f))
    finally:
        writer.close()
    os.replace(tmp, path)


def load_masks(state, folder: Path, mark_loaded: bool = True) -> int:
    """Palette PNGs named like the video's frames (a ``predict_video.py`` output or an
    export) become the current masks; unknown ids become objects. Returns frames loaded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"mask folder not found: {folder}")
    names = {state.source.frame_name(f): f for f in range(state.num_frames)}
    loaded = 0
    for path in list_frames(folder, (".png",)):
        if path.stem not in names:
            continue
        try:
            labels = read_label_png(path)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load mask {path}: {exc}") from exc
        if labels.shape != (state.height, state.width):
            raise UserError(f"mask {path} is {labels.shape[1]}x{labels.shape[0]}, the video is {state.width}x{state.height}")
        state.store.set_labels(names[path.stem], labels)
        for obj_id in (int(i) for i in np.unique(labels) if i):
            if obj_id not in state.objects:
                state.add_object(obj_id=obj_id)
            if mark_loaded:
                state.loaded_ids.add(obj_id)
        loaded += 1
    if not loaded:
        raise UserError(f"no masks named like the frames of {state.source.name} in {folder}")
    log.info("loaded masks of %d frames from %s", loaded, folder)
    return loaded
