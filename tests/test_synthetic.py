"""Synthetic surgical-like videos: determinism, exact masks, layout, motion kinds."""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.mask_io import read_label_png, read_rgb
from data.motion_sampler import estimate_motion
from data.synthetic import main as synthetic_main
from data.synthetic_video import render_video, write_synthetic_dataset
from utils.cli import run_cli
from utils.errors import UserError


pytestmark = pytest.mark.usefixtures("restore_logging")


def _digests(root: Path):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "set"
    write_synthetic_dataset(out, 3, 8, seed=7, speed="mixed", size=(48, 64), progress=False)
    return out


def test_same_seed_same_bytes_other_seed_differs(generated, tmp_path):
    again = tmp_path / "again"
    write_synthetic_dataset(again, 3, 8, seed=7, size=(48, 64), progress=False)
    first, second = _digests(generated), _digests(again)
    assert first == second  # JPEG, PNG, JSON and (with this cv2 build) mp4 bytes
    other = tmp_path / "other"
    write_synthetic_dataset(other, 3, 8, seed=8, size=(48, 64), write_mp4=False, progress=False)
    assert _digests(other)["JPEGImages/video_0000/00000.jpg"] != first["JPEGImages/video_0000/00000.jpg"]


def test_layout_meta_and_video_files(generated):
    meta = json.loads((generated / "meta.json").read_text())
    assert meta["generator"] == "tsms-sam2-synthetic" and meta["size"] == [48, 64]
    speeds = [meta["videos"][f"video_{i:04d}"]["speed"] for i in range(3)]
    assert speeds == ["slow", "fast", "slow"]  # mixed alternates
    assert (generated / "ImageSets" / "fast.txt").read_text() == "video_0001\n"
    assert (generated / "ImageSets" / "slow.txt").read_text() == "video_0000\nvideo_0002\n"
    for name in meta["videos"]:
        frames = sorted((generated / "JPEGImages" / name).iterdir())
        masks = sorted((generated / "Annotations" / name).iterdir())
        assert [p.name for p in frames] == [f"{t:05d}.jpg" for t in range(8)]
        assert [p.name for p in masks] == [f"{t:05d}.png" for t in range(8)]
        prompt = read_label_png(generated / "Prompts" / name / "00000.png")
        assert np.array_equal(prompt, read_label_png(masks[0]))
        assert 1 <= len(meta["videos"][name]["objects"]) <= 3
        capture = cv2.VideoCapture(str(generated / "videos" / f"{name}.mp4"))
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            assert frame.shape == (48, 64, 3)
            count += 1
        capture.release()
        assert count == 8


def test_saved_files_match_rendered_frames(generated):
    rng = np.random.default_rng([7, 1])
    _, frames = render_video(rng, 8, 48, 64, "fast")
    for t, frame in enumerate(frames):
        label = read_label_png(generated / "Annotations" / "video_0001" / f"{t:05d}.png")
        assert np.array_equal(label, frame.label)
        jpeg = read_rgb(generated / "JPEGImages" / "video_0001" / f"{t:05d}.jpg")
        assert np.abs(jpeg.astype(int) - frame.image.astype(int)).mean() < 4


def test_masks_match_drawn_objects():
    kernel = np.ones((5, 5), np.uint8)
    object_grey, tissue_red, checked = [], [], 0
    for index, speed in enumerate(["slow", "fast", "fast", "slow"]):
        _, frames = render_video(np.random.default_rng([3, index]), 6, 96, 96, speed)
        for frame in frames:
            # occlusion: the visible label is the z-ordered composite of the full silhouettes
            composite = np.zeros_like(frame.label)
            for obj, full in enumerate(frame.full_masks, start=1):
                composite[full] = obj
            assert np.array_equal(composite, frame.label)
            image = frame.image.astype(int)
            saturation = image.max(-1) - image.min(-1)
            for obj in range(1, len(frame.full_masks) + 1):
                inner = cv2.erode((frame.label == obj).astype(np.uint8), kernel) > 0
                if inner.any():
                    object_grey.append((saturation[inner] < 45).mean())
                    checked += 1
            background = cv2.erode((frame.label == 0).astype(np.uint8), kernel) > 0
            red = (image[..., 0] > image[..., 1] + 25) & (image[..., 0] > image[..., 2] + 15)
            tissue_red.append(red[background].mean())
    assert checked > 10
    assert np.mean(object_grey) > 0.95 and min(object_grey) > 0.8  # instruments are grey metal
    assert np.mean(tissue_red) > 0.9  # tissue is red (minus specular highlights)


def test_motion_kinds_occlusion_and_reentry():
    motion = {"slow": [], "fast": []}
    occluded = reentered = False
    for index in range(8):
        speed = "slow" if index % 2 == 0 else "fast"
        tracks, frames = render_video(np.random.default_rng([11, index]), 30, 48, 48, speed)
        frames = list(frames)
        motion[speed].append(estimate_motion([f.label for f in frames], downsample=1).step_motion.mean())
        for f in frames:
            for a in range(len(f.full_masks)):
                for b in range(a + 1, len(f.full_masks)):
                    occluded |= bool((f.full_masks[a] & f.full_masks[b]).any())
        for obj in range(1, len(tracks) + 1):
            visible = np.array([(f.label == obj).any() for f in frames])
            gaps = np.flatnonzero(np.diff(visible.astype(int)) == 1)  # invisible -> visible
            reentered |= bool(visible[0] and len(gaps) > 0)
        assert {t.motion for t in tracks} <= ({"smooth"} if speed == "slow" else {"fast", "irregular"})
    assert occluded and reentered
    assert np.mean(motion["fast"]) > 3 * np.mean(motion["slow"])


def test_cli_writes_dataset(tmp_path):
    out = tmp_path / "cli"
    assert synthetic_main(["--out", str(out), "--num_videos", "1", "--num_frames", "3", "--seed", "1",
                           "--speed", "fast", "--size", "32", "40", "--no_mp4", "--log_level", "WARNING"]) == 0
    assert read_rgb(out / "JPEGImages" / "video_0000" / "00002.jpg").shape == (32, 40, 3)
    assert not (out / "videos").exists()
    assert json.loads((out / "meta.json").read_text())["videos"]["video_0000"]["speed"] == "fast"
    assert synthetic_main(["--out", str(out), "--num_videos", "1", "--num_frames", "2", "--size", "32", "32",
                           "--log_level", "WARNING"]) == 0  # re-running over its own output replaces it
    assert sorted(p.name for p in (out / "JPEGImages" / "video_0000").iterdir()) == ["00000.jpg", "00001.jpg"]


def test_cli_errors(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(UserError, match="not empty"):
        write_synthetic_dataset(foreign, 1, 2, size=(32, 32), progress=False)
    assert (foreign / "keep.txt").exists()
    assert run_cli(synthetic_main, ["--out", str(foreign), "--num_videos", "1", "--num_frames", "2"]) == 2
    assert run_cli(synthetic_main, ["--out", str(tmp_path / "x"), "--num_videos", "0", "--num_frames", "2"]) == 2
