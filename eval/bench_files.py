"""The result files of the benchmarks (``<out>.json`` and ``<out>.md``): a run writes them
only where nothing is, or, with ``--overwrite``, over files a benchmark wrote."""

from __future__ import annotations

import json
from pathlib import Path

from utils.errors import UserError
from utils.io import check_replaceable, check_writable


def _is_result_json(path: Path) -> bool:
    data = json.loads(path.read_text())
    return isinstance(data, dict) and set(data) == {"meta", "rows"} and isinstance(data["rows"], list)


def check_result_files(out: Path, overwrite: bool, tool: str, md_start: str) -> None:
    """One line, before any work, when ``<out>.json`` / ``<out>.md`` cannot be written: a
    folder or file in the way, an earlier result without ``--overwrite``, or a file the
    benchmark did not write (never replaced, even with ``--overwrite``)."""
    checks = {out.with_suffix(".json"): _is_result_json,
              out.with_suffix(".md"): lambda p: p.read_text().startswith(md_start)}
    for path, is_ours in checks.items():
        check_writable(path, "--out file")
        check_replaceable(path, "--out file", is_ours, tool)
        if path.exists() and not overwrite:
            raise UserError(f"{path} exists; pass --overwrite or another --out")
