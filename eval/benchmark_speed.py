"""Tracking speed and memory: sam2's own predictor vs ours, same weights, same video.

    python eval/benchmark_speed.py --models tiny --sizes 512 1024 --frames 40 --out bench/speed

For every model size and input resolution it builds sam2's ``SAM2VideoPredictor`` and ours
with each memory preset (``sam2``, ``tsms`` ...), loads identical random weights into all
of them, and tracks one synthetic video from a first-frame mask. Predictors run
interleaved (A, B, C, C, B, A ...) after a warm-up, and only steady-state frames count
(the memory bank is full from frame ``num_maskmem`` on). Reported per predictor: median
per-frame latency, FPS, the ratio to sam2's time, attended memory tokens per frame, the
image-encoder-only time per frame (the floor) and peak RSS while tracking. On CUDA it times
with CUDA events under bf16 autocast, as SAM2 does. Writes ``<out>.json`` and ``<out>.md``.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.io import atomic_write  # noqa: E402
from utils.logging import setup_logging  # noqa: E402
from utils.resources import current_rss_mb  # noqa: E402

log = logging.getLogger("benchmark_speed")


class Timer:
    """Wall-clock on CPU; CUDA events on GPU (times what the GPU did, not the launch)."""

    def __init__(self, device):
        import torch

        self.cuda = device.type == "cuda"
        self.torch = torch

    def start(self):
        if self.cuda:
            self._start = self.torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            end = self.torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return self._start.elapsed_time(end) / 1000.0
        return time.perf_counter() - self._start


def build_predictors(model: str, image_size: int, memories, device):
    """sam2's predictor and ours (one per memory preset), all with the same weights."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from eval.benchmark_memory import sam2_config_and_overrides
    from models import build_model
    from models.predictor import hole_filling_available

    config, overrides = sam2_config_and_overrides(model, image_size)
    torch.manual_seed(0)
    meta = build_sam2_video_predictor(config, None, device=str(device), hydra_overrides_extra=overrides)
    if not hole_filling_available(device):
        meta.fill_hole_area = 0  # what sam2 falls back to anyway, minus a warning per frame
    weights = meta.state_dict()
    predictors = {"sam2 (Meta)": meta}
    for memory in memories:
        ours = build_model(config=config, device=device, memory=memory, overrides=overrides, predictor=True)
        ours.load_state_dict(weights, strict=True)
        predictors[f"ours ({memory})"] = ours
    return predictors


def track_once(predictor, video_dir: Path, mask, device, autocast, max_frames=None) -> tuple:
    """Per-frame latencies (s) of one propagation, attended tokens per frame, peak RSS."""
    import torch

    from models import TrackingSession

    timer = Timer(device)
    latencies, tokens, peak = [], [], current_rss_mb()
    with torch.inference_mode(), autocast():
        session = TrackingSession(predictor, video_dir)
        session.add_mask(0, 1, mask)
        frames = session.propagate(max_frames=max_frames)
        while True:
            timer.start()
            try:
                frame = next(frames)
            except StopIteration:
                break
            latencies.append(timer.stop())
            tokens.append(frame.attended_tokens or 0)
            peak = max(peak, current_rss_mb())
        session.close()
    return latencies, tokens, peak


def encoder_floor(predictor, image_size, device, autocast, repeats: int) -> float:
    import torch

    timer, x, times = Timer(device), torch.randn(1, 3, image_size, image_size, device=device), []
    with torch.inference_mode(), autocast():
        predictor.forward_image(x)
        for _ in range(repeats):
            timer.start()
            predictor.forward_image(x)
            times.append(timer.stop())
    return statistics.median(times)


