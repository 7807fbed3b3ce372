"""Export a SAM2 / TSMS-SAM2 checkpoint to ONNX for the onnxruntime loop (and TensorRT).

Example:
    python inference/export_onnx.py --checkpoint ./checkpoints/tsms_sam2_best.pth --out ./exports/tsms_512 --size 512
    python inference/predict_video.py --backend onnxruntime --onnx_dir ./exports/tsms_512 \\
        --video_path ./samples/surgery.mp4 --mask_path first.png

Writes the graphs, constants.npz and manifest.json (shapes, memory, versions, file hashes,
each graph's max abs error against PyTorch) into a new folder. docs/deploy.md: TensorRT,
Holoscan, DeepStream.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging  # noqa: E402
import warnings  # noqa: E402

from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.logging import setup_logging  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(prog="export_onnx.py", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="our checkpoint (embeds its config) or an official SAM2 file")
    p.add_argument("--model_cfg", help="model config for official SAM2 checkpoints, e.g. 'small' or a yaml path")
    p.add_argument("--out", required=True, help="a new (or empty) folder for the export")
    p.add_argument("--size", type=int, help="input resolution, a multiple of 64 (default: the checkpoint's, e.g. 1024)")
    p.add_argument("--no_check", action="store_true", help="skip the check against PyTorch (not recommended)")
    p.add_argument("--log_level", default="INFO")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging(args.log_level)
    from models.onnx_export import export_onnx

    with warnings.catch_warnings():  # the tracer's notes on Python-side shapes, many and harmless
        warnings.simplefilter("ignore")
        manifest = export_onnx(checkpoint=args.checkpoint, model_cfg=args.model_cfg, out=args.out, size=args.size,
                               check=not args.no_check)
    worst = max((g["max_abs_error"] or 0.0) for g in manifest["graphs"].values())
    logging.getLogger("export_onnx").info("wrote %s (%d graphs, image size %d, worst max abs error %.1e)", args.out,
                                          len(manifest["graphs"]), manifest["settings"]["image_size"], worst)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
