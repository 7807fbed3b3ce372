"""Quickstart: fine-tune TSMS-SAM2 on synthetic surgical video, then predict and score, on CPU.

    python quickstart.py                       # <= 10 min on 2 CPU cores, writes runs/quickstart/
    python quickstart.py --from_scratch        # the mini model from random weights (no base)
    python quickstart.py --init_checkpoint auto  # start from an official SAM2.1 file in checkpoints/

Stages (each runs the documented CLI, logged so it can be rerun by hand):

1. ``data/synthetic.py``: train, validation and held-out test videos: mixed slow/fast motion,
   long videos of sustained mixed motion, and one long video with static phases;
2. ``training/train_tsms_sam2.py experiment=synthetic_finetune``: the 2.3M-parameter
   SAM2.1 "mini" fine-tuned from the pretrained base checkpoints/tsms_sam2_mini_base.pt
   (``experiment=synthetic_tiny`` from scratch without one), with TS (multi-scale clips)
   and MS (memory split + pruning), in two DDP processes on a machine with two cores or more;
3. ``inference/predict_video.py --dataset_dir``: the held-out videos, first-frame mask
   prompts, once with the fine-tuned weights and once with the base's;
4. ``eval/evaluate.py --skip_first``: Dice per object, video and overall.

Outputs under ``--out``: ``run/`` (config, checkpoints, tensorboard), ``predictions/``
(masks, overlay mp4s), ``eval/`` (JSON, CSV, Dice plot) and ``summary.md``.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import logging  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from eval import synthetic_pipeline as pipe  # noqa: E402
from eval.evaluation import available_cpus  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.io import atomic_write  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

log = logging.getLogger("quickstart")

OFFICIAL_NAME = re.compile(r"sam2(\.1)?_hiera_(tiny|small|base_plus|large)\.pt$")
# The pretrained mini base (eval/pretrain_base.py); used by default once it is committed there.
BASE_CHECKPOINT = pipe.REPO_ROOT / "checkpoints" / "tsms_sam2_mini_base.pt"
OFFICIAL_SEARCH_ORDER = [f"sam2{v}_hiera_{s}.pt" for s in ("tiny", "small", "base_plus", "large") for v in (".1", "")]
# Clips per training video per epoch and process (the experiments' own: 20). 18 lets two processes,
# 1.8x the clips of one, fit the 10-minute budget on two cores (docs/results.md#quickstart).
CLIPS_PER_VIDEO = 18
CLIPS_PER_VIDEO_OFFICIAL = 8


def parse_args(argv=None):
    p = ArgumentParser(prog="quickstart.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    d = p.add_argument_group("synthetic data")
    d.add_argument("--train_videos", type=int, default=24, help="training videos (default 24)")
    d.add_argument("--val_videos", type=int, default=4, help="validation videos, scored after each epoch (default 4)")
    d.add_argument("--test_videos", type=int, default=12, help="held-out test videos, slow and fast (default 12)")
    d.add_argument("--long_videos", type=int, default=4,
                   help="held-out long videos of sustained mixed motion: slow and fast phases alternating to the "
                        "end, --long_frames frames (default 4; 0: none)")
    d.add_argument("--long_frames", type=int, default=96, help="frames per long video (default 96, at least 96)")
    d.add_argument("--static_videos", type=int, default=1,
                   help="held-out 200-frame videos with static phases and short bursts (default 1; 0: none)")
    d.add_argument("--frames", type=int, default=24, help="frames per video (default 24)")
    d.add_argument("--size", type=int, default=128, help="frame side in pixels (default 128)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, help="epochs (default: the experiment's)")
    t.add_argument("--clips_per_video", type=int,
                   help=f"clips drawn per training video per epoch and training process (default {CLIPS_PER_VIDEO}; "
                        f"{CLIPS_PER_VIDEO_OFFICIAL} with --init_checkpoint)")
    t.add_argument("--seed", type=int, default=123, help="training seed (default 123)")
    t.add_argument("--procs", type=int, default=min(2, available_cpus()),
                   help="training processes (PyTorch DDP; gloo on CPU), each drawing its own clips, so N processes "
                        "see N times the clips of one; on 2 free cores, two took 1.1-1.2x the training time of one "
                        "(default: 2, or 1 where this process may use only one core)")
    t.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per training process (default 1: on this 2.3M-parameter model a second "
                        "thread adds little; a second process adds more)")
    t.add_argument("--init_checkpoint", metavar="PATH|auto",
                   help="start from an official SAM2/SAM2.1 checkpoint instead of from scratch; 'auto' "
                        "takes the first one found in checkpoints/ (see checkpoints/README.md)")
    t.add_argument("--init_model", help="model size of --init_checkpoint (default: from its file name)")
    t.add_argument("--base", default="auto", metavar="PATH|auto",
                   help="fine-tune from a pretrained mini base (our checkpoint, e.g. from eval/pretrain_base.py); "
                        "auto (default): checkpoints/tsms_sam2_mini_base.pt if present, else from scratch")
    t.add_argument("--from_scratch", action="store_true", help="train from random weights even if a base exists")
    t.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra training override (repeatable), e.g. --override base_lr=1e-3")
    i = p.add_argument_group("inference")
    i.add_argument("--memory", default=None, help="memory preset at inference (default: the trained one, tsms)")
    i.add_argument("--no_baseline", action="store_true", help="skip scoring the untrained weights")
    p.add_argument("--log_level", default="INFO")
    args = p.parse_args(argv)
    for name in ("train_videos", "val_videos", "test_videos", "frames", "size", "threads", "procs"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("long_videos", "static_videos"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} must be at least 0, got {getattr(args, name)}")
    if args.long_frames < 96:
        raise UserError(f"--long_frames must be at least 96, got {args.long_frames}")
    if args.size % 32:
        raise UserError(f"--size must be a multiple of 32 (the model's stride), got {args.size}")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {args.epochs}")
    if args.clips_per_video is not None and args.clips_per_video < 1:
        raise UserError(f"--clips_per_video must be at least 1, got {args.clips_per_video}")
    return args


def find_official_checkpoint(spec: str, model: str | None) -> tuple[Path, str]:
    """``(path, model size)`` of the official checkpoint named by ``--init_checkpoint``."""
    if spec == "auto":
        folder = pipe.REPO_ROOT / "checkpoints"
        found = [folder / n for n in OFFICIAL_SEARCH_ORDER if (folder / n).is_file()]
        if not found:
            raise UserError(f"--init_checkpoint auto: no official SAM2 checkpoint in {folder} "
                            f"(expected e.g. sam2.1_hiera_tiny.pt; see checkpoints/README.md)")
        path = found[0]
    else:
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"--init_checkpoint: file not found: {path}")
    if model is None:
        match = OFFICIAL_NAME.search(path.name)
        if match is None:
            raise UserError(f"--init_checkpoint {path.name}: cannot tell the model size from the file name; "
                            f"pass --init_model tiny|small|base_plus|large")
        model = ("" if match.group(1) else "sam2_") + match.group(2)
    return path.resolve(), model


def find_base_checkpoint(args) -> Path | None:
    """The pretrained base to fine-tune from, or None (from scratch, or an official checkpoint)."""
    explicit = args.base != "auto"
    if args.from_scratch or args.init_checkpoint:
        if explicit:
            other = "--from_scratch" if args.from_scratch else "--init_checkpoint"
            raise UserError(f"--base cannot be combined with {other}")
        return None
    path = Path(args.base) if explicit else BASE_CHECKPOINT
    if not path.is_file():
        if explicit:
            raise UserError(f"--base: file not found: {path}")
        log.info("no pretrained base at %s: training from scratch (docs/training.md, 'Pretraining the base')", path)
        return None
    return path.resolve()


def training_overrides(args, data_dir: Path) -> list[str]:
    base = find_base_checkpoint(args)
    overrides = [f"experiment={'synthetic_finetune' if base else 'synthetic_tiny'}", f"data_root={data_dir}", "data.train.root=${data_root}/train",
                 "data.val.root=${data_root}/val", f"seed={args.seed}", "trainer.save_initial=true",
                 f"resolution={args.size}"]
    if args.init_checkpoint:
        path, model = find_official_checkpoint(args.init_checkpoint, args.init_model)
        log.info("starting from %s (%s)", path, model)
        # Pretrained: fine-tuning lrs, frozen image encoder (affordable on CPU), 1 epoch.
        overrides += [f"model.config={model}", f"model.checkpoint={path}", "model.freeze_image_encoder=true",
                      "resolution=256", "base_lr=5e-5", "vision_lr=0", "epochs=1"]
    if base is not None:
        log.info("fine-tuning the pretrained base %s (experiment=synthetic_finetune)", base)
        overrides.append(f"model.checkpoint={base}")
    if args.epochs is not None:
        overrides.append(f"epochs={args.epochs}")
    # The sampler splits an epoch's clips between the processes: scale them so each draws its own share.
    clips = args.clips_per_video or (CLIPS_PER_VIDEO_OFFICIAL if args.init_checkpoint else CLIPS_PER_VIDEO)
    overrides.append(f"data.train.multiplier={clips * args.procs}")
    overrides.append(f"cpu_threads={args.threads}")
    return overrides + list(args.override)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    out = Path(args.out).resolve()
    data_dir, run_dir, pred_dir, eval_dir = out / "data", out / "run", out / "predictions", out / "eval"
    if (run_dir / "checkpoints").is_dir():  # fail now, not after generating the data
        raise UserError(f"{out} already holds a quickstart run ({run_dir}); choose another --out or remove it")
    overrides = training_overrides(args, data_dir)
    wall = {}
    start = time.perf_counter()

    log.info("[1/4] synthetic surgical videos -> %s", data_dir)
    splits = {"train": pipe.SyntheticSplit(args.train_videos, args.frames, 0, "mixed", args.size),
              "val": pipe.SyntheticSplit(args.val_videos, args.frames, 1000, "mixed", args.size),
              "test": pipe.SyntheticSplit(args.test_videos, args.frames, 2000, "mixed", args.size)}
    if args.long_videos:
        splits["test_long"] = pipe.SyntheticSplit(args.long_videos, args.long_frames, 2500, "mixed", args.size,
                                                  "sustained")
    if args.static_videos:
        splits["test_static"] = pipe.SyntheticSplit(args.static_videos, 200, 2700, "mixed", args.size, "long")
    for name, split in splits.items():
        pipe.generate_split(data_dir / name, split)
    tests = [name for name in splits if name.startswith("test")]
    wall["data"] = time.perf_counter() - start

    log.info("[2/4] training -> %s (tensorboard --logdir %s)", run_dir, run_dir / "tensorboard")
    tick = time.perf_counter()
    checkpoint = pipe.train(run_dir, overrides, procs=args.procs)
    wall["training"] = time.perf_counter() - tick

    log.info("[3/4] prediction on the %d held-out videos -> %s",
             args.test_videos + args.long_videos + args.static_videos, pred_dir)
    tick = time.perf_counter()
    # from an official checkpoint the "untrained" weights are the pretrained ones
    weights = {"trained": checkpoint}
    if not args.no_baseline:
        pretrained = any(o.startswith("model.checkpoint=") for o in overrides)  # official weights or our base
        baseline = "pretrained, not fine-tuned" if pretrained else "untrained"
        weights[baseline] = run_dir / "checkpoints" / "init.pt"
    # output names: trained, trained_long, untrained (pretrained from a checkpoint); the baseline
    # skips the long videos (about a third of the prediction time, and says little more)
    runs = {(label, split): label.split(",")[0] + split[len("test"):] for label in weights for split in tests
            if label == "trained" or split == "test"}
    summaries = {(label, split): pipe.predict(weights[label], data_dir / split, pred_dir / name, args.memory,
                                              overlay=label == "trained", quiet=label != "trained")
                 for (label, split), name in runs.items()}
    wall["prediction"] = time.perf_counter() - tick

    log.info("[4/4] evaluation -> %s", eval_dir)
    tick = time.perf_counter()
    reports = {label: {} for label in weights}
    for (label, split), name in runs.items():
        first = name == "trained"  # the plot and CSV of the trained model's main test split
        reports[label][split] = pipe.evaluate(
            pred_dir / name, data_dir / split / "Annotations", eval_dir / f"{name}.json", quiet=not first,
            plot=eval_dir / "dice_trained.png" if first else None,
            csv=eval_dir / "trained_objects.csv" if first else None)
    wall["evaluation"] = time.perf_counter() - tick
    wall["total"] = time.perf_counter() - start

    trained = [summaries[("trained", split)] for split in tests]
    text = pipe.quickstart_summary({split: data_dir / split for split in tests}, reports, trained, wall)
    with atomic_write(out / "summary.md", "w") as f:
        f.write(text)
    print("\n" + text)
    overlays = sorted((pred_dir / "trained" / "overlays").glob("*.mp4"))
    log.info("done in %.1f min: %s; overlays %s/; Dice plot %s; tensorboard --logdir %s", wall["total"] / 60,
             out / "summary.md", pred_dir / "trained" / "overlays", eval_dir / "dice_trained.png",
             run_dir / "tensorboard")
    if not overlays:
        raise UserError(f"no overlay video was written under {pred_dir / 'trained' / 'overlays'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
