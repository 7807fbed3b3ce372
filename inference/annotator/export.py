"""Exports of an annotated video, and loading earlier masks to correct them.

Under ``output_dir`` (the annotator writes nowhere else):

* ``<video>/<frame>.png``: DAVIS palette PNGs, value = object id (what ``eval/evaluate.py``
  and ``predict_video.py`` use); frames never tracked are empty;
* ``coco/<video>.json``: COCO instances with RLE masks (pycocotools), object names and types;
* ``overlays/<video>.mp4``: the frames with coloured masks and ids.

The three are built in a hidden staging folder and published together
(:mod:`inference.annotator.publish`); only files the annotator wrote are ever replaced.
"""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path
from typing import Dict

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from data.mask_io import list_frames, read_label_png, write_label_png
from inference.annotator.publish import ExportStaging
from inference.annotator.records import AnnotatorError, disk_error
from inference.annotator.session_file import SESSION_NAME
from inference.annotator.tracked import FOLDER as TRACKED_FOLDER
from inference.outputs import video_output_name
from inference.writers import OverlayWriter
from utils.errors import UserError

log = logging.getLogger(__name__)


# Entries of --output_dir the annotator writes besides the <video>/ folders.
OWN_ENTRIES = ("coco", SESSION_NAME, TRACKED_FOLDER)


def check_video_name(name: str) -> str:
    """``name`` if it can name the video's outputs: predict_video.py's rule (plain, not one of
    its entries such as ``overlays``), and not one of the annotator's own entries."""
    video_output_name(name)
    if name.lower() in OWN_ENTRIES:
        raise UserError(f"video name {name!r} is reserved for the annotator's own outputs "
                        f"({', '.join(OWN_ENTRIES)}); rename the video")
    return name


def export(state) -> Dict[str, str]:
    """Write the PNG masks, the COCO JSON and the overlay video, published together;
    returns their paths."""
    with state._idle():
        root, video = state.output_dir, check_video_name(state.source.name)
        try:
            staging = ExportStaging(root, video)
        except UserError as exc:
            raise AnnotatorError(409, str(exc)) from None
        except OSError as exc:
            raise disk_error(exc, root, "export") from None
        try:
            for f in tqdm(range(state.num_frames), desc="export", unit="frame", leave=False):
                write_label_png(staging.masks_dir / f"{state.source.frame_name(f)}.png", state.store.labels(f))
            with open(staging.coco_path, "w") as fh:
                json.dump(coco_dict(state), fh)
            write_overlay(state, staging.overlay_path)
            paths = staging.publish()
        except UserError as exc:
            staging.discard()
            raise AnnotatorError(409, str(exc)) from None
        except OSError as exc:
            staging.discard()  # not committed: the last export stands
            if staging.committed:
                raise AnnotatorError(500, f"the export is complete in {staging.dir} but could not be moved into "
                                          f"{root}: {exc.strerror or exc}; the next start finishes it") from None
            raise disk_error(exc, root, "export") from None
        except Exception:
            staging.discard()
            raise
        was = state.exported, state.export_current
        state.exported = True
        try:
            state.save(export_current=True)
        except OSError as exc:
            state.exported, state.export_current = was
            raise AnnotatorError(507, f"the export was published in {root}, but the session could not be saved: "
                                      f"{exc.strerror or exc}") from None
        log.info("exported %d frames of %s to %s", state.num_frames, video, root)
        return paths


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
    """The overlay video at ``path`` (in the staging folder; cv2 picks the codec from the suffix)."""
    writer = OverlayWriter(path, state.source.fps or 30.0, state.width, state.height)
    try:
        for f in range(state.num_frames):
            writer.write(state.source.read(f), state.store.labels(f))
    finally:
        writer.close()
    if not path.is_file() or path.stat().st_size == 0:  # cv2 fails silently (a full disk, no codec)
        raise OSError(errno.EIO, f"the overlay video {path.name} could not be written")


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
