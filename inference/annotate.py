"""Annotate a surgical video in the browser: click, track, correct, export.

Example:
    python inference/annotate.py --video_path ./samples/surgery.mp4 \\
        --checkpoint ./checkpoints/tsms_sam2_best.pth --output_dir ./annotations
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging  # noqa: E402
import socket  # noqa: E402

from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

from inference.annotator.launch import LOCAL_HOSTS  # noqa: E402
from inference.annotator.security import MIN_TOKEN_LENGTH, TOKEN_ENV, load_token, new_token  # noqa: E402
from inference.annotator.state import PRESETS  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(prog="annotate.py", description=__doc__.splitlines()[0])
    p.add_argument("--video_path", required=True, help="mp4/avi/mov file or frame folder")
    p.add_argument("--checkpoint", help="our checkpoint (embeds its config) or an official SAM2 file")
    p.add_argument("--model_cfg", help="model config for official SAM2 checkpoints, e.g. 'small' or a yaml path")
    p.add_argument("--memory", default="tsms", choices=PRESETS, help="memory preset to start with (default tsms)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--output_dir", default="./annotations",
                   help="exports and the saved session go here; an existing session there is resumed")
    p.add_argument("--masks", help="folder of palette PNGs (a predict_video.py output or an export) to correct")
    p.add_argument("--fps", type=float, help="frame rate of a frame folder (default: its meta.json, else 30)")
    p.add_argument("--threshold", type=float, default=0.5, help="flag frames whose object probability is below this")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--token_file", help=f"file holding the access token (at least {MIN_TOKEN_LENGTH} characters); "
                   f"or set ${TOKEN_ENV}. Without either, one is made up and printed when --host is not local")
    p.add_argument("--token", help="refused: a token on the command line is visible to every local user (ps)")
    p.add_argument("--no_evict", action="store_true", help="keep every frame's tracker outputs in memory")
    p.add_argument("--log_level", default="INFO")
    args = p.parse_args(argv)
    if not args.checkpoint and not args.model_cfg:
        raise UserError("give --checkpoint (ours or official) and/or --model_cfg")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, got {args.port}")
    if not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"--threshold is a probability in 0..1, got {args.threshold}")
    if args.token is not None:
        raise UserError(f"--token on the command line is visible to every local user (ps): put the token in "
                        f"${TOKEN_ENV} or in a file given with --token_file")
    args.token = load_token(args.token_file)
    if args.host not in LOCAL_HOSTS and not args.token:
        args.token = new_token()
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logging(args.log_level)
    logging.getLogger("sam2").setLevel(logging.WARNING)
    from inference.annotator import open_annotator, serve
    from inference.annotator.launch import check_port_free
    from models import build_model
    from inference.video_sources import open_video_source
    from utils.device import resolve_device

    source = open_video_source(args.video_path)  # bad input fails before minutes of model building
    check_port_free(args.host, args.port)
    device = resolve_device(args.device)

    def make_predictor(preset):
        return build_model(config=args.model_cfg, checkpoint=args.checkpoint, memory=preset, device=device, predictor=True)

    built = {args.memory: make_predictor(args.memory)}  # a bad checkpoint fails before the server starts
    state = open_annotator(source, lambda p: built.pop(p, None) or make_predictor(p), args.output_dir,
                           masks_dir=args.masks, preset=args.memory, threshold=args.threshold, evict=not args.no_evict,
                           fps=args.fps)
    shown = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    # printed on the user's own terminal, as Jupyter does; never on the command line (ps)
    url = f"http://{shown}:{args.port}/" + (f"?token={args.token}" if args.token else "")
    print(f"annotating {state.source.name} ({state.num_frames} frames): open {url}  (Ctrl-C to stop)", flush=True)
    try:
        serve(state, args.host, args.port, args.token)
    finally:
        state.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
