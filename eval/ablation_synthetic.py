"""The TS/MS ablation on synthetic surgical video, with training seeds (docs/method.md).

    python eval/ablation_synthetic.py --out runs/ablation                   # every row, seeds 1 2 3
    python eval/ablation_synthetic.py --out runs/ablation --rows sam2 tsms --seeds 1 2 --jobs 2

Rows (eval/ablation.py ROWS): SAM2 (uniform sampler, sam2 memory), +TS (multiscale, sam2),
+MS (uniform, tsms), TSMS (multiscale, tsms), and beyond the paper motion_adaptive
(trained), tsms_fast and the dynamic threshold (inference only, on the TSMS weights). Each
trained row trains the mini model from scratch with the quickstart's recipe
(``experiment=synthetic_tiny``, same data and budget, one run per seed), then every row
tracks the same held-out videos from first-frame masks: fast and slow basic videos and
every scenario of ``data/synthetic.py --scenario mixed``. Results: ``results.md``,
``results.json`` and ``ablation.png`` under ``--out``.

Resumable: finished trainings and scorings are kept (``runs/``, ``scores/``) and an
interrupted training resumes from its last checkpoint, so rerunning the same command
continues; another --out is needed to change the data or the budget.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import json  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

from eval import ablation as abl  # noqa: E402
from eval import synthetic_pipeline as pipe  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.io import atomic_write  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

log = logging.getLogger("ablation_synthetic")
SETTINGS = ("train_videos", "val_videos", "frames", "size", "test_videos", "scenario_videos", "scenario_frames",
            "epochs", "clips_per_video", "override")


def parse_args(argv=None):
    p = ArgumentParser(prog="ablation_synthetic.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/ablation", help="output folder (default runs/ablation)")
    p.add_argument("--rows", nargs="+", default=list(abl.ROWS), choices=list(abl.ROWS), help="rows (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="training seeds (default 1 2 3)")
    p.add_argument("--jobs", type=int, default=1, help="trainings / scorings run side by side (default 1)")
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
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds has duplicates: {args.seeds}")
    return args


def check_settings(args, out: Path) -> None:
    """An --out made with other data or budget is refused: its runs would not compare."""
    settings = {name: getattr(args, name) for name in SETTINGS}
    path = out / "settings.json"
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in SETTINGS if old.get(k) != settings[k]]
        if changed:
            raise UserError(f"{out} holds an ablation made with other settings ({', '.join(changed)}); "
                            f"rerun with the same ones to continue it, or choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(settings, f, indent=2)


def make_data(args, data_dir: Path) -> dict:
    size, frames = args.size, args.frames
    splits = {
        "train": pipe.SyntheticSplit(args.train_videos, frames, 0, "mixed", size),
        "val": pipe.SyntheticSplit(args.val_videos, frames, 1000, "mixed", size),
        "fast": pipe.SyntheticSplit(args.test_videos, frames, 3000, "fast", size),
        "slow": pipe.SyntheticSplit(args.test_videos, frames, 4000, "slow", size),
        "scenarios": pipe.SyntheticSplit(5 * args.scenario_videos, args.scenario_frames, 5000, "mixed", size, "mixed"),
    }
    return {name: pipe.generate_split(data_dir / name, split, quiet=True, mp4=False) for name, split in splits.items()}


def test_groups(data: dict) -> dict:
    """``{group: [video keys]}``: fast, slow and one group per scenario; keys are ``split/video``."""
    groups = {split: [f"{split}/{v}" for v in sorted(json.loads((data[split] / "meta.json").read_text())["videos"])]
              for split in ("fast", "slow")}
    for name, video in sorted(json.loads((data["scenarios"] / "meta.json").read_text())["videos"].items()):
        groups.setdefault(video["scenario"], []).append(f"scenarios/{name}")
    return groups


def train(args, row: abl.Row, seed: int, data: dict, out: Path) -> Path:
    run_dir = out / "runs" / f"{row.key}_s{seed}"
    done = run_dir / "ablation_done.json"
    if done.is_file():
        return run_dir / "checkpoints" / "last.pt"
    overrides = ["experiment=synthetic_tiny", f"sampler={row.sampler}", f"memory={row.memory}",
                 f"data.train.root={data['train']}", f"data.val.root={data['val']}", f"seed={seed}",
                 f"resolution={args.size}", "resume=auto", "trainer.progress=false", f"cpu_threads={args.threads}"]
    if args.epochs is not None:
        overrides.append(f"epochs={args.epochs}")
    if args.clips_per_video is not None:
        overrides.append(f"data.train.multiplier={args.clips_per_video}")
    tick = time.perf_counter()
    logs = out / "logs" / f"train_{run_dir.name}.log"
    checkpoint = pipe.train(run_dir, overrides + list(args.override), log_file=logs)
    with atomic_write(done, "w") as f:
        json.dump({"minutes": round((time.perf_counter() - tick) / 60, 2), "overrides": overrides}, f)
    log.info("trained %s seed %d in %.1f min", row.key, seed, (time.perf_counter() - tick) / 60)
    return checkpoint


def event_dice(report: dict) -> dict:
    """``{event type: mean Dice inside its windows}`` from an evaluate.py report (eval/scenarios.py)."""
    return {event: v["dice"]["mean"] for event, v in report["scenarios"]["per_event"].items()}


def score(args, row: abl.Row, seed: int, data: dict, out: Path) -> dict:
    """``{"dice": {video: Dice}, "tokens": {video: tokens/frame}, "ms": {video: ms/frame},
    "events": {event type: Dice in its windows}}``."""
    path = out / "scores" / row.key / f"s{seed}.json"
    if path.is_file():
        result = json.loads(path.read_text())
        report = out / "eval" / row.key / f"s{seed}_scenarios.json"
        if "events" not in result and report.is_file():  # kept from before event windows were reported
            result["events"] = event_dice(json.loads(report.read_text()))
            with atomic_write(path, "w") as f:
                json.dump(result, f, indent=1)
        return result
    checkpoint = out / "runs" / f"{row.run_key}_s{seed}" / "checkpoints" / "last.pt"
    extra = ["--pruning_threshold", row.pruning_threshold] if row.pruning_threshold else []
    result = {"dice": {}, "tokens": {}, "ms": {}}
    logs = out / "logs" / f"score_{row.key}_s{seed}.log"
    for split in ("fast", "slow", "scenarios"):
        pred = out / "predictions" / row.key / f"s{seed}" / split
        summary = pipe.predict(checkpoint, data[split], pred, memory=row.infer_memory, quiet=True, extra=extra,
                               env={"OMP_NUM_THREADS": str(args.threads), "TQDM_DISABLE": "1"}, log_file=logs)
        report = pipe.evaluate(pred, data[split] / "Annotations", out / "eval" / row.key / f"s{seed}_{split}.json",
                               quiet=True, log_file=logs)
        for name in report["videos"]:
            result["dice"][f"{split}/{name}"] = pipe.mean_object_dice(report, [name])
        if split == "scenarios":
            result["events"] = event_dice(report)
        for video in summary["videos"]:
            key = f"{split}/{video['video']}"
            result["tokens"][key] = video.get("attended_memory_tokens_mean")
            result["ms"][key] = 1000.0 * video["seconds"] / video["frames"] if video.get("frames") else None
    with atomic_write(path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def training_minutes(out: Path) -> dict:
    """How many trainings finished under ``out`` and their median wall time (from their markers)."""
    minutes = sorted(json.loads(p.read_text())["minutes"] for p in (out / "runs").glob("*/ablation_done.json"))
    return {"n_trained": len(minutes), "train_minutes": minutes[len(minutes) // 2] if minutes else float("nan")}


def run_all(jobs: int, tasks: list) -> list:
    """Run ``(name, fn)`` tasks ``jobs`` at a time; every task runs even if one fails, then
    the failures are named in one error."""
    results, failed = [None] * len(tasks), []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(fn) for _, fn in tasks]
        for i, ((name, _), future) in enumerate(zip(tasks, futures)):
            try:
                results[i] = future.result()
            except UserError as exc:
                log.error("%s: %s", name, exc)
                failed.append(name)
    if failed:
        raise UserError(f"{len(failed)} of {len(tasks)} jobs failed ({', '.join(failed)}); rerun the same "
                        f"command to retry them, the finished ones are kept")
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    out = Path(args.out).resolve()
    check_settings(args, out)
    data = make_data(args, out / "data")
    groups = test_groups(data)
    rows = [abl.ROWS[k] for k in args.rows]
    trained = [r for r in abl.ROWS.values() if any(x.run_key == r.key for x in rows)]
    scores: dict = {}
    lock = threading.Lock()
    settings = {"size": args.size, "train_videos": args.train_videos, "jobs": args.jobs, "bootstrap": args.bootstrap,
                "command": "python eval/ablation_synthetic.py " + " ".join(argv if argv is not None else sys.argv[1:])}

    def report() -> str:
        done = [r for r in rows if scores.get(r.key)]
        return abl.write_results(out, done, {r.key: scores[r.key] for r in done}, groups,
                                 {**settings, **training_minutes(out)})

    def job(trained_row: abl.Row, seed: int) -> None:
        users = [r for r in rows if r.run_key == trained_row.key]
        if not all((out / "scores" / r.key / f"s{seed}.json").is_file() for r in users):
            train(args, trained_row, seed, data, out)
        for row in users:
            result = score(args, row, seed, data, out)
            with lock:
                scores.setdefault(row.key, {})[seed] = result
                report()  # partial results after every scored model
    # the paper's rows first, seed-major (each gets its first seed before any gets its second),
    # then the rows beyond the paper: a sitting that ends early leaves whole seeds of the paper
    order = sorted(((r.key not in abl.PAPER_ROWS, i, j, r, s) for j, r in enumerate(trained)
                    for i, s in enumerate(args.seeds)), key=lambda t: t[:3])
    tasks = [(f"{r.key} seed {s}", lambda r=r, s=s: job(r, s)) for *_, r, s in order]
    log.info("%d trainings + scorings, %d at a time; logs in %s; results in %s", len(tasks), args.jobs,
             out / "logs", out / "results.md")
    run_all(args.jobs, tasks)
    scores = {r.key: dict(sorted(scores[r.key].items())) for r in rows}
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
