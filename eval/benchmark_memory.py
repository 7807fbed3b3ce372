"""Peak memory of long-video tracking: our predictor vs sam2's own, as video length grows.

    python eval/benchmark_memory.py --lengths 100 500 1000 --out bench/memory

Each (predictor, length) runs in a fresh process, so its peak RSS is its own. Both track
the same synthetic 480p video from a first-frame mask with the same random weights. sam2's
predictor preloads every frame and keeps every frame's outputs; ours decodes lazily and
evicts what the memory window can no longer reach. Writes ``<out>.json`` and ``<out>.md``.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from eval.bench_files import check_result_files  # noqa: E402
from utils.cli import ArgumentParser, run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.io import atomic_write, work_dir  # noqa: E402
from utils.logging import setup_logging  # noqa: E402
from utils.resources import current_rss_mb, peak_rss_mb  # noqa: E402

log = logging.getLogger("benchmark_memory")


def sam2_config_and_overrides(model: str, image_size: int | None):
    from models.config import MINI_FROM_TINY_OVERRIDES, SAM2_SIZE_ALIASES, resolution_overrides

    if model == "mini":
        name, overrides = SAM2_SIZE_ALIASES["tiny"], list(MINI_FROM_TINY_OVERRIDES)
    else:
        name, overrides = SAM2_SIZE_ALIASES.get(model, model), []
    if image_size:
        overrides += [f"++{o}" for o in resolution_overrides(image_size)]
    return name, overrides


def first_frame_masks(labels, objects: int) -> list:
    """``objects`` bool masks for frame 0: the label ids present, then boxes where the
    video has fewer objects (the workload does not depend on what the masks cover)."""
    import numpy as np

    ids = [int(i) for i in np.unique(labels) if i > 0][:objects]
    masks = [labels == i for i in ids]
    h, w = labels.shape
    while len(masks) < objects:
        k = len(masks)
        box = np.zeros((h, w), bool)
        box[h // 3: 2 * h // 3, k * w // (objects + 1): (k + 1) * w // (objects + 1) + w // 8] = True
        masks.append(box)
    return masks


def run_child(spec: dict) -> dict:
    """Track one video in this process and report its memory (called in a subprocess)."""
    import torch

    torch.set_num_threads(spec["threads"])
    warnings.simplefilter("ignore")
    os.environ["TQDM_DISABLE"] = "1"
    from sam2.build_sam import build_sam2_video_predictor

    from data.mask_io import read_label_png
    from inference.video_sources import ImageFolderSource
    from models import TrackingSession, build_model

    config, overrides = sam2_config_and_overrides(spec["model"], spec.get("image_size"))
    torch.manual_seed(0)
    if spec["predictor"] == "sam2":
        predictor = build_sam2_video_predictor(config, None, device=spec["device"], hydra_overrides_extra=overrides,
                                               vos_optimized=spec.get("vos_optimized", False))
    else:
        predictor = build_model(config=config, device=spec["device"], memory=spec["memory"], overrides=overrides,
                                predictor=True)
    baseline = current_rss_mb()
    video = Path(spec["video"])
    frames = sorted(video.glob("*.jpg"))[: spec["length"]]
    clip = Path(spec["work"]) / f"clip_{spec['length']}"
    if not clip.exists():  # a folder holding the first `length` frames (links, no copies)
        tmp = Path(tempfile.mkdtemp(dir=spec["work"]))
        for f in frames:
            os.symlink(f, tmp / f.name)
        os.replace(tmp, clip)
    masks = first_frame_masks(read_label_png(Path(spec["first_mask"])), spec.get("objects", 1))
    cuda = torch.device(spec["device"]).type == "cuda"
    start = time.perf_counter()
    with torch.inference_mode():
        ours = spec["predictor"] != "sam2"
        session = TrackingSession(predictor, ImageFolderSource(clip) if ours else clip, dtype=spec.get("dtype", "fp32"),
                                  batch_objects=ours and len(masks) > 1)
        for obj_id, mask in enumerate(masks, 1):
            session.add_mask(0, obj_id, mask)
        n = 0
        for frame in session.propagate():
            n += 1
            _ = frame.masks()  # what a caller would keep: nothing
    seconds = time.perf_counter() - start
    return {
        **{k: spec[k] for k in ("predictor", "memory", "length", "model", "image_size")},
        "frames": n,
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "growth_mb": round(peak_rss_mb() - baseline, 1),
        "ms_per_frame": round(1000 * seconds / max(n, 1), 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
    }


def make_video(work: Path, length: int, height: int, width: int, seed: int) -> tuple:
    from data.synthetic_video import write_synthetic_dataset

    root = work / "synthetic"
    if not root.exists():
        write_synthetic_dataset(root, 1, length, seed=seed, speed="mixed", size=(height, width), write_mp4=False)
    video = next(p for p in (root / "JPEGImages").iterdir() if p.is_dir())
    first_mask = sorted((root / "Annotations" / video.name).glob("*.png"))[0]
    return video, first_mask


def to_markdown(rows: list, meta: dict) -> str:
    lines = [
        f"Peak RSS while tracking a {meta['height']}p synthetic video ({meta['model']} model"
        f"{', ' + str(meta['image_size']) + ' px' if meta['image_size'] else ''}, {meta['device']}, "
        f"{meta['threads']} threads; {meta['machine']}, {meta['date']}).",
        "",
        "| predictor | frames | peak RSS (MB) | growth over model (MB) | ms/frame |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = "sam2 (Meta)" if r["predictor"] == "sam2" else f"ours ({r['memory']}, evicting)"
        lines.append(f"| {name} | {r['frames']} | {r['peak_rss_mb']:.0f} | {r['growth_mb']:.0f} | {r['ms_per_frame']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = ArgumentParser(prog="benchmark_memory.py", description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[100, 500, 1000])
    p.add_argument("--model", default="mini", help="mini | tiny | small | base_plus | large")
    p.add_argument("--image_size", type=int, help="model input size (default: the config's)")
    p.add_argument("--video_size", type=int, nargs=2, default=[480, 854], metavar=("H", "W"))
    p.add_argument("--predictors", nargs="+", default=["ours", "sam2"], choices=["ours", "sam2"])
    p.add_argument("--memory", default="tsms", help="our memory preset")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--work_dir", default=None, help="where the synthetic video is written (default: a temp dir)")
    p.add_argument("--out", default="bench/memory", help="output prefix: writes <out>.json and <out>.md")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier <out>.json / <out>.md")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        print(json.dumps(run_child(json.loads(args._child))))
        return 0
    for flag, values, low in (("--lengths", args.lengths, 1), ("--video_size", args.video_size, 32),
                              ("--threads", [args.threads], 1)):
        if min(values) < low:
            raise UserError(f"{flag} must be at least {low}, got {min(values)}")
    if args.image_size is not None and (args.image_size < 64 or args.image_size % 16):
        raise UserError(f"--image_size must be a multiple of 16 of at least 64, got {args.image_size}")
    out = Path(args.out)
    check_result_files(out, args.overwrite, "benchmark_memory.py", "Peak RSS while tracking")
    setup_logging("INFO")
    with contextlib.ExitStack() as stack:  # a scratch video, removed however the run ends, unless --work_dir
        work = Path(args.work_dir) if args.work_dir else stack.enter_context(work_dir(out.parent, f"{out.name}.work"))
        work.mkdir(parents=True, exist_ok=True)
        rows, meta = _measure(args, work)
    with atomic_write(out.with_suffix(".json")) as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    with atomic_write(out.with_suffix(".md")) as f:
        f.write(to_markdown(rows, meta))
    print(to_markdown(rows, meta))
    return 0


def _measure(args, work: Path):
    video, first_mask = make_video(work, max(args.lengths), *args.video_size, seed=0)
    rows = []
    for length in args.lengths:
        for predictor in args.predictors:
            spec = {"predictor": predictor, "memory": args.memory if predictor == "ours" else "sam2", "length": length,
                    "model": args.model, "image_size": args.image_size, "device": args.device, "threads": args.threads,
                    "video": str(video), "first_mask": str(first_mask), "work": str(work)}
            out = subprocess.run([sys.executable, __file__, "--_child", json.dumps(spec)], capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"benchmark child failed ({predictor}, {length} frames):\n{out.stderr[-2000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            log.info("%s %d frames: peak RSS %.0f MB (+%.0f MB), %.1f ms/frame", predictor, length, row["peak_rss_mb"], row["growth_mb"], row["ms_per_frame"])
            rows.append(row)
    meta = {"model": args.model, "image_size": args.image_size, "height": args.video_size[0], "device": args.device,
            "threads": args.threads, "machine": f"{platform.machine()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    return rows, meta


if __name__ == "__main__":
    sys.exit(run_cli(main))
