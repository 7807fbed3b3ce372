"""Quickstart: train TSMS-SAM2 on synthetic surgical video, then predict and score, on CPU.

    python quickstart.py                       # ~15 min on 2 CPU cores, writes runs/quickstart/
    python quickstart.py --init_checkpoint auto  # start from an official SAM2.1 file in checkpoints/

Stages (each runs the documented CLI, logged so it can be rerun by hand):

1. ``data/synthetic.py``: train, validation and held-out test videos, mixed slow/fast motion;
2. ``training/train_tsms_sam2.py experiment=synthetic_tiny``: the 2.3M-parameter SAM2.1
   "mini" from scratch, with TS (multi-scale clips) and MS (memory split + pruning);
3. ``inference/predict_video.py --dataset_dir``: the held-out videos, first-frame mask
   prompts, once with the trained weights and once with the untrained ones;
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
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.io import atomic_write  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

log = logging.getLogger("quickstart")

OFFICIAL_NAME = re.compile(r"sam2(\.1)?_hiera_(tiny|small|base_plus|large)\.pt$")
OFFICIAL_SEARCH_ORDER = [f"sam2{v}_hiera_{s}.pt" for s in ("tiny", "small", "base_plus", "large") for v in (".1", "")]


def parse_args(argv=None):
    p = ArgumentParser(prog="quickstart.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    d = p.add_argument_group("synthetic data")
    d.add_argument("--train_videos", type=int, default=24, help="training videos (default 24)")
    d.add_argument("--val_videos", type=int, default=4, help="validation videos, scored after each epoch (default 4)")
    d.add_argument("--test_videos", type=int, default=12, help="held-out test videos (default 12)")
    d.add_argument("--frames", type=int, default=24, help="frames per video (default 24)")
    d.add_argument("--size", type=int, default=128, help="frame side in pixels (default 128)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, help="epochs (default: the experiment's)")
    t.add_argument("--clips_per_video", type=int, help="clips drawn per training video per epoch (default: the experiment's)")
    t.add_argument("--seed", type=int, default=123, help="training seed (default 123)")
    t.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for training (default 1: on this 2.3M-parameter model a second "
                        "thread adds little, and the data-loading worker uses the other core)")
    t.add_argument("--init_checkpoint", metavar="PATH|auto",
                   help="start from an official SAM2/SAM2.1 checkpoint instead of from scratch; 'auto' "
                        "takes the first one found in checkpoints/ (see checkpoints/README.md)")
    t.add_argument("--init_model", help="model size of --init_checkpoint (default: from its file name)")
    t.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra training override (repeatable), e.g. --override base_lr=1e-3")
    i = p.add_argument_group("inference")
    i.add_argument("--memory", default=None, help="memory preset at inference (default: the trained one, tsms)")
    i.add_argument("--no_baseline", action="store_true", help="skip scoring the untrained weights")
    p.add_argument("--log_level", default="INFO")
    args = p.parse_args(argv)
    for name in ("train_videos", "val_videos", "test_videos", "frames", "size", "threads"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
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


def training_overrides(args, data_dir: Path) -> list[str]:
    overrides = ["experiment=synthetic_tiny", f"data_root={data_dir}", "data.train.root=${data_root}/train",
                 "data.val.root=${data_root}/val", f"seed={args.seed}", "trainer.save_initial=true",
                 f"resolution={args.size}"]
    if args.init_checkpoint:
        path, model = find_official_checkpoint(args.init_checkpoint, args.init_model)
        log.info("starting from %s (%s)", path, model)
        # Pretrained: fine-tuning lrs, frozen image encoder (affordable on CPU), 1 epoch.
        overrides += [f"model.config={model}", f"model.checkpoint={path}", "model.freeze_image_encoder=true",
                      "resolution=256", "base_lr=5e-5", "vision_lr=0", "epochs=1", "data.train.multiplier=8"]
    if args.epochs is not None:
        overrides.append(f"epochs={args.epochs}")
    if args.clips_per_video is not None:
        overrides.append(f"data.train.multiplier={args.clips_per_video}")
    overrides.append(f"cpu_threads={args.threads}")
    return overrides + list(args.override)


def summary_markdown(test_dir: Path, reports: dict, trained_summary: dict, wall: dict) -> str:
    speeds = pipe.videos_by_speed(test_dir)
    speed_of = {v: s for s, names in speeds.items() for v in names}
    names = list(reports.keys())
    rows = []
    for video in sorted(speed_of):
        n_obj = len(reports[names[0]]["videos"][video]["objects"])
        rows.append([video, speed_of[video], n_obj] + [pipe.mean_object_dice(reports[n], [video]) for n in names])
    for label, videos in [("**all (mean over objects)**", None)] + [(f"**{s} videos**", v) for s, v in sorted(speeds.items())]:
        n_obj = sum(len(reports[names[0]]["videos"][v]["objects"]) for v in (videos or speed_of))
        rows.append([label, "", n_obj] + [pipe.mean_object_dice(reports[n], videos) for n in names])
    table = pipe.markdown_table(["video", "motion", "objects"] + [f"Dice, {n}" for n in names], rows)
    per_video = [v["attended_memory_tokens_mean"] for v in trained_summary["videos"]
                 if v.get("attended_memory_tokens_mean") is not None]
    tokens = sum(per_video) / len(per_video) if per_video else None
    lines = [
        "# Quickstart results", "",
        "Held-out synthetic test videos, first-frame mask prompts, Dice of every later frame "
        "(`evaluate.py --skip_first`), mean over objects.", "",
        table, "",
        f"Memory tokens attended per tracked frame (trained model, mean over frames and videos): {tokens:.0f}"
        if tokens else "",
        "Wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in wall.items()), "",
    ]
    return "\n".join(lines)


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
    for name, split in (("train", pipe.SyntheticSplit(args.train_videos, args.frames, 0, "mixed", args.size)),
                        ("val", pipe.SyntheticSplit(args.val_videos, args.frames, 1000, "mixed", args.size)),
                        ("test", pipe.SyntheticSplit(args.test_videos, args.frames, 2000, "mixed", args.size))):
        pipe.generate_split(data_dir / name, split)
    wall["data"] = time.perf_counter() - start

    log.info("[2/4] training -> %s (tensorboard --logdir %s)", run_dir, run_dir / "tensorboard")
    tick = time.perf_counter()
    checkpoint = pipe.train(run_dir, overrides)
    wall["training"] = time.perf_counter() - tick

    log.info("[3/4] prediction on the %d held-out videos -> %s", args.test_videos, pred_dir)
    tick = time.perf_counter()
    test_dir = data_dir / "test"
    summaries = {"trained": pipe.predict(checkpoint, test_dir, pred_dir / "trained", args.memory, overlay=True)}
    if not args.no_baseline:
        summaries["untrained"] = pipe.predict(run_dir / "checkpoints" / "init.pt", test_dir, pred_dir / "untrained",
                                              args.memory, quiet=True)
    wall["prediction"] = time.perf_counter() - tick

    log.info("[4/4] evaluation -> %s", eval_dir)
    tick = time.perf_counter()
    reports = {"trained": pipe.evaluate(pred_dir / "trained", test_dir / "Annotations", eval_dir / "trained.json",
                                        plot=eval_dir / "dice_trained.png", csv=eval_dir / "trained_objects.csv")}
    if not args.no_baseline:
        # from an official checkpoint the "untrained" weights are the pretrained ones
        label = "pretrained, not fine-tuned" if args.init_checkpoint else "untrained"
        reports[label] = pipe.evaluate(pred_dir / "untrained", test_dir / "Annotations",
                                       eval_dir / "untrained.json", quiet=True)
    wall["evaluation"] = time.perf_counter() - tick
    wall["total"] = time.perf_counter() - start

    text = summary_markdown(test_dir, reports, summaries["trained"], wall)
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
