"""Latency and scale of the annotator server (docs/annotate.md): click -> mask, tracking a
long video with several objects while the page keeps asking, a correction's re-track, the
export, and the server's memory.

    python eval/benchmark_annotator.py --frames 1000 --objects 5 --out bench/annotator

The requests go through the app as the page sends them (FastAPI's test client: the same
routes, guard and threads, without sockets). The model is the random-weight mini (or
``--checkpoint``); the figures are for the machine it runs on. Writes ``<out>.json`` and
``<out>.md``.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from eval.benchmark_memory import make_video  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.io import atomic_write  # noqa: E402
from utils.logging import setup_logging  # noqa: E402
from utils.resources import current_rss_mb, peak_rss_mb  # noqa: E402

log = logging.getLogger("benchmark_annotator")


def _stats(ms) -> dict:
    ms = np.asarray(ms, float)
    return {"n": int(ms.size), "median_ms": round(float(np.median(ms)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "max_ms": round(float(ms.max()), 1)}


def _timed(fn, *a, **k):
    t0 = time.perf_counter()
    r = fn(*a, **k)
    return r, 1000 * (time.perf_counter() - t0)


def _track(client, state, watch: bool) -> dict:
    """Track (all dirty objects) and, if ``watch``, ask what the page asks meanwhile."""
    r = client.post("/api/track", json={"direction": "forward"})
    assert r.status_code == 202, r.text
    polls, clicks, overlays, rss = [], [], [], []
    while state.job.running:
        if watch:
            _, ms = _timed(client.get, "/api/track")
            polls.append(ms)
            resp, ms = _timed(client.post, "/api/prompt/point", json={"obj_id": 1, "frame": 0, "x": 5.0, "y": 5.0})
            if resp.status_code == 409:  # "tracking is running; wait for it or cancel it first"
                clicks.append(ms)
            _, ms = _timed(client.get, f"/api/overlay/{state.job.frame or 0}")
            overlays.append(ms)
            rss.append(current_rss_mb())
        time.sleep(0.25)
    job = state.job
    assert job.error is None, job.error
    out = {"frames": job.done, "seconds": job.seconds, "fps": round(job.done / max(job.seconds, 1e-9), 1)}
    if watch:
        out.update(poll=_stats(polls), click_refused=_stats(clicks), overlay=_stats(overlays),
                   rss_max_mb=round(max(rss), 0))
    return out


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--video_size", type=int, nargs=2, default=[480, 854], metavar=("H", "W"))
    p.add_argument("--objects", type=int, default=5)
    p.add_argument("--clicks", type=int, default=30, help="clicks timed on one frame (features cached)")
    p.add_argument("--new_frames", type=int, default=5, help="first clicks timed on other frames (image encoder runs)")
    p.add_argument("--retrack", type=int, default=200, help="frames a correction re-tracks (clicked that far from the end)")
    p.add_argument("--checkpoint", help="default: random mini weights")
    p.add_argument("--work", help="folder for the video and the output (default: a temp folder)")
    p.add_argument("--out", default="bench/annotator")
    args = p.parse_args(argv)
    setup_logging("WARNING")
    import torch
    from fastapi.testclient import TestClient

    from inference.annotator import create_app, open_annotator
    from models import build_model

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_annotator_"))
    h, w = args.video_size
    t0 = time.perf_counter()
    video, _ = make_video(work, args.frames, h, w, seed=0)
    log.warning("video %s made in %.0f s", video, time.perf_counter() - t0)
    checkpoint = args.checkpoint
    if checkpoint is None:
        torch.manual_seed(0)
        checkpoint = work / "mini_random.pt"
        torch.save({"model": build_model(config="mini", memory="sam2").state_dict()}, checkpoint)
    rss_before = current_rss_mb()
    state = open_annotator(str(video), lambda preset: build_model(config="mini" if args.checkpoint is None else None,
                                                                  checkpoint=str(checkpoint), memory=preset,
                                                                  predictor=True), work / "out")
    app = create_app(state)
    client = TestClient(app, base_url="http://127.0.0.1:8765", headers={"X-CSRF-Token": app.state.csrf_token})
    result = {"frames": args.frames, "size": [h, w], "objects": args.objects, "rss_model_loaded_mb": None}
    try:
        rng = np.random.default_rng(0)
        boxes = []
        for k in range(args.objects):
            client.post("/api/objects", json={})
            x0 = (k + 0.5) * w / (args.objects + 1)
            boxes.append([x0, h / 3, x0 + w / (args.objects + 1), 2 * h / 3])
            assert client.post("/api/prompt/box", json={"obj_id": k + 1, "frame": 0, "box": boxes[-1]}).status_code == 200
        result["rss_model_loaded_mb"] = round(current_rss_mb(), 0)
        clicks = []
        for i in range(args.clicks):
            k = i % args.objects
            x, y = rng.uniform(boxes[k][0], boxes[k][2]), rng.uniform(boxes[k][1], boxes[k][3])
            r, ms = _timed(client.post, "/api/prompt/point", json={"obj_id": k + 1, "frame": 0, "x": x, "y": y})
            assert r.status_code == 200, r.text
            clicks.append(ms)
        result["click_to_mask"] = _stats(clicks)
        first = []
        for f in np.linspace(1, args.frames - 1, args.new_frames).astype(int):
            r, ms = _timed(client.post, "/api/prompt/point", json={"obj_id": 1, "frame": int(f), "x": boxes[0][0] + 5,
                                                                   "y": boxes[0][1] + 5})
            first.append(ms)
            client.post("/api/undo")  # not part of the tracked work
        result["first_click_on_a_frame"] = _stats(first)
        result["track_all"] = _track(client, state, watch=True)
        frame = args.frames - args.retrack
        assert client.post("/api/prompt/point", json={"obj_id": 1, "frame": frame, "x": boxes[0][0] + 3,
                                                      "y": boxes[0][1] + 3}).status_code == 200
        result["correction_retrack"] = dict(_track(client, state, watch=False), from_frame=frame)
        r, ms = _timed(client.post, "/api/export")
        assert r.status_code == 200, r.text
        result["export_s"] = round(ms / 1000, 1)
        result["rss_end_mb"] = round(current_rss_mb(), 0)
        result["rss_peak_mb"] = round(peak_rss_mb(), 0)
        result["rss_before_server_mb"] = round(rss_before, 0)
    finally:
        state.close()
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "torch_threads": torch.get_num_threads(), "device": "cpu"}
    out = Path(args.out)
    with atomic_write(out.with_suffix(".json")) as fh:
        json.dump(result, fh, indent=1)
    md = to_markdown(result)
    with atomic_write(out.with_suffix(".md")) as fh:
        fh.write(md)
    print(md)
    return 0


def to_markdown(r: dict) -> str:
    c, f, t, rt = r["click_to_mask"], r["first_click_on_a_frame"], r["track_all"], r["correction_retrack"]
    return "\n".join([
        f"{r['frames']} frames {r['size'][1]}x{r['size'][0]}, {r['objects']} objects, "
        f"{r['machine']['cores']} cores ({r['machine']['torch_threads']} torch threads), CPU",
        "",
        "| measure | figure |", "|---|---|",
        f"| click -> mask, features cached ({c['n']} clicks) | median {c['median_ms']} ms, p95 {c['p95_ms']} ms |",
        f"| first click on a frame ({f['n']} frames, image encoder) | median {f['median_ms']} ms, p95 {f['p95_ms']} ms |",
        f"| track {t['frames']} frames x {r['objects']} objects | {t['seconds']} s ({t['fps']} frames/s) |",
        f"| while tracking: progress poll | median {t['poll']['median_ms']} ms, p95 {t['poll']['p95_ms']} ms |",
        f"| while tracking: a click (refused: wait) | median {t['click_refused']['median_ms']} ms, "
        f"p95 {t['click_refused']['p95_ms']} ms, max {t['click_refused']['max_ms']} ms |",
        f"| while tracking: overlay of the frame in view | median {t['overlay']['median_ms']} ms, p95 {t['overlay']['p95_ms']} ms |",
        f"| correction re-track ({rt['frames']} frames, 1 object, from frame {rt['from_frame']}) | {rt['seconds']} s |",
        f"| export (PNG + COCO + overlay mp4) | {r['export_s']} s |",
        f"| server RSS: before / model + state / max while tracking / end / peak | {r['rss_before_server_mb']:.0f} / "
        f"{r['rss_model_loaded_mb']:.0f} / {t['rss_max_mb']:.0f} / {r['rss_end_mb']:.0f} / {r['rss_peak_mb']:.0f} MiB |",
        ""])


if __name__ == "__main__":
    sys.exit(run_cli(main))
