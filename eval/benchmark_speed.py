"""Tracking speed and memory: sam2's own predictor vs ours, same weights, same video.

    python eval/benchmark_speed.py --models tiny --sizes 1024 --objects 1 3 --dtypes fp32 bf16 --out bench/speed

For every model size and input resolution it builds sam2's ``SAM2VideoPredictor`` (and, on
CUDA, sam2's compiled ``SAM2VideoPredictorVOS``) and ours for each memory preset, dtype and
(with ``--compile``) compiled or not; all share identical random weights and track one
synthetic video from first-frame masks of ``--objects`` objects (ours batches them, see
``models.multi_object``). After a warm-up, predictors track side by side, one frame each
in turn (so load bursts on a shared machine hit all alike), and only steady-state frames count (the memory bank is full from frame
``num_maskmem`` on). Reported per predictor: median per-frame latency, FPS, the ratio to
sam2's eager predictor in the same run (fp32 on CPU, bf16 autocast on CUDA, as users run
it), attended memory tokens per frame, a per-module time breakdown (forward hooks, in a
separate run), the image-encoder floor, and with ``--memory_frames N`` peak RSS / CUDA
memory over an N-frame video (each in a fresh process, via ``benchmark_memory``). CUDA
times with CUDA events. Writes ``<out>.json`` and ``<out>.md``.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from utils.cli import ArgumentParser, UserError, run_cli  # noqa: E402
from utils.io import atomic_write, work_dir  # noqa: E402
from eval.bench_files import check_result_files  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

log = logging.getLogger("benchmark_speed")
META = "sam2 (Meta)"
SAM2_MEMORY_FRAMES = 7  # num_maskmem of every SAM2 size: timing starts once the memory bank is full


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


def variants(memories, dtypes, compile_modes, device, backends=("torch",)) -> list:
    """(name, kind, memory, dtype, compiled) of every predictor in the run; sam2's first.
    ``backends``: ``torch`` (ours in PyTorch) and/or ``onnxruntime`` (the same weights
    exported, tracked by ``inference.onnx_backend``; fp32, on CPU)."""
    meta_dtype = "bf16" if device.type == "cuda" else "fp32"
    out = [(META, "sam2", "sam2", meta_dtype, False)]
    if device.type == "cuda":
        out.append(("sam2 VOS (Meta, compiled)", "sam2_vos", "sam2", meta_dtype, True))
    for memory in memories:
        if "torch" in backends:
            for dtype in dtypes:
                for compiled in compile_modes:
                    name = f"ours ({memory}, {dtype}{', compiled' if compiled else ''})"
                    out.append((name, "ours", memory, dtype, compiled))
        if "onnxruntime" in backends:
            out.append((f"onnxruntime ({memory}, fp32)", "onnx", memory, "fp32", False))
    return out


def export_for_benchmark(model: str, image_size: int, weights, work: Path) -> Path:
    """The benchmark's random weights exported to ONNX (once per model and size)."""
    import torch

    from eval.benchmark_memory import sam2_config_and_overrides
    from models.onnx_export import export_onnx

    out = work / f"onnx_{model}_{image_size}"
    if not (out / "manifest.json").exists():
        ckpt = work / f"weights_{model}.pt"
        torch.save({"model": weights}, ckpt)
        config = "mini" if model == "mini" else sam2_config_and_overrides(model, None)[0]
        export_onnx(checkpoint=ckpt, model_cfg=config, out=out, size=image_size)
    return out


