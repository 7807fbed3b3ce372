"""Export a SAM2 / TSMS-SAM2 video predictor to ONNX, checked against PyTorch.

:func:`export_onnx` writes the graphs of :mod:`models.onnx_graphs` (the learned parts of
the tracking loop), ``constants.npz`` and ``manifest.json`` into a new folder, published
whole; ``inference/onnx_backend.py`` tracks with them (no torch) and ``docs/deploy.md``
takes them to TensorRT.
"""

from __future__ import annotations

import logging

import torch

from models.onnx_graphs import (GRAPH_IO, OPSET, RealRoPEAttention, build_graphs, example_inputs, export_graph,
                                host_constants, loop_settings, real_rope_copy, reference_outputs, resize_matrix)
from utils.errors import UserError
from utils.io import file_sha256

log = logging.getLogger(__name__)

__all__ = ["export_onnx", "RealRoPEAttention", "real_rope_copy", "resize_matrix", "build_graphs", "example_inputs",
           "export_graph", "reference_outputs", "GRAPH_IO"]

FORMAT = "tsms-sam2-onnx"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECK_TOLERANCE = 1e-3
CONSTANTS = "constants.npz"


def _shapes(path) -> dict:
    """``{tensor: [dim, ...]}`` of a graph's inputs and outputs (a dynamic axis by its name);
    inputs the exporter dropped as unused are absent."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(graph.input) + list(graph.output)}


def _check_out_dir(out) -> None:
    from pathlib import Path

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is a file; give a new folder")
    if out.is_dir() and any(out.iterdir()):
        what = "an earlier export" if (out / MANIFEST).exists() else "other files"
        raise UserError(f"--out {out} already holds {what}; refusing to write over it (give a new or empty folder)")


def _check_graph(name, path, graph, input_sets, providers) -> float:
    """Max abs difference between onnxruntime and PyTorch over ``input_sets`` (an error
    when it exceeds ``CHECK_TOLERANCE`` of the outputs' magnitude)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=providers)
    wanted = {i.name for i in session.get_inputs()}
    worst = 0.0
    for inputs in input_sets:
        got = session.run(None, {n: x.numpy() for n, x in zip(GRAPH_IO[name][0], inputs) if n in wanted})
        ref = reference_outputs(graph, inputs)
        error = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref))
        scale = max(1.0, max(float(r.abs().max()) for r in ref))
        if not error <= CHECK_TOLERANCE * scale:
            raise UserError(f"the exported {name} differs from PyTorch by {error:.3g} (outputs up to {scale:.3g}); "
                            f"export aborted, nothing written")
        worst = max(worst, error)
    return worst


def export_onnx(*, checkpoint, out, model_cfg=None, size=None, check: bool = True) -> dict:
    """Export ``checkpoint`` (ours, or official + ``model_cfg``) to ``out`` (a new folder).

    Every graph is checked against PyTorch on its trace inputs and on inputs of other
    dynamic sizes (more memory frames and pointers, 2 objects, 3 clicks); the max abs
    error goes to the log and the manifest. Returns the manifest.
    """
    import json
    import platform
    from pathlib import Path

    import numpy as np
    import onnx
    import onnxruntime
    import importlib.metadata

    from models.build import build_model
    from models.config import resolution_overrides
    from utils.io import atomic_dir

    _check_out_dir(out)
    if size is not None and (size < 64 or size % 64):
        raise UserError(f"--size must be a multiple of 64 (e.g. 512 or 1024), got {size}")
    model = build_model(config=model_cfg, checkpoint=checkpoint, predictor=True,
                        overrides=[f"++{o}" for o in resolution_overrides(size)] if size else ())
    graphs = build_graphs(model)
    first = example_inputs(model)
    second = example_inputs(model, memory_frames=6, ptr_tokens=16, batch=2, points=3, seed=1)
    out = Path(out)
    if out.is_dir():
        out.rmdir()  # empty (checked above): the folder is published whole below
    entries = {}
    with atomic_dir(out, overwrite=False) as tmp:
        for name, graph in graphs.items():
            path = tmp / f"{name}.onnx"
            export_graph(graph, name, first[name], path)
            onnx.checker.check_model(str(path))
            error = _check_graph(name, path, graph, [first[name], second[name]], ["CPUExecutionProvider"]) \
                if check else None
            log.info("exported %-17s max abs error vs PyTorch: %s", name, f"{error:.2e}" if error is not None else "unchecked")
            names_in, names_out, dynamic = GRAPH_IO[name]
            entries[name] = {"file": path.name, "sha256": file_sha256(path), "inputs": names_in, "outputs": names_out,
                             "shapes": _shapes(path),
                             "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in dynamic.items()},
                             "max_abs_error": error}
        np.savez(tmp / CONSTANTS, **host_constants(model))
        ckpt = Path(checkpoint)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "checkpoint": {"file": ckpt.name, "sha256": file_sha256(ckpt)},
            "model_cfg": str(model_cfg) if model_cfg else None,
            "settings": loop_settings(model),
            "memory": model.memory_spec.as_dict(),
            "graphs": entries,
            "constants": {"file": CONSTANTS, "sha256": file_sha256(tmp / CONSTANTS)},
            "opset": OPSET,
            "versions": {"torch": torch.__version__, "sam2": importlib.metadata.version("sam2"),
                         "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                         "python": platform.python_version()},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
