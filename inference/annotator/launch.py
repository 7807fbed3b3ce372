"""Opening an annotator (new or resumed) and serving it with uvicorn."""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path
from typing import Callable, Optional

from inference.annotator import session_file
from inference.annotator.export import check_video_name, load_masks
from inference.annotator.state import AnnotatorError, AnnotatorState
from inference.video_sources import open_video_source
from utils.errors import UserError

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def open_annotator(video_path, make_predictor: Callable[[str], object], output_dir, *, masks_dir=None,
                   preset: str = "tsms", threshold: float = 0.5, evict: bool = True) -> AnnotatorState:
    """The annotator state for a video: resumed from ``output_dir`` if it holds a session
    (and its last export), then ``masks_dir`` masks loaded on top for correction, except over a
    resumed export (that would undo its corrections). ``video_path`` may also be an open frame source."""
    source = video_path if hasattr(video_path, "read") else open_video_source(str(video_path))
    if getattr(source, "live", False):
        raise UserError("the annotator needs a recorded video (mp4 or frame folder), not a live stream")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output_dir {output_dir} exists and is not a folder")
    check_video_name(source.name)  # before anything is removed or written under its name
    masks_dir = masks_folder(masks_dir, source.name) if masks_dir is not None else None
    _remove_stale_temp_files(output_dir, source.name)
    saved = session_file.read(output_dir)
    try:
        state = AnnotatorState(source, make_predictor, output_dir, preset=preset, threshold=threshold, evict=evict)
    except AnnotatorError as exc:
        raise UserError(str(exc)) from None
    if saved is not None:
        session_file.restore(state, saved)
        exported = state.output_dir / source.name
        if state.exported and exported.is_dir():
            load_masks(state, exported)
            state.dirty.clear()  # the export holds their tracked masks
            if masks_dir is not None:  # re-running the same command resumes the corrections
                log.warning("resumed %s with its export: --masks %s is not loaded again (it would undo the "
                            "corrections); use another --output_dir to start over from it", output_dir, masks_dir)
                masks_dir = None
    if masks_dir is not None:
        load_masks(state, masks_dir)
    state.save()
    return state


def masks_folder(masks_dir, video: str) -> Path:
    """The folder of ``video``'s masks that ``--masks`` names: the video's own folder, or an
    output root holding ``<video>/`` (what predict_video.py and an export write)."""
    masks_dir = Path(masks_dir)
    if (masks_dir / video).is_dir():
        log.info("--masks %s holds %s/: opening %s", masks_dir, video, masks_dir / video)
        return masks_dir / video
    if masks_dir.is_dir() and not any(masks_dir.glob("*.png")):
        videos = sorted(p.name for p in masks_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if videos:  # an output root of other videos: say so rather than "no masks named like ..."
            raise UserError(f"--masks {masks_dir} has no {video}/ folder and no masks of its own "
                            f"(it holds {', '.join(videos[:5])}{' ...' if len(videos) > 5 else ''})")
    log.info("--masks: opening %s", masks_dir)
    return masks_dir


def _remove_stale_temp_files(output_dir: Path, video: str) -> None:
    """Temp files an earlier run left behind when killed (only names we make)."""
    if not output_dir.is_dir():
        return
    stale = list(output_dir.glob(f".{video}.export-*")) + list(output_dir.glob(f".{session_file.SESSION_NAME}.*.tmp"))
    stale += list((output_dir / "overlays").glob(f".{video}.tmp.mp4")) + list((output_dir / "coco").glob(f".{video}.json.*.tmp"))
    for path in stale:
        log.info("removing a stale temporary file of an earlier run: %s", path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def check_port_free(host: str, port: int) -> None:
    """Refuse, on one line, a port that uvicorn could not bind. Bound as uvicorn binds it
    (SO_REUSEADDR), so a port whose last connections linger in TIME_WAIT after a kill is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (port in use? try --port)") from None


def serve(state: AnnotatorState, host: str = "127.0.0.1", port: int = 8765, token: Optional[str] = None) -> None:
    """Serve until Ctrl-C. Any host but the loopback needs a token."""
    import uvicorn

    from inference.annotator.server import create_app

    if host not in LOCAL_HOSTS and not token:
        raise UserError(f"--host {host} exposes the annotator: it needs a token")
    check_port_free(host, port)
    uvicorn.run(create_app(state, token=token, host=host, port=port), host=host, port=port, log_level="warning",
                proxy_headers=False)  # no X-Forwarded-* rewriting of the scheme or client
