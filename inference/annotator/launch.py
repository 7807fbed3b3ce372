"""Opening an annotator (new or resumed) and serving it with uvicorn."""

from __future__ import annotations

import contextlib
import logging
import socket
from pathlib import Path
from typing import Callable, Optional

from inference.annotator import publish, session_file, tracked
from inference.annotator.export import check_video_name, load_masks
from inference.annotator.state import AnnotatorError, AnnotatorState
from inference.video_sources import open_video_source
from utils.errors import UserError
from utils.io import hold_lock

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def open_annotator(video_path, make_predictor: Callable[[str], object], output_dir, *, masks_dir=None,
                   preset: str = "tsms", threshold: float = 0.5, evict: bool = True,
                   fps: Optional[float] = None) -> AnnotatorState:
    """The annotator state for a video: resumed from ``output_dir`` if it holds a session
    (with its tracked masks), then ``masks_dir`` masks loaded on top for correction, except over a
    resumed session (that would undo its corrections).
    ``video_path`` may also be an open frame source. ``fps`` (``--fps``) overrides what the
    video says (a frame folder says it in ``meta.json`` or not at all: then 30 is a default).

    ``output_dir`` is locked until :meth:`AnnotatorState.close`: a second annotator on it is
    refused. A session file that does not pass :func:`session_file.validate` is refused
    with one line per problem, and left as it is."""
    source = video_path if hasattr(video_path, "read") else open_video_source(str(video_path))
    if getattr(source, "live", False):
        raise UserError("the annotator needs a recorded video (mp4 or frame folder), not a live stream")
    if fps is not None:
        if not (isinstance(fps, (int, float)) and 0 < fps <= 1000):
            raise UserError(f"--fps must be in (0, 1000], got {fps}")
        source.fps, source.fps_source = float(fps), "--fps"
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output_dir {output_dir} exists and is not a folder")
    check_video_name(source.name)  # before anything is removed or written under its name
    masks_dir = masks_folder(masks_dir, source.name) if masks_dir is not None else None  # before anything is written
    resources = contextlib.ExitStack()
    try:
        resources.enter_context(hold_lock(output_dir, "annotator", reentrant=False))
        saved = session_file.read(output_dir, source.name, len(source), source.height, source.width)
        publish.recover(output_dir, source.name)
        _remove_stale_temp_files(output_dir, source.name)
        try:
            state = AnnotatorState(source, make_predictor, output_dir, preset=preset, threshold=threshold, evict=evict)
        except AnnotatorError as exc:
            raise UserError(str(exc)) from None
        state.resources.enter_context(resources.pop_all())
        try:
            _resume(state, saved, masks_dir)
        except BaseException:
            state.close()
            raise
    except OSError as exc:
        resources.close()
        raise UserError(f"cannot use --output_dir {output_dir}: {exc.strerror or exc} (errno {exc.errno})") from None
    except BaseException:
        resources.close()
        raise
    return state


def _resume(state: AnnotatorState, saved: Optional[dict], masks_dir) -> None:
    """Prompts replayed, tracked masks back from the log (what it lacks is marked for
    re-tracking), a new log started, ``masks_dir`` on top, the session saved."""
    output_dir, video = state.output_dir, state.source.name
    if saved is not None:
        session_file.restore(state, saved)
        if saved["tracked"] is not None:
            header = {"video": video, "num_frames": state.num_frames, "size": [state.height, state.width]}
            frames, problem = tracked.read(output_dir, saved["tracked"]["file"], saved["tracked"]["seq"], header)
            bad = [f for f, (png, _, _) in frames.items() if png is not None and not state.store.check_png(png)]
            if bad and problem is None:
                problem = f"the tracked masks of frames {bad[:5]} are damaged"
            for frame, frame_state in frames.items():
                if frame not in bad:
                    state.store.put_state(frame, frame_state, persist=False)
            if problem:
                for obj_id in state.prompted_objects():
                    state.dirty[obj_id] = state.first_prompt_frame(obj_id)
                log.warning("%s; objects %s are marked for re-tracking", problem, state.prompted_objects())
            log.info("tracked masks of %d frames restored; to re-track: %s", len(frames),
                     {o: f for o, f in sorted(state.dirty.items())} or "nothing")
        elif state.exported and (output_dir / video).is_dir():  # a session of an older version
            load_masks(state, output_dir / video)
            log.info("masks shown from the last export; every prompted object is marked for re-tracking")
    state.start_log()
    if masks_dir is not None and saved is not None:  # re-running the same command resumes the corrections
        log.warning("resumed the session in %s: --masks %s is not loaded again (it would undo the corrections); "
                    "use another --output_dir to start over from it", output_dir, masks_dir)
    elif masks_dir is not None:
        load_masks(state, Path(masks_dir))
    state.save(export_current=None if masks_dir is None else False)
    tracked.remove_others(output_dir, keep=state.store.journal.name)


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
    """Temp files an earlier run left behind when killed (only names we make, only files)."""
    if not output_dir.is_dir():
        return
    stale = list(output_dir.glob(f".{session_file.SESSION_NAME}.*.tmp"))
    stale += list((output_dir / "overlays").glob(f".{video}.tmp.mp4")) + list((output_dir / "coco").glob(f".{video}.json.*.tmp"))
    for path in stale:
        if path.is_symlink() or not path.is_file():
            continue  # not what we write there: never ours to remove
        log.info("removing a stale temporary file of an earlier run: %s", path)
        path.unlink()


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
