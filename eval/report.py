"""Outputs of an evaluation: JSON (every level), per-object CSV, console table, Dice plot.

Files are written through :func:`utils.io.atomic_write`, so a failed run never leaves a
partial file. JSON and CSV hold fractions in [0, 1]; the console table shows percentages.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Dict, List

from eval.aggregate import METRIC_LABELS, METRICS, EvaluationResult, Summary
from utils.io import atomic_write

CSV_COLUMNS = ("video", "object_id", "class", "n_frames", "dice", "j", "f", "jf")
STD_NOTE = "population standard deviation (ddof=0)"
UNITS = "fractions in [0, 1]"
PLOT_SOFTWARE = "TSMS-SAM2 eval/evaluate.py"  # a PNG text chunk: how a re-run knows the plot is ours


# What each output looks like when evaluate.py wrote it: only such a file is ever replaced.
def is_report_json(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return isinstance(data, dict) and data.get("units") == UNITS and "overall" in data and "settings" in data


def is_object_csv(path: Path) -> bool:
    with open(path, encoding="utf-8", newline="") as f:
        return f.readline().rstrip("\r\n") == ",".join(CSV_COLUMNS)


def is_dice_plot(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        return image.format == "PNG" and image.info.get("Software") == PLOT_SOFTWARE


OUTPUT_CHECKS = {"out": is_report_json, "csv": is_object_csv, "plot": is_dice_plot}


def _num(x):
    """JSON-safe float: NaN becomes null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _summary_dict(summaries: Dict[str, Summary]) -> dict:
    return {m: {"mean": _num(s.mean), "std": _num(s.std), "n": s.n} for m, s in summaries.items()}


def _class_dict(metrics):
    if metrics is None:
        return None
    out = {k: (_num(v) if isinstance(v, float) else v) for k, v in metrics.items() if k != "per_class_iou"}
    out["per_class_iou"] = {c: _num(v) for c, v in metrics["per_class_iou"].items()}
    return out


def result_to_dict(result: EvaluationResult) -> dict:
    """Every level of ``result`` as plain JSON-ready data (per-frame lists follow ``frames``)."""
    videos = {}
    for v in result.videos:
        videos[v.name] = {
            "n_frames": len(v.frames),
            "n_objects": len(v.objects),
            "missing_prediction": v.missing_prediction,
            "missing_frames": list(v.missing_frames),
            "mean_and_std_across_objects": _summary_dict(v.summary),
            "class_metrics": _class_dict(v.class_metrics),
            "frames": list(v.frames),
            "objects": {
                str(o.object_id): {
                    "class": o.class_name,
                    "n_frames": o.n_frames,
                    **{m: _num(o.scores[m]) for m in METRICS},
                    "per_frame": {m: [_num(x) for x in o.frames[m]] for m in ("dice", "j", "f")},
                }
                for o in v.objects
            },
        }
    n_objects, n_videos = len(result.objects), sum(1 for v in result.videos if v.objects)
    return {
        "units": UNITS,
        "std": STD_NOTE,
        "settings": result.settings,
        "overall": {
            "n_videos": len(result.videos),
            "n_objects": n_objects,
            "n_frames": result.n_frames,
            "across_objects": {
                "description": f"mean and std over all {n_objects} objects, pooled over videos",
                **_summary_dict(result.across_objects),
            },
            "across_videos": {
                "description": f"mean and std of the {n_videos} per-video means (each the mean over its objects)",
                **_summary_dict(result.across_videos),
            },
            "class_metrics": _class_dict(result.class_metrics),
        },
        "videos": videos,
        **({"scenarios": result.scenarios} if result.scenarios is not None else {}),
    }


def write_json(result: EvaluationResult, path: Path) -> None:
    with atomic_write(path, "w") as f:
        json.dump(result_to_dict(result), f, indent=2, allow_nan=False)
        f.write("\n")


