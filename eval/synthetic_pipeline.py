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
import os
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
    scenario: str = "basic"
    domain: str = "surgical"

    def matches(self, meta: dict) -> bool:
        return (meta.get("num_videos") == self.num_videos and meta.get("num_frames") == self.num_frames
                and meta.get("seed") == self.seed and meta.get("speed") == self.speed
                and list(meta.get("size", [])) == [self.size, self.size]
                and meta.get("scenario", "basic") == self.scenario
                and meta.get("domain", "surgical") == self.domain)


def run_command(script: str, args: Sequence[str], what: str, quiet: bool = False, log_file: Optional[Path] = None,
                env: Optional[Dict[str, str]] = None, procs: int = 1) -> None:
    """Run ``python <script> <args>`` from the repo root; a non-zero exit is a UserError.

    ``log_file``: the command's stdout and stderr go there (for jobs run side by side).
    ``env``: extra environment variables.
    ``procs``: above 1, ``procs`` processes under torchrun (``--standalone``: a free local port).
    """
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] if procs > 1 else []
    cmd = [sys.executable, *launcher, str(REPO_ROOT / script), *map(str, args)]
    log.info("%s: python %s", what, " ".join(shlex.quote(str(a)) for a in [*launcher, script, *args]))
    full_env = {**os.environ, **env} if env else None
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as f:
            result = subprocess.run(cmd, cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT, env=full_env)
        where = f"its output is in {log_file}"
    else:
        result = subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL if quiet else None, env=full_env)
        where = "the command is logged above"
    if result.returncode != 0:
        raise UserError(f"{what} failed (exit code {result.returncode}); {where}")


def generate_split(out: Path, split: SyntheticSplit, quiet: bool = False, mp4: bool = True) -> Path:
    """Write a synthetic split to ``out`` unless an identical one is already there."""
    meta_path = out / "meta.json"
    if meta_path.is_file() and split.matches(json.loads(meta_path.read_text())):
        log.info("synthetic data: %s is up to date (%d videos), reused", out, split.num_videos)
        return out
    args = ["--out", out, "--num_videos", split.num_videos, "--num_frames", split.num_frames, "--seed", split.seed,
            "--speed", split.speed, "--size", split.size, split.size, "--log_level", "WARNING"]
    if split.scenario != "basic":
        args += ["--scenario", split.scenario]
    if split.domain != "surgical":
        args += ["--domain", split.domain]
    if not mp4:
        args.append("--no_mp4")
    run_command("data/synthetic.py", args, f"synthetic data ({out.name})", quiet=quiet)
    return out


def videos_by_motion(dataset_dir: Path) -> Dict[str, List[str]]:
    """``{"fast": [...], "slow": [...]}`` from a synthetic split's ``meta.json``; a video of a
    scenario (``long``, ``occlusion`` ...) is grouped under its scenario."""
    meta = json.loads((Path(dataset_dir) / "meta.json").read_text())
    groups: Dict[str, List[str]] = {}
    for name, video in sorted(meta["videos"].items()):
        scenario = video.get("scenario", "basic")
        groups.setdefault(video["speed"] if scenario == "basic" else scenario, []).append(name)
    return groups


def train(run_dir: Path, overrides: Sequence[str], log_file: Optional[Path] = None, procs: int = 1) -> Path:
    """``training/train_tsms_sam2.py run_dir=... <overrides>`` (in ``procs`` DDP processes); returns the last
    checkpoint."""
    run_command("training/train_tsms_sam2.py", [f"run_dir={run_dir}", *overrides], f"training ({Path(run_dir).name})",
                log_file=log_file, procs=procs)
    ckpt = Path(run_dir) / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise UserError(f"training finished without writing {ckpt}")
    return ckpt


def predict(checkpoint: Path, dataset_dir: Path, output_dir: Path, memory: Optional[str] = None,
            overlay: bool = False, quiet: bool = False, extra: Sequence[str] = (),
            env: Optional[Dict[str, str]] = None, log_file: Optional[Path] = None) -> dict:
    """``predict_video.py --dataset_dir`` with first-frame mask prompts; returns summary.json.
    ``extra``: more predict_video.py arguments, e.g. ``["--pruning_threshold", "auto"]``."""
    args = ["--dataset_dir", dataset_dir, "--checkpoint", checkpoint, "--output_dir", output_dir,
            "--device", "cpu", "--prompt_type", "mask", *extra]
    if memory:
        args += ["--memory", memory]
    if overlay:
        args.append("--overlay")
    if quiet:
        args.append("--quiet")
    run_command("inference/predict_video.py", args, f"prediction ({Path(output_dir).name})", env=env, log_file=log_file)
    return json.loads((Path(output_dir) / "summary.json").read_text())


def evaluate(pred_dir: Path, gt_dir: Path, out_json: Path, plot: Optional[Path] = None,
             csv: Optional[Path] = None, quiet: bool = False, log_file: Optional[Path] = None) -> dict:
    """``evaluate.py --skip_first`` (the prompted frame is not scored); returns its JSON report."""
    args = ["--pred_dir", pred_dir, "--gt_dir", gt_dir, "--skip_first", "--out", out_json]
    if plot is not None:
        args += ["--plot", plot]
    if csv is not None:
        args += ["--csv", csv]
    if quiet:
        args += ["--no_progress", "--log_level", "WARNING"]
    run_command("eval/evaluate.py", args, f"evaluation ({Path(pred_dir).name})", quiet=quiet, log_file=log_file)
    return json.loads(Path(out_json).read_text())


