"""Convert a raw EndoVis2018 download into the VOS layout (see docs/data.md).

    python data/prepare_endovis18.py --raw_dir ./datasets/raw/EndoVis2018 \
        --out_dir ./datasets/EndoVis2018 [--objects scene|instrument_type|instrument_instance]
"""

import sys, pathlib  # noqa: E401  (bootstrap: repo root first, before any project import)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402

from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.logging import setup_logging  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw_dir", required=True, help="folder holding seq_N/ (or release folders with seq_N/)")
    parser.add_argument("--out_dir", required=True, help="output root; splits go to <out_dir>/<split>/")
    parser.add_argument("--split", action="append", metavar="NAME=IDS",
                        help="user split, e.g. test=1-4 (repeatable; replaces the standard "
                             "train=1,3,4,6,7,10-14,16 / valid=2,5,9,15)")
    parser.add_argument("--objects", choices=["scene", "instrument_type", "instrument_instance"], default="scene",
                        help="scene classes from the colour labels, or ISINet instrument masks")
    parser.add_argument("--classes", type=int, nargs="+", metavar="ID",
                        help="scene class ids to keep as objects (default: all 11); others become background")
    parser.add_argument("--isinet_dir", help="root of the ISINet annotations (default: --raw_dir)")
    parser.add_argument("--isinet_folder", default="instrument_labels",
                        help="per-sequence folder holding ISINet's per-instance PNGs")
    parser.add_argument("--image_format", choices=["jpg", "png"], default="jpg")
    parser.add_argument("--overwrite", action="store_true", help="re-convert videos that are already done")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from data.endovis18 import prepare_endovis18

    prepare_endovis18(
        args.raw_dir, args.out_dir, splits=args.split, objects=args.objects, classes=args.classes,
        isinet_root=args.isinet_dir, isinet_folder=args.isinet_folder, image_format=args.image_format,
        overwrite=args.overwrite,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
