"""The TS/MS ablation on synthetic surgical video, with training seeds (docs/method.md).

    python eval/ablation_synthetic.py --out runs/ablation                   # every row, seeds 1 2 3
    python eval/ablation_synthetic.py --out runs/ablation --rows sam2 tsms --seeds 1 2 --jobs 2

The ``data=synthetic`` configuration of the Hydra-multirun ablation (eval/ablation_run.py),
with the flags of its first version: this command runs

    python eval/ablation_run.py -m out=<out> data=synthetic seed=<seeds> row=<rows> [sizes ...]
        [hydra/launcher=joblib hydra.launcher.n_jobs=<jobs>]

Rows (configs/ablation/ablation.yaml): SAM2 (uniform sampler, sam2 memory), +TS
(multiscale, sam2), +MS (uniform, tsms), TSMS (multiscale, tsms), and beyond the paper
motion_adaptive (trained), tsms_fast and the dynamic threshold (inference only, on the
TSMS weights); any memory preset name is a row too. Each trained row trains the mini
model from scratch with the quickstart's recipe (``experiment=synthetic_tiny``, same data
and budget, one run per seed), then every row tracks the same held-out videos from
first-frame masks: fast and slow basic videos and every scenario of
``data/synthetic.py --scenario mixed``. Results: ``results.md``, ``results.json`` and
``ablation.png`` under ``--out``.

Resumable: finished trainings and scorings are kept (``runs/``, ``scores/``) and an
interrupted training resumes from its last checkpoint, so rerunning the same command
continues; another --out is needed to change the data or the budget.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import shlex  # noqa: E402
from typing import List  # noqa: E402

from eval.ablation_setup import quoted  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

ROWS = ("sam2", "ts", "ms", "tsms", "motion_adaptive", "tsms_fast", "auto")


def parse_args(argv=None):
    p = ArgumentParser(prog="ablation_synthetic.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/ablation", help="output folder (default runs/ablation)")
    p.add_argument("--rows", nargs="+", default=list(ROWS),
                   help="rows: keys of configs/ablation/ablation.yaml or memory presets (default: the 7 rows)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="training seeds (default 1 2 3)")
    p.add_argument("--jobs", type=int, default=1, help="jobs side by side (hydra-joblib-launcher; default 1)")
    p.add_argument("--train_videos", type=int, default=24)
    p.add_argument("--val_videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=24, help="frames per training and basic test video")
    p.add_argument("--size", type=int, default=128, help="frame side in pixels")
    p.add_argument("--test_videos", type=int, default=4, help="basic test videos per speed (fast, slow)")
    p.add_argument("--scenario_videos", type=int, default=3, help="test videos per scenario")
    p.add_argument("--scenario_frames", type=int, default=48, help="frames per scenario video (long: >= 200)")
    p.add_argument("--epochs", type=int, help="training budget: epochs (default: synthetic_tiny's)")
    p.add_argument("--clips_per_video", type=int, help="training budget: clips per video per epoch")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per job (default 1)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra training override for every trained row (repeatable)")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples (default 10000)")
    p.add_argument("--log_level", default="INFO")
    args = p.parse_args(argv)
    for name in ("train_videos", "val_videos", "test_videos", "scenario_videos", "frames", "scenario_frames", "jobs",
                 "threads", "bootstrap"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("seeds", "rows"):
        values = getattr(args, name)
        if len(set(values)) != len(values):
            raise UserError(f"--{name} has duplicates: {values}")
    return args


def multirun_overrides(args) -> List[str]:
    """``eval/ablation_run.py`` overrides for these flags (seed first: every row gets its
    first seed before any gets its second)."""
    g = "data.generate"
    overrides = [f"out={quoted(args.out)}", "data=synthetic", "seed=" + ",".join(map(str, args.seeds)),
                 "row=" + ",".join(args.rows), f"data.size={args.size}",
                 f"{g}.train.num_videos={args.train_videos}", f"{g}.val.num_videos={args.val_videos}",
                 f"{g}.fast.num_videos={args.test_videos}", f"{g}.slow.num_videos={args.test_videos}",
                 f"{g}.scenarios.num_videos={5 * args.scenario_videos}",
                 f"{g}.scenarios.num_frames={args.scenario_frames}",
                 *(f"{g}.{split}.num_frames={args.frames}" for split in ("train", "val", "fast", "slow")),
                 f"threads={args.threads}", f"bootstrap={args.bootstrap}"]
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.clips_per_video is not None:
        overrides.append(f"train.clips_per_video={args.clips_per_video}")
    if args.override:
        overrides.append("train.overrides=[" + ",".join(quoted(o) for o in args.override) + "]")
    if args.jobs > 1:
        overrides += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"]
    return ["-m", *overrides]


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    from eval.ablation_run import launch

    given = list(argv if argv is not None else sys.argv[1:])
    return launch(multirun_overrides(args), command="python eval/ablation_synthetic.py " + shlex.join(given))


if __name__ == "__main__":
    sys.exit(run_cli(main))
