"""Time eval/evaluate.py's scoring on synthetic surgical-size data.

    python eval/benchmark_evaluate.py                      # 10 videos x 300 frames, 1280x1024
    python eval/benchmark_evaluate.py --videos 2 --frames 20

Writes palette PNGs (three instrument-like objects per video; predictions are the ground
truth jittered, thickened and sometimes dropped) under --data_dir (default: a folder in the
system temp dir, reused when it already holds the requested data), then times
:func:`eval.evaluate_predictions` with the default number of worker processes and prints the figure.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships a top-level `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from eval.evaluation import EvaluationConfig, available_cpus, evaluate_predictions  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

logger = logging.getLogger("eval.benchmark_evaluate")
PALETTE = [0, 0, 0, 230, 25, 75, 60, 180, 75, 255, 225, 25, 0, 130, 200] + [128] * (3 * 251)


def _draw_instrument(canvas, t, k, h, w, jitter=(0.0, 0.0), widen=0):
    """One tool: a thick shaft from the image border to a moving tip, plus two jaws."""
    phase = 2 * np.pi * (t / 150.0 + k / 3.0)
    tip = np.array([w * (0.5 + 0.25 * np.cos(phase + k)), h * (0.5 + 0.25 * np.sin(1.3 * phase))]) + jitter
    base = np.array([[0, h * 0.8], [w, h * 0.85], [w * 0.3, h]][k % 3])
    direction = (tip - base) / (np.linalg.norm(tip - base) + 1e-9)
    normal = np.array([-direction[1], direction[0]])
    cv2.line(canvas, tuple(int(v) for v in base), tuple(int(v) for v in tip), k + 1, 70 + 10 * k + widen)
    for side in (-1, 1):
        jaw = np.array([tip + 25 * side * normal, tip + 60 * direction + 8 * side * normal, tip])
        cv2.fillConvexPoly(canvas, np.round(jaw).astype(np.int32), k + 1)


def _write_video(index, root, frames, size):
    w, h = size
    rng = np.random.default_rng(index)
    for side in ("gt", "pred"):
        (root / side / f"video{index:02d}").mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        gt = np.zeros((h, w), np.uint8)
        pred = np.zeros((h, w), np.uint8)
        for k in range(3):
            _draw_instrument(gt, t + 40 * index, k, h, w)
            if rng.random() > 0.03:  # the tracker sometimes loses an object
                _draw_instrument(pred, t + 40 * index, k, h, w, rng.normal(0, 6, 2), int(rng.integers(-8, 9)))
        for side, labels in (("gt", gt), ("pred", pred)):
            image = Image.fromarray(labels)  # mode L; putpalette makes it P, values unchanged
            image.putpalette(PALETTE)
            image.save(root / side / f"video{index:02d}" / f"{t:05d}.png")


def make_dataset(root: Path, videos: int, frames: int, size) -> None:
    stamp = root / "spec.json"
    spec = {"videos": videos, "frames": frames, "size": list(size)}
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        logger.info("reusing synthetic data in %s", root)
        return
    logger.info("writing %d videos x %d frames at %dx%d to %s", videos, frames, size[0], size[1], root)
    with multiprocessing.Pool(available_cpus()) as pool:
        pool.map(partial(_write_video, root=root, frames=frames, size=size), range(videos))
    stamp.write_text(json.dumps(spec))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=10)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--workers", type=int, help="default: one per CPU core")
    p.add_argument("--data_dir", type=Path, default=Path(tempfile.gettempdir()) / "tsms_eval_benchmark")
    args = p.parse_args(argv)
    setup_logging("INFO")
    make_dataset(args.data_dir, args.videos, args.frames, (args.width, args.height))
    config = EvaluationConfig(pred_dir=args.data_dir / "pred", gt_dir=args.data_dir / "gt",
                              workers=args.workers, progress=False)
    start = time.perf_counter()
    result = evaluate_predictions(config)
    elapsed = time.perf_counter() - start
    n = result.n_frames
    print(f"evaluated {len(result.videos)} videos x {n // max(len(result.videos), 1)} frames at "
          f"{args.width}x{args.height} ({len(result.objects)} objects) with {result.settings['workers']} "
          f"worker(s) in {elapsed:.1f} s ({1000 * elapsed / n:.1f} ms per frame); "
          f"Dice {100 * result.across_objects['dice'].mean:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
