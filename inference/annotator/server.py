"""The annotator's HTTP API (FastAPI) and its static page.

Every error is JSON ``{"error": "<one line>"}`` with a 4xx code; the state is left as it
was. Only the loaded video's frames, its masks and the files of ``static/`` are served.
Who may ask what (Host names, token, origin and CSRF checks, body limit, security headers)
is decided in one layer in front of every route: ``inference.annotator.security``.
"""

from __future__ import annotations

import errno
import html
import logging
import secrets
from pathlib import Path
from typing import List, Literal, Optional

import cv2
import numpy as np
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from data.mask_io import davis_palette
from inference.annotator import security
from inference.annotator.export import export
from inference.annotator.state import AnnotatorError, AnnotatorState
from utils.errors import UserError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}  # index.html only at "/" (it gets the CSRF token)
CSRF_PLACEHOLDER = "{{csrf_token}}"
OVERLAY_ALPHA = 140


class NewObject(BaseModel):
    name: Optional[str] = Field(None, max_length=200)
    type: str = ""


class ObjectUpdate(BaseModel):
    name: Optional[str] = Field(None, max_length=200)
    type: Optional[str] = None


# strict: `"frame": true` or `"frame": "3"` is a bad request, not frame 1 or 3
class PointPrompt(BaseModel, strict=True):
    obj_id: int
    frame: int
    x: float
    y: float
    positive: bool = True


class BoxPrompt(BaseModel, strict=True):
    obj_id: int
    frame: int
    box: List[float] = Field(..., min_length=4, max_length=4)


class TrackRequest(BaseModel, strict=True):
    direction: Literal["forward", "reverse", "both"] = "forward"
    obj_ids: Optional[List[int]] = None


class PresetRequest(BaseModel):
    preset: str


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def _overlay_png(labels: np.ndarray, selected: Optional[int] = None) -> bytes:
    """Translucent palette colours with an opaque, lighter outline (dark palette colours
    vanish on red tissue otherwise). The ``selected`` object gets a thicker white outline."""
    lut = np.zeros((256, 4), np.uint8)
    lut[:, :3], lut[:, 3] = davis_palette()[:, ::-1], OVERLAY_ALPHA  # BGRA for cv2
    lut[0] = 0
    rgba = lut[labels]
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge &= labels > 0
    rgba[edge, :3] = np.minimum(255, rgba[edge, :3].astype(np.int16) + 110).astype(np.uint8)
    rgba[edge, 3] = 255
    if selected:
        mine = (labels == selected).astype(np.uint8)
        ring = mine.astype(bool) & ~cv2.erode(mine, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_REPLICATE).astype(bool)
        rgba[ring] = (255, 255, 255, 255)
    ok, buf = cv2.imencode(".png", rgba, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return buf.tobytes()


def create_app(state: AnnotatorState, token: Optional[str] = None, *, host: str = "127.0.0.1",
               port: Optional[int] = None) -> FastAPI:
    """The app for one annotator state, served at ``host``:``port``. With ``token``, every
    request must carry it (``?token=``, header ``X-Token`` or the cookie the page gets);
    others get 403. ``app.state.csrf_token`` is what state-changing requests must send in
    header ``X-CSRF-Token`` (the page has it)."""
    if token is not None:
        token = security.check_token(token, "create_app(token=...)")
    app = FastAPI(title="TSMS-SAM2 annotator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.annotator = state
    app.state.csrf_token = csrf = secrets.token_urlsafe(32)
    app.state.cookie_name = security.cookie_name_for(port)
    app.add_middleware(security.RequestGuard, csrf_token=csrf, cookie_name=app.state.cookie_name, host=host, token=token)
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8").replace(CSRF_PLACEHOLDER, html.escape(csrf))

    @app.exception_handler(AnnotatorError)
    async def annotator_error(request, exc: AnnotatorError):
        return _error(exc.status, str(exc))

    @app.exception_handler(UserError)
    async def user_error(request, exc: UserError):
        return _error(400, str(exc))

    @app.exception_handler(OSError)
    async def file_error(request, exc: OSError):  # one the state did not turn into a message: still one JSON line
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        return _error(507 if full else 500, f"file error on {exc.filename or state.output_dir}: {exc.strerror or exc}")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"bad request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return _error(exc.status_code, exc.detail if exc.status_code != 404 else "not found")

    # ------------------------------------------------------------------ page
    @app.get("/")
    def index():
        return Response(page, media_type="text/html")

    @app.get("/favicon.ico")
    def favicon():  # browsers ask for it; nothing to show
        return Response(status_code=204)

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC_FILES:  # a fixed list: no path from the request reaches the disk
            raise AnnotatorError(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name])

    # ------------------------------------------------------------------ reading
    @app.get("/api/info")
    def info():
        return state.info()

    @app.get("/api/frame/{frame}")
    def frame_image(frame: int):
        state.check_frame(frame)
        return Response(state.source.jpeg(frame), media_type="image/jpeg")

    @app.get("/api/overlay/{frame}")
    def overlay(frame: int, selected: Optional[int] = None):
        state.check_frame(frame)
        return Response(_overlay_png(state.store.labels(frame), selected), media_type="image/png")

    @app.get("/api/prompts/{frame}")
    def prompts(frame: int):
        state.check_frame(frame)
        return [{"obj_id": o, "points": p.points, "labels": p.labels, "box": p.box, "mask": p.mask is not None}
                for (o, f), p in sorted(state.prompts.items()) if f == frame]

    @app.get("/api/timeline")
    def timeline():
        return state.timeline()

    # ------------------------------------------------------------------ editing
    @app.post("/api/objects")
    def new_object(body: NewObject):
        return state.add_object(body.name, body.type).as_dict()

    @app.patch("/api/objects/{obj_id}")
    def edit_object(obj_id: int, body: ObjectUpdate):
        return state.update_object(obj_id, body.name, body.type).as_dict()

    @app.delete("/api/objects/{obj_id}")
    def delete_object(obj_id: int):
        state.delete_object(obj_id)
        return {"deleted": obj_id}

    @app.post("/api/prompt/point")
    def point(body: PointPrompt):
        return state.add_point(body.obj_id, body.frame, body.x, body.y, body.positive)

    @app.post("/api/prompt/box")
    def box(body: BoxPrompt):
        return state.add_box(body.obj_id, body.frame, body.box)

    @app.post("/api/undo")
    def undo():
        return state.undo()

    @app.post("/api/preset")
    def preset(body: PresetRequest):
        state.set_preset(body.preset)
        return {"preset": state.preset}

    # ------------------------------------------------------------------ tracking, export
    @app.post("/api/track", status_code=202)
    def track(body: TrackRequest):
        return state.start_tracking(body.direction, body.obj_ids).as_dict()

    @app.get("/api/track")
    def track_status():
        job = state.job.as_dict() if state.job else {"running": False, "total": 0, "done": 0}
        return dict(job, version=state.store.version)  # the page refetches the timeline when it moves

    @app.post("/api/track/cancel")
    def cancel():
        return state.cancel_tracking()

    @app.post("/api/export")
    def export_all():
        return export(state)

    return app
