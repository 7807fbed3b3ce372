"""Object id -> instrument class, which turns on the per-class (EndoVis) metrics.

A class map is a JSON file in one of two shapes:

* flat, the same for every video: ``{"1": "Bipolar Forceps", "2": "Prograsp Forceps"}``;
* per video: ``{"seq_1": {"1": "Bipolar Forceps"}, "seq_2": {...}, "*": {...}}`` where the
  optional ``"*"`` entry applies to videos not listed.

Keys are object ids (integers 1..255); values are class names (strings or numbers, kept as
strings). Several objects may share a class: the class mask is the union of their masks.
The word ``identity`` instead of a path maps every id to itself, for ground truth whose
pixel values already are class ids (EndoVis instrument-type masks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from utils.errors import UserError

IDENTITY = "identity"
DEFAULT_KEY = "*"


@dataclass(frozen=True)
class ClassMap:
    """Global (``default``) and per-video object-id -> class-name tables."""

    default: Optional[Dict[int, str]] = None
    per_video: Dict[str, Dict[int, str]] = field(default_factory=dict)
    identity: bool = False

    def for_video(self, video: str) -> Dict[int, str]:
        """The id -> class table of ``video``; a :class:`UserError` if it has none."""
        if self.identity:
            return {i: str(i) for i in range(1, 256)}
        table = self.per_video.get(video, self.default)
        if table is None:
            raise UserError(f"class map has no entry for video {video!r} (add it or a {DEFAULT_KEY!r} entry)")
        return table


def _id_table(raw: dict, where: str) -> Dict[int, str]:
    table = {}
    for key, value in raw.items():
        try:
            object_id = int(key)
        except (TypeError, ValueError):
            raise UserError(f"class map {where}: key {key!r} is not an integer object id") from None
        if not 0 < object_id < 256:
            raise UserError(f"class map {where}: object id {object_id} is outside 1..255")
        if isinstance(value, (dict, list)) or value is None:
            raise UserError(f"class map {where}: class of object {key} must be a name or a number")
        table[object_id] = str(value)
    return table


def load_class_map(source: Optional[str]) -> Optional[ClassMap]:
    """Parse ``--class_map``: None, the word ``identity``, or a JSON file path."""
    if source is None:
        return None
    if source == IDENTITY:
        return ClassMap(identity=True)
    path = Path(source)
    if not path.is_file():
        raise UserError(f"class map not found: {path}")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"class map {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"class map {path} must be a non-empty JSON object")
    nested = [isinstance(v, dict) for v in raw.values()]
    if all(nested):
        tables = {video: _id_table(table, f"{path} [{video}]") for video, table in raw.items()}
        return ClassMap(default=tables.pop(DEFAULT_KEY, None), per_video=tables)
    if any(nested):
        raise UserError(f"class map {path} mixes per-video tables with object ids at the top level")
    return ClassMap(default=_id_table(raw, str(path)))
