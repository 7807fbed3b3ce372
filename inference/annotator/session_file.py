"""The saved session (objects, prompts, settings), so a re-run on the same folder resumes.

``<output_dir>/annotator_session.json`` is rewritten atomically after every change. Mask
prompts are stored as COCO RLE. The file is also the marker that says the exports beside
it were written by the annotator (and may be replaced by the next export).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from utils.errors import UserError
from utils.io import atomic_write

log = logging.getLogger(__name__)

SESSION_NAME = "annotator_session.json"
VERSION = 1


def encode_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def session_path(output_dir: Path) -> Path:
    return Path(output_dir) / SESSION_NAME


def save(state) -> None:
    prompts = []
    for (obj_id, frame), p in sorted(state.prompts.items()):
        entry = {"obj_id": obj_id, "frame": frame,
                 "points": [[x, y, lab] for (x, y), lab in zip(p.points, p.labels)]}
        if p.box is not None:
            entry["box"] = p.box
        if p.mask is not None:
            entry["mask_rle"] = encode_rle(p.mask)
        prompts.append(entry)
    data = {
        "version": VERSION, "tool": "tsms-sam2 annotator", "video": state.source.name,
        "num_frames": state.num_frames, "size": [state.height, state.width], "preset": state.preset,
        "threshold": state.threshold, "exported": state.exported,
        "objects": [o.as_dict() for o in state.objects.values()], "loaded_ids": sorted(state.loaded_ids),
        "prompts": prompts, "history": [list(h) for h in state.history],
    }
    state.output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(session_path(state.output_dir)) as f:
        json.dump(data, f, indent=1)


def read(output_dir: Path):
    """The saved session of ``output_dir`` as a dict, or None if there is none."""
    path = session_path(output_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("tool") != "tsms-sam2 annotator":
            raise ValueError("not an annotator session")
        return data
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot resume from {path}: {exc}") from exc


def restore(state, data: dict) -> None:
    """Put a saved session back into a fresh state: objects, then the prompts, replayed."""
    from inference.annotator.records import AnnotatedObject, FramePrompt

    if data.get("video") != state.source.name or data.get("num_frames") != state.num_frames:
        raise UserError(f"{session_path(state.output_dir)} belongs to video {data.get('video')!r} "
                        f"({data.get('num_frames')} frames), not {state.source.name!r} ({state.num_frames}); "
                        "choose another --output_dir")
    try:
        for o in data["objects"]:
            state.objects[int(o["id"])] = AnnotatedObject(int(o["id"]), str(o["name"]), str(o.get("type", "")))
        for e in data["prompts"]:
            p = FramePrompt(points=[[float(x), float(y)] for x, y, _ in e["points"]],
                            labels=[int(lab) for _, _, lab in e["points"]], box=e.get("box"))
            if "mask_rle" in e:
                p.mask = decode_rle(e["mask_rle"])
            state.prompts[(int(e["obj_id"]), int(e["frame"]))] = p
        state.history = [(int(o), int(f), str(k)) for o, f, k in data.get("history", [])]
        state.loaded_ids = set(int(i) for i in data.get("loaded_ids", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"cannot resume from {session_path(state.output_dir)}: malformed ({exc})") from exc
    state.threshold = float(data.get("threshold", state.threshold))
    state.exported = bool(data.get("exported"))
    if data.get("preset") in ("tsms", "tsms_fast", "sam2") and data["preset"] != state.preset:
        state.preset = data["preset"]
        state.session.close()
        state.session = state._new_session()
    state.replay_prompts()
    log.info("resumed %d objects and %d prompts from %s", len(state.objects), len(state.prompts),
             session_path(state.output_dir))
