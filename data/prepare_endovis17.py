"""Convert a raw EndoVis2017 download into the VOS layout (see docs/data.md).

    python data/prepare_endovis17.py --raw_dir ./datasets/raw/EndoVis2017 \
        --out_dir ./datasets/EndoVis2017 --fold 0 [--objects instance|type]
    python data/prepare_endovis17.py --raw_dir ... --out_dir ... --split test=9,10
"""

import sys, pathlib  # noqa: E401  (bootstrap: repo root first, before any project import)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402

from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.logging import setup_logging  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw_dir", required=True, help="folder holding instrument_dataset_N/ (or one level up)")
    parser.add_argument("--out_dir", required=True, help="output root; splits go to <out_dir>/<split>/")
    parser.add_argument("--fold", type=int, default=0, choices=[0, 1, 2, 3],
                        help="standard fold: valid = {1,3} | {2,5} | {4,8} | {6,7}, train = the rest of 1..8")
    parser.add_argument("--split", action="append", metavar="NAME=IDS",
                        help="user split, e.g. test=9,10 (repeatable; replaces the fold splits)")
    parser.add_argument("--objects", choices=["instance", "type"], default="instance",
                        help="one id per instrument instance (label folder) or the 7 instrument-type ids")
    parser.add_argument("--image_format", choices=["jpg", "png"], default="jpg")
    parser.add_argument("--overwrite", action="store_true", help="re-convert videos that are already done")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from data.endovis17 import prepare_endovis17

    prepare_endovis17(
        args.raw_dir, args.out_dir, fold=args.fold, splits=args.split, objects=args.objects,
        image_format=args.image_format, overwrite=args.overwrite,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
