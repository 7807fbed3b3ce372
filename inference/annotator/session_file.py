"""The saved session (objects, prompts, settings), so a re-run on the same folder resumes.

``<output_dir>/annotator_session.json`` is rewritten atomically after every change. Mask
prompts are stored as COCO RLE. It names the log of tracked masks
(:mod:`inference.annotator.tracked`) and the last line of it that matches these prompts,
and which objects must be re-tracked (``dirty``: object -> first frame to re-track).

A file that was edited or damaged is checked against one schema (:func:`validate`): every
problem is reported on its own line, and the file is never rewritten until it loads.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import List

import numpy as np
from pycocotools import mask as mask_utils

from data.endovis17 import INSTRUMENT_TYPES
from utils.errors import UserError, UserErrors
from utils.io import atomic_write

log = logging.getLogger(__name__)

SESSION_NAME = "annotator_session.json"
VERSION = 2
TOOL = "tsms-sam2 annotator"
HISTORY_KINDS = ("point", "box", "mask")


def encode_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """A mask from RLE, after checking that its runs cover exactly ``size`` (pycocotools
    writes past its buffer on runs that do not)."""
    h, w = rle["size"]
    counts = rle_counts(rle["counts"])
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise ValueError(f"its runs cover {sum(counts)} pixels, not {h}x{w}")
    return mask_utils.decode({"size": [h, w], "counts": rle["counts"].encode("ascii")}).astype(bool)


def rle_counts(text: str) -> List[int]:
    """The run lengths of a compressed COCO RLE string: 5 bits per character (offset 48),
    0x20 = more characters follow, 0x10 on the last = negative; from the third run on,
    each is stored as the difference to the run two before."""
    counts: List[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise ValueError("it ends inside a run")
            code = ord(text[pos]) - 48
            if not 0 <= code < 64:
                raise ValueError(f"character {text[pos]!r} is not RLE")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            pos, shift = pos + 1, shift + 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


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
    journal = state.store.journal
    if journal is not None:
        journal.sync()  # the lines the session points at are on disk before it is
    data = {
        "version": VERSION, "tool": TOOL, "video": state.source.name,
        "num_frames": state.num_frames, "size": [state.height, state.width], "preset": state.preset,
        "threshold": state.threshold, "exported": state.exported,
        "export_current": state.export_current,
        "objects": [o.as_dict() for o in state.objects.values()], "loaded_ids": sorted(state.loaded_ids),
        "prompts": prompts, "history": [list(h) for h in state.history],
        "dirty": {str(o): f for o, f in sorted(state.dirty.items())},
        "claims": [list(c) for c in sorted(state.claims)],
        "tracked": None if journal is None else {"file": journal.name, "seq": journal.seq},
    }
    state.output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(session_path(state.output_dir)) as f:
        json.dump(data, f, indent=1)


def read(output_dir: Path, video: str, num_frames: int, height: int, width: int):
    """The saved session of ``output_dir``, checked (:func:`validate`), or None if there is none."""
    path = session_path(output_dir)
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_dir():
        raise UserErrors([f"{path}: is a folder, not a session file; move it away or choose another --output_dir"])
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserErrors([f"{path}: cannot be read as JSON ({exc}); the file is left as it is"]) from None
    return validate(data, path, video, num_frames, height, width)


def validate(data, path: Path, video: str, num_frames: int, height: int, width: int) -> dict:
    """The one schema of a session file. Returns the session with typed values; raises
    :class:`UserErrors` listing every problem (one line each, naming the field)."""
    from inference.annotator.state import PRESETS  # state imports this module

    errors: List[str] = []

    def bad(field: str, problem: str) -> None:
        errors.append(f"{path}: {field}: {problem}")

    if not isinstance(data, dict):
        raise UserErrors([f"{path}: top level: expected a JSON object, got {_kind(data)}"])
    if data.get("tool") != TOOL:
        raise UserErrors([f"{path}: tool: {data.get('tool')!r} is not {TOOL!r}; not an annotator session"])
    if data.get("video") != video or data.get("num_frames") != num_frames:
        raise UserError(f"{path} belongs to video {data.get('video')!r} ({data.get('num_frames')} frames), not "
                        f"{video!r} ({num_frames}); choose another --output_dir")
    version = data.get("version")
    if version not in (1, VERSION) or isinstance(version, bool):
        bad("version", f"{version!r} is not 1 or {VERSION}")
    if data.get("size") != [height, width]:
        bad("size", f"{data.get('size')!r} is not the video's [height, width] {[height, width]}")
    if data.get("preset") not in PRESETS:
        bad("preset", f"{data.get('preset')!r} is not one of {', '.join(PRESETS)}")
    threshold = data.get("threshold", 0.5)
    if not _number(threshold) or not 0.0 <= threshold <= 1.0:
        bad("threshold", f"{threshold!r} is not a probability in 0..1")
    if not isinstance(data.get("exported", False), bool):
        bad("exported", f"{data.get('exported')!r} is not true or false")

    objects, listed = {}, set()  # valid objects; every id listed (no second error for a bad one)
    for i, o in enumerate(_list(data, "objects", bad)):
        where = f"objects[{i}]"
        if not isinstance(o, dict):
            bad(where, f"expected an object, got {_kind(o)}")
            continue
        oid = o.get("id")
        if _int(oid):
            listed.add(oid)
        if not _int(oid) or not 0 < oid < 256:
            bad(f"{where}.id", f"{oid!r} is not an object id in 1..255")
        elif oid in objects:
            bad(f"{where}.id", f"{oid} is used twice")
        if not isinstance(o.get("name"), str) or len(o["name"]) > 200:
            bad(f"{where}.name", f"{o.get('name')!r} is not a name (text, at most 200 characters)")
        if o.get("type", "") not in ("", *INSTRUMENT_TYPES.values()):
            bad(f"{where}.type", f"{o.get('type')!r} is not an instrument type")
        if _int(oid) and 0 < oid < 256 and oid not in objects:
            objects[oid] = {"id": oid, "name": str(o.get("name")), "type": str(o.get("type", ""))}

    prompts, broken = {}, set()
    for i, e in enumerate(_list(data, "prompts", bad)):
        where = f"prompts[{i}]"
        if not isinstance(e, dict):
            bad(where, f"expected an object, got {_kind(e)}")
            continue
        prompt = _prompt(e, where, bad, objects, listed, num_frames, height, width)
        if prompt is None:
            broken.add((e.get("obj_id"), e.get("frame")))
        else:
            key = (prompt["obj_id"], prompt["frame"])
            if key in prompts:
                bad(where, f"a second prompt for object {key[0]} on frame {key[1]}")
            prompts[key] = prompt

    history = []
    used = {}
    for i, h in enumerate(_list(data, "history", bad, required=False)):
        where = f"history[{i}]"
        if not (isinstance(h, list) and len(h) == 3 and _int(h[0]) and _int(h[1]) and h[2] in HISTORY_KINDS):
            bad(where, f"{h!r} is not [object id, frame, 'point'|'box'|'mask']")
            continue
        key, kind = (h[0], h[1]), h[2]
        if key in broken or key[0] in listed - set(objects):
            continue  # its prompt or object is reported already
        p = prompts.get(key)
        have = 0 if p is None else {"point": len(p["points"]), "box": int(p["box"] is not None),
                                    "mask": int(p["mask"] is not None)}[kind]
        used[(key, kind)] = used.get((key, kind), 0) + 1
        if used[(key, kind)] > have:
            bad(where, f"undoes a {kind} of object {key[0]} on frame {key[1]} that the prompts do not have")
            continue
        history.append((h[0], h[1], kind))

    loaded = []
    for i, oid in enumerate(_list(data, "loaded_ids", bad, required=False)):
        if oid in listed - set(objects):
            continue
        if oid not in objects or not _int(oid):
            bad(f"loaded_ids[{i}]", f"{oid!r} is not one of the objects")
        else:
            loaded.append(oid)

    dirty = {}
    raw_dirty = data.get("dirty", {})
    if not isinstance(raw_dirty, dict):
        bad("dirty", f"expected an object, got {_kind(raw_dirty)}")
        raw_dirty = {}
    for key, frame in raw_dirty.items():
        oid = int(key) if str(key).isdigit() else None
        if oid in listed - set(objects):
            continue
        if oid not in objects:
            bad(f"dirty.{key}", "is not one of the objects")
        elif not _int(frame) or not 0 <= frame < num_frames:
            bad(f"dirty.{key}", f"frame {frame!r} is outside the video (0..{num_frames - 1})")
        else:
            dirty[oid] = frame

    tracked = data.get("tracked")
    if tracked is not None and not (isinstance(tracked, dict) and tracked_ok(tracked)):
        bad("tracked", f"{tracked!r} is not {{'file': 'tracked-<hex>.jsonl', 'seq': <count>}}")
        tracked = None

    if errors:
        raise UserErrors(errors)
    return {"version": version, "preset": data["preset"], "threshold": float(threshold),
            "exported": bool(data.get("exported", False)),
            "export_current": data.get("export_current") is True,
            "claims": [(c[0], c[1]) for c in data.get("claims") or [] if isinstance(c, list) and len(c) == 2
                       and all(type(v) is int for v in c) and (c[0], c[1]) in prompts], "objects": list(objects.values()),
            "prompts": list(prompts.values()), "history": history, "loaded_ids": loaded, "dirty": dirty,
            "tracked": tracked}


def tracked_ok(tracked: dict) -> bool:
    from inference.annotator.tracked import valid_name

    return valid_name(tracked.get("file")) and _int(tracked.get("seq")) and tracked["seq"] >= 0


def _prompt(e: dict, where: str, bad, objects: dict, listed: set, num_frames: int, height: int, width: int):
    ok = True
    oid, frame = e.get("obj_id"), e.get("frame")
    if not _int(oid) or oid not in objects:
        if oid not in listed:  # (a listed but bad id is reported once, at the object)
            bad(f"{where}.obj_id", f"{oid!r} is not one of the objects {sorted(objects)}")
        ok = False
    if not _int(frame) or not 0 <= frame < num_frames:
        bad(f"{where}.frame", f"{frame!r} is outside the video (0..{num_frames - 1})")
        ok = False
    points, labels = [], []
    raw_points = e.get("points", [])
    if not isinstance(raw_points, list):
        bad(f"{where}.points", f"expected a list, got {_kind(raw_points)}")
        raw_points, ok = [], False
    for j, pt in enumerate(raw_points):
        if not (isinstance(pt, list) and len(pt) == 3 and _inside_frame(pt[0], pt[1], height, width) and pt[2] in (0, 1)
                and not isinstance(pt[2], bool)):
            bad(f"{where}.points[{j}]", f"{pt!r} is not [x, y, 1|0] inside the {width}x{height} frame")
            ok = False
            continue
        points.append([float(pt[0]), float(pt[1])]), labels.append(int(pt[2]))
    box = e.get("box")
    if box is not None:
        if not (isinstance(box, list) and len(box) == 4 and _inside_frame(box[0], box[1], height, width)
                and _inside_frame(box[2], box[3], height, width) and box[2] - box[0] >= 1 and box[3] - box[1] >= 1):
            bad(f"{where}.box", f"{box!r} is not [x1, y1, x2, y2] with an area inside the {width}x{height} frame")
            ok = False
        else:
            box = [float(v) for v in box]
    mask = None
    rle = e.get("mask_rle")
    if rle is not None:
        if not (isinstance(rle, dict) and isinstance(rle.get("counts"), str) and isinstance(rle.get("size"), list)):
            bad(f"{where}.mask_rle", "is not COCO RLE {'size': [h, w], 'counts': '...'}")
            ok = False
        elif rle["size"] != [height, width]:
            bad(f"{where}.mask_rle", f"is a {_size(rle['size'])} mask; the video is {width}x{height}")
            ok = False
        else:
            try:
                mask = decode_rle(rle)
            except ValueError as exc:
                bad(f"{where}.mask_rle", f"is not valid RLE: {exc}")
                ok = False
    if ok and not points and box is None and mask is None:
        bad(where, "has no point, box or mask")
        ok = False
    if not ok:
        return None
    return {"obj_id": oid, "frame": frame, "points": points, "labels": labels, "box": box, "mask": mask}


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _inside_frame(x, y, height: int, width: int) -> bool:
    return _number(x) and _number(y) and 0 <= x <= width and 0 <= y <= height


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def _size(size) -> str:
    return f"{size[1]}x{size[0]}" if len(size) == 2 else repr(size)


def _list(data: dict, key: str, bad, required: bool = True) -> list:
    value = data.get(key, None if required else [])
    if not isinstance(value, list):
        bad(key, f"expected a list, got {_kind(value) if value is not None else 'nothing'}")
        return []
    return value


def restore(state, saved: dict) -> None:
    """Put a checked session (:func:`validate`) back into a fresh state: objects, then the
    prompts, replayed into the tracker."""
    from inference.annotator.records import AnnotatedObject, FramePrompt

    for o in saved["objects"]:
        state.objects[o["id"]] = AnnotatedObject(o["id"], o["name"], o["type"])
    for p in saved["prompts"]:
        state.prompts[(p["obj_id"], p["frame"])] = FramePrompt(points=p["points"], labels=p["labels"], box=p["box"],
                                                               mask=p["mask"])
    state.history = list(saved["history"])
    state.loaded_ids = set(saved["loaded_ids"])
    state.threshold = saved["threshold"]
    state.exported = saved["exported"]
    state.export_current = saved.get("export_current", False)
    state.claims = set(saved.get("claims", []))
    if saved["preset"] != state.preset:
        state.preset = saved["preset"]
        state.session.close()
        state.session = state._new_session()
    with state.store.offline():
        state.replay_prompts()
    if saved["version"] >= 2:  # older sessions did not say: every prompted object is re-tracked
        state.dirty = {o: f for o, f in saved["dirty"].items() if o in state.prompted_objects()}
    log.info("resumed %d objects and %d prompts from %s", len(state.objects), len(state.prompts),
             session_path(state.output_dir))