def write_object_csv(result: EvaluationResult, path: Path) -> None:
    """One row per (video, object): frame-mean Dice, J, F, J&F as fractions."""
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for o in result.objects:
            writer.writerow([o.video, o.object_id, o.class_name or "", o.n_frames,
                             *(f"{o.scores[m]:.6f}" for m in METRICS)])


def _pct(s: Summary) -> str:
    return "-" if s.n == 0 else f"{100 * s.mean:6.2f} ± {100 * s.std:5.2f}"


def _pct1(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.2f}"


def format_table(result: EvaluationResult) -> str:
    """Console summary in percent: overall (across objects, across videos) then per video.

    With a class map, a Challenge IoU column is added (per video: that video's frames;
    overall: all frames pooled) and the pooled class metrics get their own lines.
    """
    n_obj = len(result.objects)
    n_vid = sum(1 for v in result.videos if v.objects)
    cm = result.class_metrics
    labels = [v.name + (" (no prediction)" if v.missing_prediction else "") for v in result.videos]
    width = max([len("overall, across objects")] + [len(label) for label in labels])

    def row(label, n_objects, n_frames, cells, challenge=""):
        text = f"{label:<{width}}  {n_objects:>7}  {n_frames:>6}  " + "  ".join(f"{c:^15}" for c in cells)
        return text + (f"  {challenge:>13}" if cm is not None else "")

    lines: List[str] = [
        f"Scores in % as mean ± std ({STD_NOTE}).",
        f"  across objects: over all {n_obj} objects pooled; across videos: over the {n_vid} per-video means;",
        "  per-video rows: over that video's objects.",
        row("", "objects", "frames", [METRIC_LABELS[m] for m in METRICS], "Challenge IoU"),
    ]
    for label, summaries in (("overall, across objects", result.across_objects),
                             ("overall, across videos", result.across_videos)):
        challenge = _pct1(cm["challenge_iou"]) if cm is not None else ""
        lines.append(row(label, n_obj, result.n_frames, [_pct(summaries[m]) for m in METRICS], challenge))
    if cm is not None:
        lines.append(f"class metrics (all frames pooled): Challenge IoU {_pct1(cm['challenge_iou'])}  "
                     f"ISINet IoU {_pct1(cm['isinet_iou'])}  mcIoU {_pct1(cm['mciou'])}")
        if cm["per_class_iou"]:
            lines.append("  per-class IoU: " + ", ".join(f"{c} {_pct1(v)}" for c, v in cm["per_class_iou"].items()))
    lines.append("-" * len(lines[3]))
    for label, v in zip(labels, result.videos):
        challenge = _pct1(v.class_metrics["challenge_iou"]) if v.class_metrics else ""
        lines.append(row(label, len(v.objects), len(v.frames), [_pct(v.summary[m]) for m in METRICS], challenge))
    return "\n".join(lines)


def write_dice_plot(result: EvaluationResult, path: Path) -> None:
    """PNG bar chart: mean Dice per video (error bar: std across its objects), with a
    dashed line at the mean across videos."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    videos = [v for v in result.videos if v.objects]
    names = [v.name for v in videos]
    means = [100 * v.summary["dice"].mean for v in videos]
    stds = [100 * v.summary["dice"].std for v in videos]
    fig = Figure(figsize=(max(4.0, 0.6 * len(names) + 2.0), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="#4C72B0", label="video mean ± std across objects")
    overall = result.across_videos["dice"]
    if overall.n:
        ax.axhline(100 * overall.mean, color="#C44E52", linestyle="--",
                   label=f"mean across videos {100 * overall.mean:.2f} ± {100 * overall.std:.2f}")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylabel("Dice (%)")
    ax.set_ylim(0, 125)  # headroom above 100 for the legend
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("Dice per video")
    ax.legend(loc="upper center", fontsize=8, ncol=2, frameon=False)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", metadata={"Software": PLOT_SOFTWARE})
