"""Ablation on synthetic surgical video: temporal sampling (TS) and memory rule (MS).

    python eval/ablation_synthetic.py --out runs/ablation                  # all samplers x memories
    python eval/ablation_synthetic.py --samplers multiscale --memories sam2 tsms tsms_fast
    python eval/ablation_synthetic.py --checkpoint runs/quickstart/run/checkpoints/last.pt  # memories only

For each sampler (uniform, multiscale, motion_adaptive) it trains the mini model with the
same data, seed and budget (``training/train_tsms_sam2.py experiment=synthetic_tiny
sampler=<name>``), then, for each memory preset at inference (sam2, tsms, tsms_fast ...),
tracks two held-out splits, one of fast-moving and one of slow-moving instruments, from
first-frame masks. It reports Dice (``evaluate.py --skip_first``, mean over objects), the
attended memory tokens per frame and the tracking time per frame, as ``results.md`` and
``results.json`` under ``--out``. Runs resume (``resume=auto``), so an interrupted ablation
continues where it stopped.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

from eval import synthetic_pipeline as pipe  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.io import atomic_write  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

log = logging.getLogger("ablation_synthetic")

SAMPLERS = ("uniform", "multiscale", "motion_adaptive")
TEST_SPLITS = ("fast", "slow")


def parse_args(argv=None):
    p = ArgumentParser(prog="ablation_synthetic.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/ablation", help="output folder (default runs/ablation)")
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS, help="TS variants to train")
    p.add_argument("--memories", nargs="+", default=["sam2", "tsms", "tsms_fast"],
                   help="memory presets at inference (configs/memory/*.yaml)")
    p.add_argument("--checkpoint", help="skip training: compare memories on this trained checkpoint")
    p.add_argument("--train_videos", type=int, default=24)
    p.add_argument("--val_videos", type=int, default=4)
    p.add_argument("--test_videos", type=int, default=8, help="videos per test split (fast, slow)")
    p.add_argument("--frames", type=int, default=24, help="frames per video")
    p.add_argument("--size", type=int, default=128, help="frame side in pixels")
    p.add_argument("--epochs", type=int, help="training budget: epochs (default: synthetic_tiny's)")
    p.add_argument("--clips_per_video", type=int, help="training budget: clips per video per epoch")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for training (default 1)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra training override for every variant (repeatable)")
    p.add_argument("--log_level", default="INFO")
    args = p.parse_args(argv)
    for name in ("train_videos", "val_videos", "test_videos", "frames"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise UserError(f"--checkpoint: file not found: {args.checkpoint}")
    from models.memory_spec import MemorySpec

    for memory in args.memories:
        MemorySpec.preset(memory)  # unknown names fail now, not after training
    return args


def make_data(args, data_dir: Path) -> dict:
    splits = {
        "train": pipe.SyntheticSplit(args.train_videos, args.frames, 0, "mixed", args.size),
        "val": pipe.SyntheticSplit(args.val_videos, args.frames, 1000, "mixed", args.size),
        "fast": pipe.SyntheticSplit(args.test_videos, args.frames, 3000, "fast", args.size),
        "slow": pipe.SyntheticSplit(args.test_videos, args.frames, 4000, "slow", args.size),
    }
    return {name: pipe.generate_split(data_dir / name, split, quiet=True) for name, split in splits.items()}


def train_variant(args, sampler: str, data: dict, run_dir: Path) -> Path:
    overrides = ["experiment=synthetic_tiny", f"sampler={sampler}", f"data.train.root={data['train']}",
                 f"data.val.root={data['val']}", f"seed={args.seed}", f"resolution={args.size}", "resume=auto",
                 "trainer.progress=false"]
    if args.epochs is not None:
        overrides.append(f"epochs={args.epochs}")
    if args.clips_per_video is not None:
        overrides.append(f"data.train.multiplier={args.clips_per_video}")
    overrides.append(f"cpu_threads={args.threads}")
    return pipe.train(run_dir, overrides + list(args.override))


def score(checkpoint: Path, memory: str, data: dict, out: Path) -> dict:
    row = {}
    tokens, ms = [], []
    for split in TEST_SPLITS:
        pred = out / "predictions" / f"{split}_{memory}"
        summary = pipe.predict(checkpoint, data[split], pred, memory=memory, quiet=True)
        report = pipe.evaluate(pred, data[split] / "Annotations", out / "eval" / f"{split}_{memory}.json", quiet=True)
        row[f"dice_{split}"] = pipe.mean_object_dice(report)
        row[f"objects_{split}"] = report["overall"]["n_objects"]
        for video in summary["videos"]:
            if video.get("attended_memory_tokens_mean") is not None:
                tokens.append(video["attended_memory_tokens_mean"])
            if video.get("frames"):
                ms.append(1000.0 * video["seconds"] / video["frames"])
    n = row["objects_fast"] + row["objects_slow"]
    row["dice_all"] = (row["dice_fast"] * row["objects_fast"] + row["dice_slow"] * row["objects_slow"]) / max(n, 1)
    row["attended_tokens"] = sum(tokens) / len(tokens) if tokens else float("nan")
    row["ms_per_frame"] = sorted(ms)[len(ms) // 2] if ms else float("nan")
    return row


def to_markdown(rows: list, meta: dict) -> str:
    header = ["sampler (TS)", "memory (MS)", "Dice fast", "Dice slow", "Dice all", "attended tokens / frame",
              "ms / frame"]
    table = pipe.markdown_table(header, [[r["sampler"], r["memory"], r["dice_fast"], r["dice_slow"], r["dice_all"],
                                          f"{r['attended_tokens']:.0f}", f"{r['ms_per_frame']:.1f}"] for r in rows])
    return (f"# Synthetic ablation ({meta['date']})\n\n"
            f"Mini model, {meta['size']} px, trained from scratch with the same seed and budget per sampler "
            f"({meta['train_videos']} mixed-speed training videos); {meta['test_videos']} held-out videos per test "
            f"split, first-frame mask prompts, Dice of every later frame, mean over objects. Tokens: spatial + "
            f"object-pointer memory tokens the memory attention attends per frame (mean over frames and videos). "
            f"ms / frame: tracking time per frame, median over videos (CPU, shared machine: compare within a column "
            f"only).\n\n"
            f"{table}\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    out = Path(args.out).resolve()
    start = time.perf_counter()
    log.info("synthetic data -> %s", out / "data")
    data = make_data(args, out / "data")
    if args.checkpoint:
        checkpoints = {"(given checkpoint)": Path(args.checkpoint).resolve()}
    else:
        checkpoints = {}
        for sampler in args.samplers:
            log.info("training with sampler=%s", sampler)
            checkpoints[sampler] = train_variant(args, sampler, data, out / "runs" / sampler)
    rows = []
    for sampler, checkpoint in checkpoints.items():
        for memory in args.memories:
            log.info("scoring sampler=%s memory=%s", sampler, memory)
            row = score(checkpoint, memory, data, out / "scores" / sampler.strip("()").replace(" ", "_"))
            rows.append({"sampler": sampler, "memory": memory, **row})
    meta = {"date": date.today().isoformat(), "size": args.size, "train_videos": args.train_videos,
            "test_videos": args.test_videos, "frames": args.frames, "seed": args.seed, "epochs": args.epochs,
            "clips_per_video": args.clips_per_video, "overrides": args.override,
            "wall_minutes": round((time.perf_counter() - start) / 60, 2)}
    with atomic_write(out / "results.json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    text = to_markdown(rows, meta)
    with atomic_write(out / "results.md", "w") as f:
        f.write(text)
    print(text)
    log.info("wrote %s and %s (%.1f min)", out / "results.md", out / "results.json", meta["wall_minutes"])
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
