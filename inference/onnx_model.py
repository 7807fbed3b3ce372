"""An ONNX export on disk, for the onnxruntime loop: its manifest (checked), the graphs as
onnxruntime sessions, its host constants, and frames prepared as sam2 prepares them. No torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from utils.errors import UserError
from utils.io import file_sha256

FORMAT = "tsms-sam2-onnx"
FORMAT_VERSION = 1
IMG_MEAN = np.array((0.485, 0.456, 0.406), dtype=np.float32)[:, None, None]
IMG_STD = np.array((0.229, 0.224, 0.225), dtype=np.float32)[:, None, None]


def read_manifest(onnx_dir) -> dict:
    """The export's manifest, checked: our format and version, every file present and intact."""
    onnx_dir = Path(onnx_dir)
    path = onnx_dir / "manifest.json"
    if not path.is_file():
        raise UserError(f"--onnx_dir {onnx_dir} holds no manifest.json (not an export of inference/export_onnx.py)")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} is format version {manifest.get('format_version')!r}; this version reads "
                        f"{FORMAT_VERSION}: export the checkpoint again")
    files = [g["file"] for g in manifest["graphs"].values()] + [manifest["constants"]["file"]]
    shas = [g["sha256"] for g in manifest["graphs"].values()] + [manifest["constants"]["sha256"]]
    for name, sha in zip(files, shas):
        file = onnx_dir / name
        if Path(name).name != name or not file.is_file():
            raise UserError(f"export {onnx_dir} is missing {name}")
        if file_sha256(file) != sha:
            raise UserError(f"export {onnx_dir}: {name} does not match its manifest (changed or damaged)")
    return manifest


class OnnxModel:
    """The graphs of one export, as onnxruntime sessions, plus the host constants."""

    def __init__(self, onnx_dir, providers=None, threads: Optional[int] = None):
        import onnxruntime as ort

        self.dir = Path(onnx_dir)
        self.manifest = read_manifest(self.dir)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # idle pool threads sleep instead of spinning: they would starve the rest of the
        # process (the host loop, the video decoder) and other processes on shared CPUs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only (shape-merge notes on Hiera's padding are harmless)
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = {name: ort.InferenceSession(str(self.dir / g["file"]), options, providers=providers)
                         for name, g in self.manifest["graphs"].items()}
        self.inputs = {name: {i.name for i in s.get_inputs()} for name, s in self.sessions.items()}
        with np.load(self.dir / self.manifest["constants"]["file"], allow_pickle=False) as constants:
            self.constants = {k: constants[k].astype(np.float32) for k in constants.files}

    def run(self, name: str, **inputs):
        feed = {k: np.ascontiguousarray(v) for k, v in inputs.items() if k in self.inputs[name]}
        return self.sessions[name].run(None, feed)


class FolderFrames:
    """A JPEG/PNG folder as a frame source (sorted by name): ``read(idx)`` -> RGB uint8."""

    live = False

    def __init__(self, folder):
        self.paths = sorted(p for p in Path(folder).iterdir()
                            if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not p.name.startswith("."))
        if not self.paths:
            raise UserError(f"no JPEG/PNG frames in {folder}")
        self.width, self.height = Image.open(self.paths[0]).size

    def __len__(self):
        return len(self.paths)

    def read(self, idx: int) -> np.ndarray:
        return np.array(Image.open(self.paths[idx]).convert("RGB"))


def preprocess_frame(rgb: np.ndarray, image_size: int) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` -> ``[1, 3, S, S]`` float32, as sam2's loader (and models.frames)."""
    resized = np.array(Image.fromarray(rgb).resize((image_size, image_size))) / 255.0
    chw = resized.transpose(2, 0, 1).astype(np.float32)
    return ((chw - IMG_MEAN) / IMG_STD)[None]
