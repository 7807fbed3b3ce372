"""Segment surgical videos with TSMS-SAM2 from mask, box or point prompts.

Example:
    python inference/predict_video.py --video_path ./samples/surgery.mp4 \\
        --checkpoint ./checkpoints/tsms_sam2_best.pth --prompt_type mask --mask_path first.png
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging  # noqa: E402

from inference.prompts import PROMPT_TYPES  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.logging import disable_progress_bars, setup_logging  # noqa: E402


def _threshold(text: str):
    return text if text == "auto" else float(text)


def parse_args(argv=None):
    p = ArgumentParser(prog="predict_video.py", description=__doc__.splitlines()[0])
    src = p.add_argument_group("input")
    src.add_argument("--video_path", help="mp4/avi/mov file, frame folder, camera index (0) or stream URL")
    src.add_argument("--dataset_dir", help="VOS split (JPEGImages/ + Annotations/): run every video, first-frame GT prompts")
    src.add_argument("--live", action="store_true", help="treat --video_path as a live stream (segment frames as they arrive)")
    model = p.add_argument_group("model")
    model.add_argument("--checkpoint", help="our checkpoint (embeds its config) or an official SAM2 file")
    model.add_argument("--model_cfg", help="model config for official SAM2 checkpoints, e.g. configs/sam2.1/sam2.1_hiera_s.yaml or 'small'")
    model.add_argument("--memory", default=None, help="memory preset: tsms | tsms_fast | tsms_pool | sam2 | surgsam2 | quality | tsms_quality | samurai | "
                       "dam4sam (configs/memory/; default: the checkpoint's, else tsms)")
    model.add_argument("--memory_bank_size", type=int, help="attended memory frames (SAM2's num_maskmem, default 7)")
    model.add_argument("--pruning_threshold", type=_threshold, help="only prune memory frames at least this similar "
                       "(cosine in [-1, 1]), or 'auto': more similar than usual for this video (docs/method.md)")
    model.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"),
                       help="onnxruntime: track with an export of inference/export_onnx.py (--onnx_dir), no torch in the loop")
    model.add_argument("--onnx_dir", help="the export folder, for --backend onnxruntime")
    model.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    speed = p.add_argument_group("speed (README: Speed and memory)")
    speed.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="bf16: autocast (mask decoder stays fp32)")
    speed.add_argument("--batch_objects", action="store_true", help="track objects that share memory frames in one batch")
    speed.add_argument("--compile", action="store_true", help="torch.compile the image encoder and memory attention")
    pr = p.add_argument_group("prompts")
    pr.add_argument("--prompt_type", default="mask", choices=PROMPT_TYPES, help="mask, box or point (default mask)")
    pr.add_argument("--mask_path", help="palette PNG; each non-zero value is an object id")
    pr.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), help="box for object 1, video pixels")
    pr.add_argument("--points", help='points for object 1: "x,y,label;x,y,label" (label 1 positive, 0 negative)')
    pr.add_argument("--prompt_frame", type=int, default=0, help="frame the prompt is on (default 0)")
    pr.add_argument("--prompts", help="JSON file with per-object, per-frame prompts (see docs/usage.md)")
    pr.add_argument("--track_later_objects", action="store_true", help="VOS mode: also prompt objects that appear after the first frame")
    out = p.add_argument_group("output")
    out.add_argument("--output_dir", default="./results", help="where <video>/<frame>.png masks go (default ./results)")
    out.add_argument("--reverse", action="store_true", help="also propagate backwards from the prompt frame")
    out.add_argument("--save_per_object", action="store_true", help="also write per_object/<video>/<obj_id>/<frame>.png")
    out.add_argument("--overlay", action="store_true", help="also write overlays/<video>.mp4 with coloured masks and ids")
    out.add_argument("--no_evict", action="store_true", help="keep every frame's outputs in memory (SAM2's behaviour)")
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    out.add_argument("--log_level", default="INFO")
    args = p.parse_args(argv)
    if bool(args.video_path) == bool(args.dataset_dir):
        raise UserError("give exactly one of --video_path or --dataset_dir")
    if args.backend == "onnxruntime":
        if not args.onnx_dir:
            raise UserError("--backend onnxruntime needs --onnx_dir (an export of inference/export_onnx.py)")
        unsupported = [flag for flag, on in (("--dtype bf16", args.dtype != "fp32"), ("--batch_objects", args.batch_objects),
                                             ("--compile", args.compile), ("--checkpoint", args.checkpoint),
                                             ("--model_cfg", args.model_cfg)) if on]
        if unsupported:
            raise UserError(f"--backend onnxruntime does not take {', '.join(unsupported)} (the export fixes the model)")
    elif args.onnx_dir:
        raise UserError("--onnx_dir needs --backend onnxruntime")
    elif not args.checkpoint and not args.model_cfg:
        raise UserError("give --checkpoint (ours or official) and/or --model_cfg")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.quiet:
        disable_progress_bars()
    setup_logging(args.log_level)
    logging.getLogger("sam2").setLevel(logging.WARNING)
    from inference.runner import PredictOptions, run_predict_video

    run_predict_video(PredictOptions.from_namespace(args))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
