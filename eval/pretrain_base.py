"""Pretrain the base model, or continue it: generic synthetic data, then experiment=pretrain_generic.

    python eval/pretrain_base.py                  # start, or continue where it stopped (resume=auto)
    mkdir -p runs/pretrain_generic && nice -n 19 nohup python eval/pretrain_base.py \
        >> runs/pretrain_generic/log.txt 2>&1 &   # the same, in the background (docs/training.md)

1. ``data/synthetic.py --domain generic``: training and validation videos under ``--data``
   (written once; reused when ``meta.json`` says they match);
2. ``training/train_tsms_sam2.py experiment=pretrain_generic resume=auto``: the mini model,
   SAM2's uniform sampler and memory, from scratch, a checkpoint every 100 steps; run again,
   it continues from ``<run_dir>/checkpoints/last.pt``. When the planned epochs are done it
   returns at once (pass ``--override epochs=N`` with a larger N to train on).

Every stage is logged as the command line it runs, so it can be rerun by hand.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from eval import synthetic_pipeline as pipe  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

log = logging.getLogger("pretrain_base")

TRAIN_SEED, VAL_SEED = 0, 50000  # far from the surgical splits' seeds (0-2500 + video index)


def parse_args(argv=None):
    p = ArgumentParser(prog="pretrain_base.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="datasets/pretrain_generic", help="data folder (default datasets/pretrain_generic)")
    p.add_argument("--run_dir", default="runs/pretrain_generic", help="run folder (default runs/pretrain_generic)")
    p.add_argument("--train_videos", type=int, default=500, help="generic training videos (default 500)")
    p.add_argument("--val_videos", type=int, default=8, help="generic validation videos (default 8)")
    p.add_argument("--frames", type=int, default=24, help="frames per video (default 24)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a busy 2-core machine 2 threads ran ~20x slower)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra training override (repeatable), e.g. --override epochs=20")
    p.add_argument("--log_level", default="INFO")
    args = p.parse_args(argv)
    for name in ("train_videos", "val_videos", "frames", "threads"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.frames < 8:
        raise UserError(f"--frames must be at least 8 (the clip length), got {args.frames}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    data, run_dir = Path(args.data).resolve(), Path(args.run_dir).resolve()
    splits = {"train": pipe.SyntheticSplit(args.train_videos, args.frames, TRAIN_SEED, domain="generic"),
              "val": pipe.SyntheticSplit(args.val_videos, args.frames, VAL_SEED, domain="generic")}
    for name, split in splits.items():
        pipe.generate_split(data / name, split, mp4=False)
    overrides = ["experiment=pretrain_generic", f"data_root={data}", "resume=auto", f"cpu_threads={args.threads}",
                 "trainer.progress=false", *args.override]
    checkpoint = pipe.train(run_dir, overrides)
    log.info("done: %s (resume with the same command; more epochs: --override epochs=N)", checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
