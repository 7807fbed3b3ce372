"""Generate → train → predict → evaluate on synthetic surgical video, through the CLIs.

Shared by ``quickstart.py`` and ``eval/ablation_synthetic.py``. Every stage runs one of the
documented command lines (``data/synthetic.py``, ``training/train_tsms_sam2.py``,
``inference/predict_video.py``, ``eval/evaluate.py``) in a subprocess and logs it first, so
a user can rerun any stage by hand; a failing stage stops the pipeline with one line naming
it. Results are read back from the files the CLIs write (``summary.json`` of
predict_video.py, the JSON report of evaluate.py).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from utils.bootstrap import REPO_ROOT
from utils.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticSplit:
    """One generated split: ``data/synthetic.py`` arguments."""

    num_videos: int
    num_frames: int
    seed: int
    speed: str = "mixed"
    size: int = 128

    def matches(self, meta: dict) -> bool:
        return (meta.get("num_videos") == self.num_videos and meta.get("num_frames") == self.num_frames
                and meta.get("seed") == self.seed and meta.get("speed") == self.speed
                and list(meta.get("size", [])) == [self.size, self.size])


def run_command(script: str, args: Sequence[str], what: str, quiet: bool = False) -> None:
    """Run ``python <script> <args>`` from the repo root; a non-zero exit is a UserError."""
    cmd = [sys.executable, str(REPO_ROOT / script), *map(str, args)]
    log.info("%s: python %s", what, " ".join(shlex.quote(str(a)) for a in [script, *args]))
    result = subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL if quiet else None)
    if result.returncode != 0:
        raise UserError(f"{what} failed (exit code {result.returncode}); the command is logged above")


def generate_split(out: Path, split: SyntheticSplit, quiet: bool = False) -> Path:
    """Write a synthetic split to ``out`` unless an identical one is already there."""
    meta_path = out / "meta.json"
    if meta_path.is_file() and split.matches(json.loads(meta_path.read_text())):
        log.info("synthetic data: %s is up to date (%d videos), reused", out, split.num_videos)
        return out
    run_command("data/synthetic.py", ["--out", out, "--num_videos", split.num_videos, "--num_frames",
                                      split.num_frames, "--seed", split.seed, "--speed", split.speed,
                                      "--size", split.size, split.size, "--log_level", "WARNING"],
                f"synthetic data ({out.name})", quiet=quiet)
    return out


def videos_by_speed(dataset_dir: Path) -> Dict[str, List[str]]:
    """``{"fast": [...], "slow": [...]}`` from a synthetic split's ``meta.json``."""
    meta = json.loads((Path(dataset_dir) / "meta.json").read_text())
    groups: Dict[str, List[str]] = {}
    for name, video in sorted(meta["videos"].items()):
        groups.setdefault(video["speed"], []).append(name)
    return groups


def train(run_dir: Path, overrides: Sequence[str]) -> Path:
    """``training/train_tsms_sam2.py run_dir=... <overrides>``; returns the last checkpoint."""
    run_command("training/train_tsms_sam2.py", [f"run_dir={run_dir}", *overrides], "training")
    ckpt = Path(run_dir) / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise UserError(f"training finished without writing {ckpt}")
    return ckpt


def predict(checkpoint: Path, dataset_dir: Path, output_dir: Path, memory: Optional[str] = None,
            overlay: bool = False, quiet: bool = False) -> dict:
    """``predict_video.py --dataset_dir`` with first-frame mask prompts; returns summary.json."""
    args = ["--dataset_dir", dataset_dir, "--checkpoint", checkpoint, "--output_dir", output_dir,
            "--device", "cpu", "--prompt_type", "mask"]
    if memory:
        args += ["--memory", memory]
    if overlay:
        args.append("--overlay")
    if quiet:
        args.append("--quiet")
    run_command("inference/predict_video.py", args, f"prediction ({Path(output_dir).name})")
    return json.loads((Path(output_dir) / "summary.json").read_text())


def evaluate(pred_dir: Path, gt_dir: Path, out_json: Path, plot: Optional[Path] = None,
             csv: Optional[Path] = None, quiet: bool = False) -> dict:
    """``evaluate.py --skip_first`` (the prompted frame is not scored); returns its JSON report."""
    args = ["--pred_dir", pred_dir, "--gt_dir", gt_dir, "--skip_first", "--out", out_json]
    if plot is not None:
        args += ["--plot", plot]
    if csv is not None:
        args += ["--csv", csv]
    if quiet:
        args += ["--no_progress", "--log_level", "WARNING"]
    run_command("eval/evaluate.py", args, f"evaluation ({Path(pred_dir).name})", quiet=quiet)
    return json.loads(Path(out_json).read_text())


def mean_object_dice(report: dict, videos: Optional[Sequence[str]] = None) -> float:
    """Mean Dice over the objects of ``videos`` (all videos by default) in an evaluate.py report."""
    names = report["videos"].keys() if videos is None else videos
    scores = [obj["dice"] for name in names for obj in report["videos"][name]["objects"].values()
              if obj["dice"] is not None]
    return sum(scores) / len(scores) if scores else float("nan")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats get 4 decimals."""
    def cell(x):
        return f"{x:.4f}" if isinstance(x, float) else str(x)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
