"""Interactive annotator: a local web app over the tracking session (see docs/annotate.md).

    state = open_annotator("video.mp4", make_predictor, "annotations/")
    app = create_app(state)            # FastAPI; serve with uvicorn (inference/annotate.py)
"""

from inference.annotator.launch import open_annotator, serve
from inference.annotator.server import create_app
from inference.annotator.state import PRESETS, AnnotatorError, AnnotatorState

__all__ = ["AnnotatorError", "AnnotatorState", "PRESETS", "create_app", "open_annotator", "serve"]
