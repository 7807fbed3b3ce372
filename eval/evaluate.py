"""Score predicted masks against ground truth (Dice, J, F, J&F; EndoVis class IoUs).

    python eval/evaluate.py --pred_dir ./results/ --gt_dir ./datasets/EndoVis2017/ground_truth/

See docs/evaluation.md for the layouts, the metric definitions and the aggregation rules.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships a top-level `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional, Sequence  # noqa: E402

from eval.evaluation import EvaluationConfig, evaluate_predictions  # noqa: E402
from eval.metrics import DAVIS_BOUND_TH  # noqa: E402
from eval.scenarios import DEFAULT_EVENT_WINDOW, find_meta, format_scenario_table  # noqa: E402
from eval.report import OUTPUT_CHECKS, format_table, write_dice_plot, write_json, write_object_csv  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.io import check_not_input, check_replaceable, check_writable  # noqa: E402
from utils.logging import setup_logging  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(  # argparse errors become one-line UserErrors (exit 2)
        prog="eval/evaluate.py",
        description="Score predicted masks against ground truth: Dice, J (IoU), F (boundary), J&F per "
                    "object, video and overall; Challenge/ISINet IoU and mcIoU with a class map.",
    )
    p.add_argument("--pred_dir", required=True, type=Path,
                   help="predicted masks: <video>/<frame>.png or <video>/<obj_id>/<frame>.png")
    p.add_argument("--gt_dir", required=True, type=Path, help="ground-truth masks, same layouts")
    p.add_argument("--out", type=Path,
                   help="write every level (overall, videos, objects, frames) to this JSON file")
    p.add_argument("--csv", type=Path, help="write per-object scores to this CSV file")
    p.add_argument("--plot", type=Path, help="write a PNG bar chart of Dice per video with the mean line")
    p.add_argument("--class_map", help="JSON object id -> class (enables Challenge IoU, ISINet IoU, mcIoU), "
                                       "or 'identity' when mask values already are class ids")
    p.add_argument("--skip_first", action="store_true", help="do not score the first frame (the prompted one)")
    p.add_argument("--skip_last", action="store_true",
                   help="do not score the last frame (DAVIS skips both first and last)")
    p.add_argument("--videos", nargs="+", metavar="VIDEO", help="score only these videos")
    p.add_argument("--objects", nargs="+", type=int, metavar="ID", help="score only these object ids")
    p.add_argument("--allow_missing", action="store_true",
                   help="score videos/frames without a prediction as empty predictions instead of failing")
    p.add_argument("--workers", type=int,
                   help="worker processes (default: one per CPU core, at most one per video)")
    p.add_argument("--bound_th", type=float, default=DAVIS_BOUND_TH,
                   help="boundary tolerance: fraction of the image diagonal (<1) or pixels (>=1); "
                        "default 0.008 as in DAVIS")
    p.add_argument("--meta", type=Path, help="scenario metadata of a synthetic dataset (default: meta.json in "
                                             "--gt_dir or its parent): adds Dice per scenario and per event window")
    p.add_argument("--event_window", type=int, default=DEFAULT_EVENT_WINDOW,
                   help="frames scored from a point event on, e.g. a re-appearance (default %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.add_argument("--log_level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="logging level (default INFO)")
    return p


def check_outputs(args) -> None:
    """Each of --out/--csv/--plot can be written, replaces only a file evaluate.py wrote,
    differs from the others, and lies outside everything this run reads."""
    inputs = {"--pred_dir": args.pred_dir, "--gt_dir": args.gt_dir, "--meta": args.meta,
              "--class_map": args.class_map if args.class_map and args.class_map != "identity" else None}
    if args.meta is None and args.gt_dir.is_dir():
        inputs["the scenario metadata"] = find_meta(args.gt_dir, None)
    given = {}
    for flag in ("out", "csv", "plot"):
        path = getattr(args, flag)
        if not path:
            continue
        check_writable(path, f"--{flag}")
        check_not_input(path, inputs.values(), f"--{flag}", inputs.keys())
        for other, other_path in given.items():
            if Path(path).resolve() == Path(other_path).resolve():
                raise UserError(f"--{flag} and --{other} are the same file {path}; give each its own path")
        check_replaceable(path, f"--{flag}", OUTPUT_CHECKS[flag], "evaluate.py")
        given[flag] = path


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    if not math.isfinite(args.bound_th) or args.bound_th <= 0:
        raise UserError(f"--bound_th must be a positive number, got {args.bound_th}")
    check_outputs(args)  # before scoring, so that no score is thrown away
    config = EvaluationConfig(
        pred_dir=args.pred_dir, gt_dir=args.gt_dir, skip_first=args.skip_first, skip_last=args.skip_last,
        videos=args.videos, objects=args.objects, class_map=args.class_map, allow_missing=args.allow_missing,
        workers=args.workers, bound_th=args.bound_th, progress=not args.no_progress, meta=args.meta,
        event_window=args.event_window,
    )
    result = evaluate_predictions(config)
    if args.out:
        write_json(result, args.out)
    if args.csv:
        write_object_csv(result, args.csv)
    if args.plot:
        write_dice_plot(result, args.plot)
    print(format_table(result))
    if result.scenarios is not None:
        print(format_scenario_table(result.scenarios))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
