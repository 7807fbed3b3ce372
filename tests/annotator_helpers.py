"""Shared pieces of the annotator tests: predictors built once, a state per test, GT files."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import numpy as np

from data.mask_io import write_label_png

# Prompts on frame 0 of tests.conftest's two-object video: a click on object 1, a box on object 2.
CLICK_1 = (20.0, 30.0)
BOX_2 = [88.0, 53.0, 112.0, 77.0]


def csrf_token(app) -> str:
    return getattr(app.state, "csrf_token", "")  # "" on apps without one: their tests then fail on behaviour


def api_client(app, **kwargs):
    """FastAPI's test client as the page talks to the server: a local Host name and the
    page's CSRF token header on every request."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1:8765", headers={"X-CSRF-Token": csrf_token(app)}, **kwargs)


class PredictorCache:
    """One mini predictor per memory preset for a whole test module (building costs seconds)."""

    def __init__(self, checkpoint):
        self.checkpoint, self.built = checkpoint, {}

    def __call__(self, preset: str):
        from models import build_model

        if preset not in self.built:
            self.built[preset] = build_model(config="mini", checkpoint=str(self.checkpoint), memory=preset, predictor=True)
        return self.built[preset]


def write_ground_truth(root: Path, video: str, masks) -> Path:
    """``{obj_id: bool[T, H, W]}`` -> ``root/<video>/<frame>.png`` palette masks."""
    (root / video).mkdir(parents=True, exist_ok=True)
    frames = next(iter(masks.values())).shape[0]
    for t in range(frames):
        labels = np.zeros(masks[1].shape[1:], np.uint8)
        for obj_id, m in masks.items():
            labels[m[t]] = obj_id
        write_label_png(root / video / f"{t:05d}.png", labels)
    return root


def prompts_json(path: Path) -> Path:
    import json

    path.write_text(json.dumps({"prompts": [
        {"obj_id": 1, "frame": 0, "points": [[CLICK_1[0], CLICK_1[1], 1]]},
        {"obj_id": 2, "frame": 0, "box": BOX_2},
    ]}))
    return path


@contextlib.contextmanager
def serving(state):
    """The annotator app of ``state`` under uvicorn in a thread; yields its URL."""
    import uvicorn

    from inference.annotator import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        srv.should_exit = True
        thread.join(10)
