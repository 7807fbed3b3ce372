"""Accuracy of the onnxruntime loop against PyTorch: per-frame mask IoU and Dice vs ground truth.

    python eval/onnx_parity.py --checkpoint runs/quickstart/run/checkpoints/best.pt \\
        --dataset_dir runs/quickstart/data/test --memories sam2 tsms tsms_fast --out runs/onnx_parity

Exports the checkpoint once (or takes ``--onnx_dir``), then tracks every video of a VOS
split (``JPEGImages/`` + ``Annotations/``) from its first-frame ground-truth masks with
both backends, for each memory preset (the MS rule runs on the host, so one export serves
every preset). Per preset it reports the minimum and mean per-frame, per-object IoU
between the two backends' masks (the issue's bar: min >= 0.99) and each backend's Dice
against the ground truth (first frame excluded, as ``eval/evaluate.py --skip_first``).
Writes ``<out>/onnx_parity.json`` and ``.md`` and prints the table.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402
from utils.io import atomic_write  # noqa: E402
from utils.logging import disable_progress_bars, setup_logging  # noqa: E402

log = logging.getLogger("onnx_parity")


def track(predictor, source, prompts):
    """``{frame: bool [N, H, W]}`` (objects in prompt order) and the object ids."""
    from models import TrackingSession

    with TrackingSession(predictor, source) as session:
        session.add_prompts(prompts)
        masks = {r.frame_idx: r.masks() for r in session.propagate()}
        return masks, session.obj_ids


def compare_video(torch_predictor, onnx_predictor, video_dir: Path, ann_dir: Path) -> dict:
    from data.mask_io import read_label_png
    from eval.metrics import dice_score, iou_score
    from inference.runner import vos_prompts
    from inference.video_sources import ImageFolderSource

    source = ImageFolderSource(video_dir)
    prompts = vos_prompts(source, ann_dir)
    t0 = time.perf_counter()
    ref, ids = track(torch_predictor, source, prompts)
    t1 = time.perf_counter()
    got, ids_onnx = track(onnx_predictor, source, prompts)
    t2 = time.perf_counter()
    if ids != ids_onnx:
        raise RuntimeError(f"{video_dir.name}: objects differ ({ids} vs {ids_onnx})")
    ious, dice_ref, dice_got = [], [], []
    for f in sorted(ref):
        ious += [float(iou_score(a, b)) for a, b in zip(ref[f], got[f])]
        gt_path = ann_dir / f"{source.frame_name(f)}.png"
        if f > 0 and gt_path.is_file():
            labels = read_label_png(gt_path)
            for k, obj in enumerate(ids):
                dice_ref.append(float(dice_score(ref[f][k], labels == obj)))
                dice_got.append(float(dice_score(got[f][k], labels == obj)))
    return {"video": video_dir.name, "frames": len(ref), "objects": len(ids), "min_iou": min(ious),
            "mean_iou": float(np.mean(ious)), "dice_torch": dice_ref, "dice_onnx": dice_got,
            "seconds_torch": t1 - t0, "seconds_onnx": t2 - t1}


def onnx_parity(*, checkpoint, dataset_dir, memories, model_cfg=None, onnx_dir=None, out=None, max_videos=None) -> list:
    """One row per memory preset (see the module doc)."""
    from inference.onnx_backend import OnnxVideoPredictor
    from inference.video_sources import list_video_dirs
    from models import build_model
    from models.onnx_export import export_onnx

    dataset_dir = Path(dataset_dir)
    videos = list_video_dirs(dataset_dir / "JPEGImages") if (dataset_dir / "JPEGImages").is_dir() else []
    if not videos:
        raise UserError(f"{dataset_dir} holds no JPEGImages/<video>/ folders (a VOS split is expected)")
    videos = videos[:max_videos] if max_videos else videos
    if onnx_dir is None:
        if out is None:
            raise UserError("give --onnx_dir (an export) or --out (the export is written to <out>/export)")
        onnx_dir = Path(out) / "export"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(checkpoint=checkpoint, model_cfg=model_cfg, out=onnx_dir)
    rows = []
    for preset in memories:
        torch_predictor = build_model(config=model_cfg, checkpoint=checkpoint, memory=preset, predictor=True)
        spec = torch_predictor.memory_spec
        onnx_predictor = OnnxVideoPredictor(onnx_dir, memory=spec.as_dict())
        per_video = [compare_video(torch_predictor, onnx_predictor, v, dataset_dir / "Annotations" / v.name)
                     for v in videos]
        dice_t = [d for v in per_video for d in v["dice_torch"]]
        dice_o = [d for v in per_video for d in v["dice_onnx"]]
        rows.append({"memory": spec.describe(), "videos": len(per_video), "frames": sum(v["frames"] for v in per_video),
                     "min_iou": min(v["min_iou"] for v in per_video),
                     "mean_iou": float(np.mean([v["mean_iou"] for v in per_video])),
                     "dice_torch": float(np.mean(dice_t)) if dice_t else None,
                     "dice_onnx": float(np.mean(dice_o)) if dice_o else None,
                     "seconds_torch": sum(v["seconds_torch"] for v in per_video),
                     "seconds_onnx": sum(v["seconds_onnx"] for v in per_video),
                     "worst_video": min(per_video, key=lambda v: v["min_iou"])["video"]})
        log.info("%s: min IoU %.4f", preset, rows[-1]["min_iou"])
    return rows


def table(rows) -> str:
    def fmt(x, spec=".3f"):
        return "-" if x is None else format(x, spec)

    lines = ["| memory | videos | frames | min IoU (ORT vs torch) | mean IoU | Dice torch | Dice ORT | |ΔDice| | s torch | s ORT |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = None if r["dice_torch"] is None else abs(r["dice_torch"] - r["dice_onnx"])
        lines.append(f"| {r['memory']} | {r['videos']} | {r['frames']} | {fmt(r['min_iou'], '.4f')} | "
                     f"{fmt(r['mean_iou'], '.4f')} | {fmt(r['dice_torch'])} | {fmt(r['dice_onnx'])} | {fmt(delta, '.4f')} | "
                     f"{r['seconds_torch']:.1f} | {r['seconds_onnx']:.1f} |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = ArgumentParser(prog="onnx_parity.py", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="our checkpoint or an official SAM2 file (+ --model_cfg)")
    p.add_argument("--model_cfg", help="model config for official SAM2 checkpoints")
    p.add_argument("--dataset_dir", required=True, help="VOS split: JPEGImages/<video>/ + Annotations/<video>/")
    p.add_argument("--onnx_dir", help="an existing export of this checkpoint (default: export into <out>/export)")
    p.add_argument("--memories", nargs="+", default=["sam2", "tsms", "tsms_fast"], help="memory presets")
    p.add_argument("--max_videos", type=int, help="only the first N videos")
    p.add_argument("--out", help="new folder for the export and the report")
    p.add_argument("--log_level", default="INFO")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging(args.log_level)
    disable_progress_bars()
    out = Path(args.out) if args.out else None
    if out is not None and (out / "onnx_parity.json").exists():
        raise UserError(f"{out} already holds a parity report; give another --out")
    rows = onnx_parity(checkpoint=args.checkpoint, dataset_dir=args.dataset_dir, memories=args.memories,
                       model_cfg=args.model_cfg, onnx_dir=args.onnx_dir, out=out, max_videos=args.max_videos)
    text = table(rows)
    print(text)
    if out is not None:
        with atomic_write(out / "onnx_parity.json") as f:
            json.dump({"checkpoint": str(args.checkpoint), "dataset_dir": str(args.dataset_dir), "rows": rows}, f, indent=1)
        with atomic_write(out / "onnx_parity.md") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