def build_predictors(model: str, image_size: int, specs, device, work: Path = None, checkpoint=None):
    """Every predictor of ``specs`` (see :func:`variants`), all with the same weights: sam2's
    random ones, or ``checkpoint``'s (ours, of this model; memory rules that gate frames on
    predicted quality attend what trained weights predict) (``work``: where the ONNX export
    goes, for ``onnx`` rows)."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from eval.benchmark_memory import sam2_config_and_overrides
    from models import build_model
    from models.predictor import hole_filling_available

    config, overrides = sam2_config_and_overrides(model, image_size)
    torch.manual_seed(0)
    meta = build_sam2_video_predictor(config, None, device=str(device), hydra_overrides_extra=overrides)
    if checkpoint is not None:
        from models import read_checkpoint

        trained = {k: v.float() if v.is_floating_point() else v for k, v in read_checkpoint(checkpoint)["model"].items()}
        meta.load_state_dict(trained, strict=True)  # our models keep every SAM2 key
    weights, predictors = meta.state_dict(), {}
    for name, kind, memory, dtype, compiled in specs:
        if kind == "onnx":
            from inference.onnx_backend import OnnxVideoPredictor
            from models.memory_spec import MemorySpec

            if work is None:
                raise ValueError("onnxruntime rows need a work folder for their export")
            onnx_dir = export_for_benchmark(model, image_size, weights, work)
            spec = MemorySpec.preset(memory).replace(memory_bank_size=meta.num_maskmem)
            predictors[name] = (OnnxVideoPredictor(onnx_dir, memory=spec.as_dict(), threads=torch.get_num_threads()),
                                kind, dtype)
            continue
        if kind == "sam2":
            predictor = meta
        elif kind == "sam2_vos":
            predictor = build_sam2_video_predictor(config, None, device=str(device), hydra_overrides_extra=overrides,
                                                   vos_optimized=True)
        else:
            predictor = build_model(config=config, device=device, memory=memory, overrides=overrides, predictor=True,
                                    compile=compiled)
        predictor.load_state_dict(weights, strict=True)
        if not hole_filling_available(device):
            predictor.fill_hole_area = 0  # what sam2 falls back to anyway, minus a warning per frame
        predictors[name] = (predictor, kind, dtype)
    return predictors


def track_once(entry, video_dir: Path, masks, device, max_frames=None, profile=False) -> dict:
    """Per-frame latencies (s) of one propagation, attended tokens per frame, module times."""
    import torch

    from eval.speed_profile import ModuleTimes
    from models import TrackingSession

    predictor, kind, dtype = entry
    timer, latencies, tokens = Timer(device), [], []
    times = ModuleTimes(predictor) if profile else contextlib.nullcontext()
    with torch.inference_mode():
        session = TrackingSession(predictor, video_dir, dtype=dtype, batch_objects=kind == "ours" and len(masks) > 1)
        for obj_id, mask in enumerate(masks, 1):
            session.add_mask(0, obj_id, mask)
        frames = session.propagate(max_frames=max_frames)
        with times:
            while True:
                timer.start()
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                latencies.append(timer.stop())
                tokens.append(frame.attended_tokens or 0)
        session.close()
    return {"lat": latencies, "tokens": tokens, "times": times}


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


def track_interleaved(predictors: dict, video_dir: Path, masks, device, rotate: int = 0) -> dict:
    """All predictors track the video side by side, one frame each in turn (the order
    rotates every frame), so load bursts on a shared machine hit them alike. Returns
    ``{name: {"lat": [...], "tokens": [...]}}``."""
    import torch

    from models import TrackingSession

    timer, runs, frames = Timer(device), {}, {}
    with torch.inference_mode():
        sessions = []
        for name, (predictor, kind, dtype) in predictors.items():
            session = TrackingSession(predictor, video_dir, dtype=dtype, batch_objects=kind == "ours" and len(masks) > 1)
            for obj_id, mask in enumerate(masks, 1):
                session.add_mask(0, obj_id, mask)
            sessions.append(session)
            frames[name], runs[name] = session.propagate(), {"lat": [], "tokens": []}
        names, t = list(predictors), rotate
        while frames:
            for name in names[t % len(names):] + names[: t % len(names)]:
                if name not in frames:
                    continue
                timer.start()
                try:
                    frame = next(frames[name])
                except StopIteration:
                    del frames[name]
                    continue
                runs[name]["lat"].append(timer.stop())
                runs[name]["tokens"].append(frame.attended_tokens or 0)
            t += 1
        for session in sessions:
            session.close()
    return runs


def benchmark(model, image_size, specs, video_dir, object_masks, device, repeats, warmup_frames,
              checkpoint=None) -> list:
    """Rows for each object count of ``object_masks`` (``{n: [mask, ...]}``); the
    predictors are built (and compiled) once for all of them."""
    from models.speed import autocast

    predictors = build_predictors(model, image_size, specs, device, work=video_dir.parents[2], checkpoint=checkpoint)
    steady_from = max(warmup_frames, predictors[META][0].num_maskmem)
    meta_predictor, _, meta_dtype = predictors[META]
    floor = encoder_floor(meta_predictor, image_size, device, lambda: autocast(device, meta_dtype), repeats=max(5, repeats * 3))
    rows = []
    for n, masks in object_masks.items():
        runs = {name: {"lat": [], "tokens": []} for name in predictors}
        for name, entry in predictors.items():  # warm-up (first calls, allocator, compilation), not counted
            track_once(entry, video_dir, masks, device, max_frames=steady_from + 2)
        for r in range(repeats):  # frame by frame side by side, see track_interleaved
            for name, got in track_interleaved(predictors, video_dir, masks, device, rotate=r).items():
                runs[name]["lat"] += got["lat"][steady_from:]
                runs[name]["tokens"] = got["tokens"]
                log.info("%s @%d, %d obj, %s repeat %d: median %.1f ms/frame", model, image_size, n, name, r,
                         1000 * statistics.median(got["lat"][steady_from:]))
        base = statistics.median(runs[META]["lat"])
        for (name, kind, memory, dtype, compiled) in specs:
            onnx = kind == "onnx"  # module times: torch forward hooks only
            got = track_once(predictors[name], video_dir, masks, device, profile=not onnx) if not onnx else None
            med = statistics.median(runs[name]["lat"])
            torch_twin = f"ours ({memory}, fp32)"
            vs_torch = round(med / statistics.median(runs[torch_twin]["lat"]), 3) if onnx and torch_twin in runs else None
            steady_tokens = runs[name]["tokens"][steady_from:] or runs[name]["tokens"]
            rows.append({
                "model": model, "image_size": image_size, "objects": n, "predictor": name, "kind": kind,
                "memory": memory, "dtype": dtype, "compiled": compiled,
                "median_ms": round(1000 * med, 2), "fps": round(1 / med, 2), "time_vs_sam2": round(med / base, 3),
                "speedup_vs_sam2": round(base / med, 3), "memory_tokens": round(statistics.median(steady_tokens), 1),
                "encoder_ms": round(1000 * floor, 2), "over_floor": round(med / floor, 2),
                "profile_ms": got["times"].per_frame_ms(len(got["lat"]), sum(got["lat"])) if got else {},
                "time_vs_torch_same_memory": vs_torch,
                "steady_frames": len(runs[name]["lat"]),
            })
    return rows


def measure_memory(rows, model, image_size, masks_n, frames, device, threads, work: Path) -> None:
    """Peak RSS / CUDA memory of each predictor kind over a long video, in fresh processes
    (the video goes to ``work``)."""
    import subprocess

    from eval.benchmark_memory import make_video

    video, first_mask = make_video(work, frames, 480, 854, seed=0)
    for row in rows:
        if row["compiled"] or row["kind"] == "onnx":
            continue  # compiling (sam2's VOS predictor too) changes time, not what is kept
        spec = {"predictor": "sam2" if row["kind"] != "ours" else "ours", "memory": row["memory"], "length": frames,
                "model": model, "image_size": image_size, "device": str(device), "threads": threads,
                "video": str(video), "first_mask": str(first_mask), "work": str(work), "objects": masks_n,
                "dtype": row["dtype"], "vos_optimized": row["kind"] == "sam2_vos"}
        script = Path(__file__).with_name("benchmark_memory.py")
        out = subprocess.run([sys.executable, str(script), "--_child", json.dumps(spec)], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"memory child failed ({row['predictor']}):\n{out.stderr[-2000:]}")
        got = json.loads(out.stdout.strip().splitlines()[-1])
        row.update(memory_frames=frames, peak_rss_mb=got["peak_rss_mb"], peak_cuda_mb=got["peak_cuda_mb"])


def ms(profile: dict, key: str) -> str:
    """A module's ms/frame, or a dash where none was measured (onnxruntime rows)."""
    return f"{profile.get(key, 0):.0f}" if profile else "–"