def benchmark(model, image_size, memories, video_dir, mask, device, repeats, warmup_frames) -> list:
    import torch

    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    predictors = build_predictors(model, image_size, memories, device)
    steady_from = max(warmup_frames, next(iter(predictors.values())).num_maskmem)
    runs = {name: {"lat": [], "tokens": [], "rss": 0.0} for name in predictors}
    for name, predictor in predictors.items():  # warm-up (first calls, allocator), not counted
        track_once(predictor, video_dir, mask, device, autocast, max_frames=3)
    for r in range(repeats):  # interleaved, alternating order against drift: A B C, C B A ...
        for name, predictor in (list(predictors.items()) if r % 2 == 0 else list(predictors.items())[::-1]):
            lat, tokens, rss = track_once(predictor, video_dir, mask, device, autocast)
            runs[name]["lat"] += lat[steady_from:]
            runs[name]["tokens"] = tokens
            runs[name]["rss"] = max(runs[name]["rss"], rss)
            log.info("%s @%d %s repeat %d: median %.1f ms/frame", model, image_size, name, r, 1000 * statistics.median(lat[steady_from:]))
    floor = encoder_floor(next(iter(predictors.values())), image_size, device, autocast, repeats=max(5, repeats * 3))
    base = statistics.median(runs["sam2 (Meta)"]["lat"])
    rows = []
    for name, run in runs.items():
        med = statistics.median(run["lat"])
        steady_tokens = run["tokens"][steady_from:] or run["tokens"]
        rows.append({
            "model": model, "image_size": image_size, "predictor": name,
            "median_ms": round(1000 * med, 2), "fps": round(1 / med, 2), "time_vs_sam2": round(med / base, 3),
            "speedup_vs_sam2": round(base / med, 3), "memory_tokens": round(statistics.median(steady_tokens), 1),
            "encoder_ms": round(1000 * floor, 2), "over_floor": round(med / floor, 2),
            "peak_rss_mb": round(run["rss"], 1), "steady_frames": len(run["lat"]),
        })
    return rows


def to_markdown(rows, meta) -> str:
    lines = [
        f"Tracking speed, {meta['device']} ({meta['machine']}, {meta['threads']} threads, torch {meta['torch']}, "
        f"{meta['date']}); {meta['frames']}-frame synthetic video, 1 object, median over steady-state frames of "
        f"{meta['repeats']} interleaved repeats.",
        "",
        "| model | px | predictor | ms/frame | FPS | time vs sam2 | speed-up | memory tokens/frame | encoder floor (ms) | × floor | peak RSS (MB) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['image_size']} | {r['predictor']} | {r['median_ms']:.1f} | {r['fps']:.2f} | "
            f"{r['time_vs_sam2']:.3f} | {r['speedup_vs_sam2']:.2f}× | {r['memory_tokens']:.0f} | {r['encoder_ms']:.1f} | "
            f"{r['over_floor']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = ArgumentParser(prog="benchmark_speed.py", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["tiny"], help="mini | tiny | small | base_plus | large")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="input resolutions")
    p.add_argument("--memories", nargs="+", default=["sam2", "tsms", "tsms_fast"],
                   help="our memory presets to compare (configs/memory/*.yaml)")
    p.add_argument("--frames", type=int, default=40, help="video length (>= 40 keeps the memory full for long)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--warmup_frames", type=int, default=8, help="frames skipped at the start of each run")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default="bench/speed", help="output prefix: writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    setup_logging("INFO")
    warnings.simplefilter("ignore")
    os.environ["TQDM_DISABLE"] = "1"
    import torch

    from data.mask_io import read_label_png
    from data.synthetic_video import write_synthetic_dataset

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    work = Path(tempfile.mkdtemp(prefix="tsms_bench_speed_"))
    write_synthetic_dataset(work / "video", 1, args.frames, seed=1, speed="fast", size=(480, 854), write_mp4=False, progress=False)
    video_dir = next((work / "video" / "JPEGImages").iterdir())
    labels = read_label_png(sorted((work / "video" / "Annotations" / video_dir.name).glob("*.png"))[0])
    mask = labels > 0
    if not mask.any():  # objects may enter later; any first-frame object gives the same workload
        mask[160:320, 280:560] = True
    rows = []
    for model in args.models:
        for size in args.sizes:
            rows += benchmark(model, size, args.memories, video_dir, mask, device, args.repeats, args.warmup_frames)
    meta = {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "frames": args.frames, "repeats": args.repeats}
    out = Path(args.out)
    with atomic_write(out.with_suffix(".json")) as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    table = to_markdown(rows, meta)
    with atomic_write(out.with_suffix(".md")) as f:
        f.write(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
