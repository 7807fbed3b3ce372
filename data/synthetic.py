"""Generate synthetic surgical-like videos in the VOS layout (see data/synthetic_video.py).

    python data/synthetic.py --out datasets/synthetic --num_videos 8 --num_frames 48 --seed 0 \
        [--speed slow|fast|mixed] [--size 512 512] [--fps 10] [--no_mp4]
        [--scenario basic|occlusion|crossing|jumps|long|appearance|mixed] [--domain surgical|generic]

Scenarios (data/synthetic_scenarios.py) record their events in meta.json; see docs/data.md.
``--domain generic``: another family for pretraining (natural-ish scenes, varied objects, a
panning camera; data/synthetic_generic.py), basic videos only.
"""

import sys, pathlib  # noqa: E401  (bootstrap: repo root first, before any project import)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import math  # noqa: E402

from data.synthetic_scenarios import SCENARIOS  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.logging import setup_logging  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory (replaced if written by this tool)")
    parser.add_argument("--num_videos", type=int, required=True)
    parser.add_argument("--num_frames", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed", choices=["slow", "fast", "mixed"], default="mixed",
                        help="mixed alternates slow (even index) and fast (odd index) videos")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=[512, 512])
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the mp4 files")
    parser.add_argument("--scenario", choices=list(SCENARIOS), default="basic",
                        help="basic: the --speed videos (default); mixed cycles occlusion, crossing, jumps, long, "
                             "appearance; sustained (>= 96 frames of alternating slow and fast motion) is asked for by "
                             "name; --speed applies to basic only; long videos have >= 200 frames")
    parser.add_argument("--domain", choices=["surgical", "generic"], default="surgical",
                        help="surgical (default): tissue and instruments; generic: textured scenes, varied "
                             "free-floating objects and a panning camera, for pretraining (basic scenario only)")
    parser.add_argument("--no_mp4", action="store_true", help="skip writing videos/<name>.mp4")
    parser.add_argument("--log_level", default="INFO")
    return parser


MAX_SIDE = 4096  # a bigger synthetic frame is a typo, not an experiment (and fills the disk)
MAX_FPS = 1000.0


def check_args(args) -> None:
    if not math.isfinite(args.fps) or not 0 < args.fps <= MAX_FPS:
        raise UserError(f"--fps must lie in (0, {MAX_FPS:g}], got {args.fps}")
    if any(not 32 <= side <= MAX_SIDE for side in args.size):
        raise UserError(f"--size H W must lie in 32..{MAX_SIDE}, got {args.size[0]} {args.size[1]}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    setup_logging(args.log_level)
    from data.synthetic_video import write_synthetic_dataset

    write_synthetic_dataset(
        args.out, args.num_videos, args.num_frames, seed=args.seed, speed=args.speed,
        size=args.size, fps=args.fps, write_mp4=not args.no_mp4, scenario=args.scenario, domain=args.domain,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