def to_markdown(rows, meta) -> str:
    lines = [
        f"Tracking speed, {meta['device']} ({meta['machine']}, {meta['threads']} threads, torch {meta['torch']}, "
        f"{meta['date']}); {meta['frames']}-frame synthetic video, median over steady-state frames of "
        f"{meta['repeats']} interleaved repeats; speed-up vs sam2's eager predictor in the same run. Module times "
        "(ms/frame, forward hooks, separate run): enc = image encoder, attn = memory attention, dec = mask decoder, "
        "menc = memory encoder.",
        "",
        "| model | px | obj | predictor | ms/frame | FPS | speed-up | memory tokens | enc | attn | dec | menc | other | peak RSS (MB) | peak CUDA (MB) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = r["profile_ms"]
        mem = lambda k: f"{r[k]:.0f}" if r.get(k) is not None else "–"  # noqa: E731
        lines.append(
            f"| {r['model']} | {r['image_size']} | {r['objects']} | {r['predictor']} | {r['median_ms']:.1f} | {r['fps']:.2f} | "
            f"{r['speedup_vs_sam2']:.2f}× | {r['memory_tokens']:.0f} | {ms(p, 'image_encoder')} | "
            f"{ms(p, 'memory_attention')} | {ms(p, 'sam_mask_decoder')} | {ms(p, 'memory_encoder')} | "
            f"{ms(p, 'other')} | {mem('peak_rss_mb')} | {mem('peak_cuda_mb')} |"
        )
    pairs = [r for r in rows if r.get("time_vs_torch_same_memory") is not None]
    if pairs:
        lines += ["", "onnxruntime (CPU, fp32) vs ours in PyTorch eager, same memory, same weights, same run "
                  "(time ratio: < 1 is faster):", "",
                  "| model | px | obj | memory | onnxruntime ms/frame | time vs PyTorch |", "|---|---:|---:|---|---:|---:|"]
        lines += [f"| {r['model']} | {r['image_size']} | {r['objects']} | {r['memory']} | {r['median_ms']:.1f} | "
                  f"{r['time_vs_torch_same_memory']:.2f}× |" for r in pairs]
    return "\n".join(lines) + "\n"


def check_args(args) -> None:
    """One line for a value that would crash the run later (or measure nothing)."""
    if args.checkpoint is not None:
        if not Path(args.checkpoint).is_file():
            raise UserError(f"--checkpoint: file not found: {args.checkpoint}")
        if len(args.models) != 1:
            raise UserError(f"--checkpoint holds one model's weights: pass one --models, got {args.models}")
    for flag, values, low in (("--sizes", args.sizes, 64), ("--objects", args.objects, 1)):
        bad = [v for v in values if v < low]
        if bad:
            raise UserError(f"{flag} must be at least {low}, got {bad[0]}")
    bad = [v for v in args.sizes if v % 16]
    if bad:
        raise UserError(f"--sizes must be multiples of 16, got {bad[0]}")
    for flag, value, low in (("--threads", args.threads, 1), ("--repeats", args.repeats, 1),
                             ("--warmup_frames", args.warmup_frames, 0), ("--memory_frames", args.memory_frames, 0)):
        if value < low:
            raise UserError(f"{flag} must be at least {low}, got {value}")
    steady_from = max(args.warmup_frames, SAM2_MEMORY_FRAMES)  # see benchmark(): only these frames are timed
    if args.frames < steady_from + 2:
        raise UserError(f"--frames must be at least {steady_from + 2} (max(--warmup_frames, {SAM2_MEMORY_FRAMES} memory "
                        f"frames) + 2 timed frames), got {args.frames}")
    if args.memory_frames and args.memory_frames < 2:
        raise UserError(f"--memory_frames must be 0 (off) or at least 2, got {args.memory_frames}")


def main(argv=None):
    p = ArgumentParser(prog="benchmark_speed.py", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["tiny"], help="mini | tiny | small | base_plus | large")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="input resolutions")
    p.add_argument("--checkpoint", help="our checkpoint of the one --models size to track with (default: random "
                                        "weights); needed by memory rules that gate frames on predicted quality")
    p.add_argument("--memories", nargs="+", default=["tsms", "tsms_fast"],
                   help="our memory presets to compare (configs/memory/*.yaml; 'sam2' is SAM2's rule in our predictor)")
    p.add_argument("--objects", type=int, nargs="+", default=[1], help="objects tracked at once, e.g. 1 3")
    p.add_argument("--dtypes", "--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"], help="our compute dtypes")
    p.add_argument("--compile", action="store_true", help="also run ours compiled (torch.compile)")
    p.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "onnxruntime"],
                   help="ours in PyTorch and/or exported to ONNX and tracked on onnxruntime (CPU, fp32), side by side")
    p.add_argument("--frames", type=int, default=40, help="video length (>= 40 keeps the memory full for long)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--warmup_frames", type=int, default=8, help="frames skipped at the start of each run")
    p.add_argument("--memory_frames", type=int, default=0,
                   help="also measure peak memory over a video this long (first --objects count)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default="bench/speed", help="output prefix: writes <out>.json and <out>.md")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier <out>.json / <out>.md")
    args = p.parse_args(argv)
    check_args(args)
    check_result_files(Path(args.out), args.overwrite, "benchmark_speed.py", "Tracking speed,")
    setup_logging("INFO")
    warnings.simplefilter("ignore")
    os.environ["TQDM_DISABLE"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    specs = variants(args.memories, args.dtypes, [False, True] if args.compile else [False], device, args.backends)
    with work_dir(Path(args.out).parent, f"{Path(args.out).name}.work") as work:  # removed however the run ends
        return _run(args, device, specs, work)


def _run(args, device, specs, work: Path) -> int:
    from data.mask_io import read_label_png
    from data.synthetic_video import write_synthetic_dataset
    from eval.benchmark_memory import first_frame_masks

    write_synthetic_dataset(work / "video", 1, args.frames, seed=1, speed="fast", size=(480, 854), write_mp4=False, progress=False)
    video_dir = next((work / "video" / "JPEGImages").iterdir())
    labels = read_label_png(sorted((work / "video" / "Annotations" / video_dir.name).glob("*.png"))[0])
    rows, object_masks = [], {n: first_frame_masks(labels, n) for n in args.objects}
    for model in args.models:
        for size in args.sizes:
            got = benchmark(model, size, specs, video_dir, object_masks, device, args.repeats, args.warmup_frames,
                            checkpoint=args.checkpoint)
            if args.memory_frames:  # for the first object count only: each row is a fresh process
                n = args.objects[0]
                measure_memory([r for r in got if r["objects"] == n], model, size, n, args.memory_frames, device,
                               args.threads, work)
            rows += got
            write_results(rows, args, device, Path(args.out))  # after each model: partial results survive
    print(to_markdown(rows, results_meta(args, device)))
    return 0


def results_meta(args, device) -> dict:
    import torch

    return {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "frames": args.frames, "repeats": args.repeats,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "weights": Path(args.checkpoint).name if args.checkpoint else "random"}


def write_results(rows, args, device, out: Path) -> None:
    meta = results_meta(args, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out.with_suffix(".json")) as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    with atomic_write(out.with_suffix(".md")) as f:
        f.write(to_markdown(rows, meta))


if __name__ == "__main__":
    sys.exit(run_cli(main))