def object_dice(report: dict, videos: Optional[Sequence[str]] = None) -> List[float]:
    """The Dice of every object of ``videos`` (all videos by default) in an evaluate.py report."""
    names = report["videos"].keys() if videos is None else videos
    return [obj["dice"] for name in names for obj in report["videos"][name]["objects"].values()
            if obj["dice"] is not None]


def mean_object_dice(report: dict, videos: Optional[Sequence[str]] = None) -> float:
    """Mean Dice over the objects of ``videos`` (all videos by default) in an evaluate.py report."""
    scores = object_dice(report, videos)
    return sum(scores) / len(scores) if scores else float("nan")


# How the quickstart's summary names the scenarios of its long splits
GROUP_LABELS = {"sustained": "long, sustained mixed motion", "long": "long, static phases"}


def hidden_prompts(dataset_dir: Path, threshold: float = 0.3) -> List[tuple]:
    """``(video, obj_id, ratio)`` for each object whose first-frame mask (its prompt) is under
    ``threshold`` of its median visible area: an object mostly hidden on the prompt frame,
    whose low Dice says more about the prompt than about the tracker."""
    import numpy as np

    from data.mask_io import list_frames, read_label_png

    found = []
    for video in sorted(p for p in (Path(dataset_dir) / "Annotations").iterdir() if p.is_dir()):
        labels = np.stack([read_label_png(f) for f in list_frames(video, (".png",))])
        for obj_id in (int(i) for i in np.unique(labels[0]) if i):
            areas = (labels == obj_id).sum(axis=(1, 2))
            ratio = float(areas[0] / np.median(areas[areas > 0]))
            if ratio < threshold:
                found.append((video.name, obj_id, ratio))
    return found


def quickstart_summary(splits: Dict[str, Path], reports: Dict[str, Dict[str, dict]], trained: Sequence[dict],
                       wall: Dict[str, float]) -> str:
    """The quickstart's ``summary.md``: Dice per video and per motion group (mean over objects).

    ``splits``: test split -> dataset folder; ``reports[label][split]``: evaluate.py reports
    (label: trained, untrained ...; the first label has every split, the others may lack
    some); ``trained``: the trained model's summary.json per split.
    """
    labels = list(reports)
    motion = {(split, v): GROUP_LABELS.get(group, group) for split, folder in splits.items()
              for group, names in videos_by_motion(folder).items() for v in names}

    def dice(label, keys):
        scores = [d for split, v in keys if split in reports[label] for d in object_dice(reports[label][split], [v])]
        return sum(scores) / len(scores) if scores else "–"  # a split this model was not run on

    def n_objects(keys):
        return sum(len(reports[labels[0]][split]["videos"][v]["objects"]) for split, v in keys)

    rows = [[v if split == "test" else f"{split}/{v}", group, n_objects([(split, v)])]
            + [dice(label, [(split, v)]) for label in labels] for (split, v), group in sorted(motion.items())]
    groups = [("**all (mean over objects)**", sorted(motion))]
    groups += [(f"**{g} videos**", sorted(k for k in motion if motion[k] == g)) for g in sorted(set(motion.values()))]
    rows += [[name, "", n_objects(keys)] + [dice(label, keys) for label in labels] for name, keys in groups]
    table = markdown_table(["video", "motion", "objects"] + [f"Dice, {label}" for label in labels], rows)
    per_video = [v["attended_memory_tokens_mean"] for summary in trained for v in summary["videos"]
                 if v.get("attended_memory_tokens_mean") is not None]
    tokens = sum(per_video) / len(per_video) if per_video else None
    partial = [label for label in labels if set(reports[label]) != set(splits)]
    hidden = [f"{v if split == 'test' else f'{split}/{v}'} object {o} ({ratio:.0%}, Dice "
              f"{dice_text(reports[labels[0]][split]['videos'][v]['objects'].get(str(o), {}).get('dice'))})"
              for split, folder in splits.items() for v, o, ratio in hidden_prompts(folder)]
    lines = [
        "# Quickstart results", "",
        "Held-out synthetic test videos, first-frame mask prompts, Dice of every later frame "
        "(`evaluate.py --skip_first`), mean over objects.", "",
        table, "",
        f"–: not run: the {' and '.join(partial)} weights are tracked on "
        f"{', '.join(f'`{s}`' for s in sorted(reports[partial[0]]))} only (their 'all' is over those videos)."
        if partial else "",
        f"Memory tokens attended per tracked frame (trained model, mean over frames and videos): {tokens:.0f}"
        if tokens else "",
        "Mostly hidden on the prompt frame (first-frame mask under 30% of the object's median visible "
        "area; such an object is hard to tell apart from what covers it): " + "; ".join(hidden) if hidden else "",
        "Wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in wall.items()), "",
    ]
    return "\n".join(lines)


def dice_text(dice: Optional[float]) -> str:
    return "–" if dice is None else f"{dice:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats get 4 decimals."""
    def cell(x):
        return f"{x:.4f}" if isinstance(x, float) else str(x)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
