"""Rebuild the ablation's table, plot and statistics from the scores under an out folder.

    python eval/ablation_report.py --out runs/ablation
    python eval/ablation_report.py --out runs/ablation --rows sam2 tsms tsms_fast --reference sam2

eval/ablation_run.py does this after every sweep; run it by hand after jobs that ran
elsewhere (another sitting, a cluster whose launcher was stopped), or to show some rows
only. It reads ``settings.json``, ``groups.json`` and ``scores/<row>/s<seed>.json`` and
writes ``results.md``, ``results.json`` and ``ablation.png`` (paired bootstrap, event
windows: eval/ablation.py). The data need not be there.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict, List, Mapping, Optional, Sequence, Tuple  # noqa: E402

from eval import ablation as abl  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

log = logging.getLogger("ablation_report")
SEED_FILE = re.compile(r"s(-?\d+)\.json")


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise UserError(f"{path} not found: {what}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc


def collect(out: Path, keys: Optional[Sequence[str]] = None) -> Tuple[List[abl.Row], Dict[str, Dict[int, dict]]]:
    """The rows with scores under ``out`` (``keys``: these, in this order) and
    ``{row: {seed: scores}}``."""
    settings = _read_json(out / "settings.json", "not an ablation folder (eval/ablation_run.py writes it)")
    recorded = settings.get("rows", {})
    unknown = [k for k in keys or () if k not in recorded]
    if unknown:
        raise UserError(f"no row {unknown[0]!r} in {out}; its rows: {', '.join(recorded)}")
    rows, scores = [], {}
    for key in keys or recorded:
        folder = out / "scores" / key
        per_seed = {}
        for path in sorted(folder.glob("s*.json")) if folder.is_dir() else ():
            match = SEED_FILE.fullmatch(path.name)
            if match:
                per_seed[int(match.group(1))] = _read_json(path, "a score file")
        if not per_seed:
            continue
        definition = dict(recorded[key])
        label = definition.pop("label", key)
        definition["overrides"] = tuple(definition.get("overrides") or ())
        rows.append(abl.Row(key=key, label=label, **definition))
        scores[key] = dict(sorted(per_seed.items()))
    return rows, scores


def training_minutes(out: Path) -> dict:
    """How many trainings finished under ``out`` and their median wall time (from their markers)."""
    minutes = sorted(json.loads(p.read_text())["minutes"] for p in (out / "runs").glob("*/ablation_done.json"))
    return {"n_trained": len(minutes), "train_minutes": minutes[len(minutes) // 2] if minutes else float("nan")}


def caption_settings(settings: Mapping) -> dict:
    """What the caption says about the data and the recipe, from ``settings.json``."""
    data, train = settings["data"], settings["train"]
    generated = data.get("generate") or {}
    if generated:
        train_videos = generated.get("train", {}).get("num_videos")
    else:
        train_videos = len(data.get("videos", {}).get("train", {}))
    return {"dataset": data["name"], "title": data.get("title", data["name"]), "experiment": train["experiment"],
            "size": data.get("size") or train.get("resolution"), "train_videos": train_videos,
            "base": train.get("base")}


def write_report(out, keys: Optional[Sequence[str]] = None, reference: str = abl.REFERENCE, bootstrap: int = 10000,
                 command: Optional[str] = None, meta: Optional[Mapping] = None) -> Optional[str]:
    """Write the results of every scored row (``keys``: these); ``None`` when nothing is scored yet."""
    out = Path(out).resolve()
    rows, scores = collect(out, keys)
    if not rows:
        return None
    groups = _read_json(out / "groups.json", "written by eval/ablation_run.py before the jobs")
    settings = _read_json(out / "settings.json", "")
    info = {**caption_settings(settings), "bootstrap": bootstrap, **training_minutes(out),
            "command": command or f"python eval/ablation_report.py --out {out}", **(meta or {})}
    return abl.write_results(out, rows, scores, groups, info, reference=reference)


def main(argv=None) -> int:
    p = ArgumentParser(prog="ablation_report.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the ablation's output folder")
    p.add_argument("--rows", nargs="+", help="rows to show, in this order (default: every scored row)")
    p.add_argument("--reference", default=abl.REFERENCE, help="the row the others are compared with (default sam2)")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples (default 10000)")
    p.add_argument("--log_level", default="INFO")
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be at least 1, got {args.bootstrap}")
    text = write_report(args.out, args.rows, args.reference, args.bootstrap)
    if text is None:
        raise UserError(f"nothing is scored under {args.out} yet")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
