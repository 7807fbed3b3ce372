"""Synthetic surgical-like videos with exact masks, written in the VOS layout.

Each video (random stream ``numpy.random.default_rng([seed, video_index])``) has:

* a reddish tissue background with vessels, fat and specular highlights, drifting slowly;
* 1-3 instruments. Each pivots about its own trocar point outside the frame (beyond one
  border), so its shaft always enters from the border; the tip follows a smooth random curve
  at a set speed and two jaws open and close. Later objects are drawn on top of earlier
  ones (occlusion), and each instrument may retract out of view and come back;
* motion ``slow`` (smooth, ~0.4-1% of the frame side per frame) or ``fast``, where each
  instrument is either ``fast`` (smooth, 3-6%) or ``irregular`` (1.5-3.5% with sudden jumps
  of 15-30% of the side). ``--speed mixed`` alternates slow (even index) and fast (odd);
* or a scenario (occlusion, crossing, jumps, long, appearance; data/synthetic_scenarios.py)
  with its events in ``meta.json``. ``--scenario mixed`` cycles through the five.

``domain="generic"`` (``--domain generic``) draws another family instead, for pretraining:
textured natural-ish scenes, free-floating objects of varied shape, colour and scale, and a
panning camera (data/synthetic_generic.py); ``basic`` videos only.

Output (``write_synthetic_dataset``)::

    <out>/JPEGImages/<video>/00000.jpg     frames (JPEG, quality 95)
    <out>/Annotations/<video>/00000.png    palette PNGs, value = object id (1..3), 0 = background
    <out>/Prompts/<video>/00000.png        first-frame annotation, for inference
    <out>/videos/<video>.mp4               the frames as an mp4 (cv2, 'mp4v')
    <out>/ImageSets/{all,slow,fast}.txt    video names by speed (and <scenario>.txt by scenario)
    <out>/meta.json                        settings, per-video scenario and events, per-object motion
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from data.mask_io import frame_file_name, write_label_png, write_rgb
from data.synthetic_scenarios import SPEED as SCENARIO_SPEED
from data.synthetic_scenarios import (SCENARIOS, ScenarioPlan, plan_basic, plan_scenario, scenario_length,
                                     video_scenarios)
from data.synthetic_scene import (
    TissueBackground, cast_shadow, fill_polygons, instrument_polygons, polygons_bbox, shade_instrument,
)
from data.synthetic_generic import render_generic_video
from data.synthetic_tracks import InstrumentTrack, plan_instruments  # noqa: F401  (re-exported)
from utils.errors import UserError
from utils.io import name_path
from data.synthetic_output import GENERATOR_NAME, check_output, publish, staging_dir

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
SPEEDS = ("slow", "fast", "mixed")
DOMAINS = ("surgical", "generic")

@dataclass
class SyntheticFrame:
    """One rendered frame.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB.
        label: ``[H, W]`` uint8 visible object id per pixel (0 = background).
        full_masks: ``[K, H, W]`` bool, each object's silhouette before occlusion.
    """

    image: np.ndarray
    label: np.ndarray
    full_masks: np.ndarray


def render_video(
    rng: np.random.Generator, num_frames: int, height: int, width: int, speed: str
) -> Tuple[List[InstrumentTrack], Iterator[SyntheticFrame]]:
    """Plan one ``basic`` video and return its tracks and a lazy iterator over its frames."""
    plan, frames = render_scenario_video(rng, num_frames, height, width, "basic", speed)
    return plan.tracks, frames


def render_scenario_video(
    rng: np.random.Generator, num_frames: int, height: int, width: int, scenario: str, speed: str = "slow"
) -> Tuple[ScenarioPlan, Iterator[SyntheticFrame]]:
    """Plan one video of ``scenario`` (``speed`` only for ``basic``); its plan and lazy frames."""
    if scenario == "basic":
        if speed not in ("slow", "fast"):
            raise ValueError(f"video speed must be slow or fast, got {speed!r}")
    else:
        speed = SCENARIO_SPEED[scenario]
    background = TissueBackground(rng, height, width, drift=0.01 if speed == "slow" else 0.03)
    if scenario == "basic":
        plan = plan_basic(rng, num_frames, height, width, speed)
    else:
        plan = plan_scenario(rng, scenario, num_frames, height, width)
    tracks = plan.tracks
    noise_pad = 16
    noise = rng.normal(0.0, 2.0, size=(height + noise_pad, width + noise_pad, 3)).astype(np.float32)
    offsets = rng.integers(0, noise_pad, size=(num_frames, 2))
    side = min(height, width)
    shadow_blur = max(3, int(0.03 * side)) | 1
    shadow_offset = (int(round(0.012 * side)), int(round(0.02 * side)))

    def frames() -> Iterator[SyntheticFrame]:
        for t in range(num_frames):
            shift = plan.camera[t]
            image = background.frame(plan.background_times[t], shift)
            label = np.zeros((height, width), np.uint8)
            full = np.zeros((len(tracks), height, width), bool)
            for obj, track in enumerate(tracks, start=1):
                if track.drawn is not None and not track.drawn[t]:
                    continue  # out of view
                pivot, tip = track.pivot_at(t) + shift, track.tips[t] + shift
                parts = instrument_polygons(pivot, tip, track.openings[t], track.look)
                bbox = polygons_bbox(parts, height, width)
                if bbox[0] >= bbox[1] or bbox[2] >= bbox[3]:
                    continue  # entirely outside the frame
                part_map = fill_polygons(parts, height, width)
                mask = part_map > 0
                full[obj - 1] = mask
                cast_shadow(image, mask.view(np.uint8), shadow_offset, shadow_blur, 0.35)
                (ys, xs), colours = shade_instrument(part_map, pivot, tip, track.look, bbox)
                image[ys, xs] = colours
                label[mask] = obj
            for effect in plan.effects:
                image = effect(image, t)
            cv2.multiply(image, background.vignette, dst=image)
            image = cv2.GaussianBlur(image, (3, 3), 0.6)
            oy, ox = offsets[t]
            cv2.add(image, noise[oy:oy + height, ox:ox + width], dst=image)
            yield SyntheticFrame(cv2.convertScaleAbs(image), label, full)

    return plan, frames()


def video_speeds(num_videos: int, speed: str) -> List[str]:
    """Speed of each video: all the same, or alternating slow/fast for ``mixed``."""
    if speed not in SPEEDS:
        raise UserError(f"--speed must be one of {', '.join(SPEEDS)}, got {speed!r}")
    if speed == "mixed":
        return ["slow" if i % 2 == 0 else "fast" for i in range(num_videos)]
    return [speed] * num_videos


def write_synthetic_dataset(
    out: Union[str, os.PathLike],
    num_videos: int,
    num_frames: int,
    seed: int = 0,
    speed: str = "mixed",
    size: Sequence[int] = (512, 512),
    fps: float = 10.0,
    write_mp4: bool = True,
    progress: bool = True,
    scenario: str = "basic",
    domain: str = "surgical",
) -> Dict:
    """Generate ``num_videos`` videos into ``out``; returns ``meta.json``. A re-run into an
    earlier ``out`` replaces only the generator's own entries (data/synthetic_output.py).

    ``scenario`` (data/synthetic_scenarios.py): ``basic`` videos follow ``speed``; the others
    set their own speed and length (at least their minimum) and record their events. The
    same arguments give byte-identical JPEG/PNG/JSON files. ``domain``: ``surgical`` (the
    default) or ``generic`` (another appearance and motion, for pretraining; ``basic`` only).
    """
    height, width = (int(v) for v in size)
    if num_videos < 1 or num_frames < 1:
        raise UserError("--num_videos and --num_frames must be >= 1")
    if height < 32 or width < 32:
        raise UserError(f"--size must be at least 32 x 32, got {height} x {width}")
    out = Path(out)
    check_output(out)
    if scenario not in SCENARIOS:
        raise UserError(f"--scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    if domain not in DOMAINS:
        raise UserError(f"--domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    if domain != "surgical" and scenario != "basic":
        raise UserError(f"--domain {domain} has no scenarios; use --scenario basic, got {scenario!r}")
    speeds = video_speeds(num_videos, speed)
    scenarios = video_scenarios(num_videos, scenario)
    lengths = [scenario_length(s, num_frames) for s in scenarios]
    meta: Dict = {
        "generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "seed": int(seed),
        "num_videos": int(num_videos), "num_frames": int(num_frames), "size": [height, width],
        "speed": speed, "scenario": scenario, "fps": float(fps), "videos": {},
    }
    if domain != "surgical":  # absent means surgical: the default files stay byte for byte as before
        meta["domain"] = domain
    tmp = staging_dir(out)
    bar = tqdm(total=sum(lengths), desc="synthetic", unit="frame", disable=not progress)
    try:
        for index, (video_scenario, length) in enumerate(zip(scenarios, lengths)):
            name = f"video_{index:04d}"
            rng = np.random.default_rng([int(seed), index])
            if domain == "generic":
                objects, _, generic = render_generic_video(rng, length, height, width, speeds[index])
                frames = (SyntheticFrame(*f) for f in generic)
                events, described = [], {str(i): {"motion": o.motion, "speed_px": round(o.speed, 3),
                                                  "shape": o.shape, "texture": o.texture_kind}
                                         for i, o in enumerate(objects, start=1)}
            else:
                plan, frames = render_scenario_video(rng, length, height, width, video_scenario, speeds[index])
                events, described = plan.events, {
                    str(i): {"motion": tr.motion, "tip_speed_px": round(tr.speed, 3), "hidden_frames": tr.hidden}
                    for i, tr in enumerate(plan.tracks, start=1)}
            meta["videos"][name] = _write_video(tmp, name, frames, fps, write_mp4, bar)
            meta["videos"][name].update(
                speed=speeds[index] if video_scenario == "basic" else SCENARIO_SPEED[video_scenario],
                scenario=video_scenario, events=events, objects=described)
        sets = tmp / "ImageSets"
        sets.mkdir()
        names = list(meta["videos"])
        (sets / "all.txt").write_text("".join(f"{n}\n" for n in names))
        for kind in ("slow", "fast"):
            (sets / f"{kind}.txt").write_text(
                "".join(f"{n}\n" for n in names if meta["videos"][n]["speed"] == kind)
            )
        for kind in sorted({s for s in scenarios if s != "basic"}):
            (sets / f"{kind}.txt").write_text("".join(f"{n}\n" for n in names if meta["videos"][n]["scenario"] == kind))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        publish(tmp, out, meta)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        name_path(exc, out, tmp)
        raise
    finally:
        bar.close()
    log.info("wrote %d synthetic videos to %s", num_videos, out)
    return meta


def _write_video(root: Path, name: str, frames: Iterator[SyntheticFrame], fps: float, write_mp4: bool, bar) -> Dict:
    image_dir = root / "JPEGImages" / name
    mask_dir = root / "Annotations" / name
    prompt_dir = root / "Prompts" / name
    for directory in (image_dir, mask_dir, prompt_dir):
        directory.mkdir(parents=True)
    writer: Optional[cv2.VideoWriter] = None
    visible_frames: Dict[str, int] = {}
    for t, frame in enumerate(frames):
        write_rgb(image_dir / frame_file_name(t, "jpg"), frame.image)
        write_label_png(mask_dir / frame_file_name(t, "png"), frame.label)
        if t == 0:
            write_label_png(prompt_dir / frame_file_name(0, "png"), frame.label)
        for obj in np.unique(frame.label):
            if obj:
                visible_frames[str(int(obj))] = visible_frames.get(str(int(obj)), 0) + 1
        if write_mp4:
            if writer is None:
                (root / "videos").mkdir(exist_ok=True)
                height, width = frame.label.shape
                path = root / "videos" / f"{name}.mp4"
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
                if not writer.isOpened():
                    raise OSError(f"cv2 could not open an mp4 writer for {path}")
            writer.write(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        bar.update(1)
    if writer is not None:
        writer.release()
    return {"num_frames": t + 1, "visible_frames": visible_frames}
