"""predict_video.py end to end on a tiny model: prompts, inputs, outputs, live mode, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from inference.predict import segment_video
from inference.prompts import Prompt
from inference.predict_video import main
from inference.video_sources import StreamSource, open_video_source
from models import build_tsms_sam2_video_predictor
from tests.conftest import make_two_object_video
from utils.cli import run_cli
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
N_FRAMES = 12


def _save_labels(path: Path, labels: np.ndarray):
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    img.save(path)


@pytest.fixture(scope="module")
def vos_root(tmp_path_factory):
    """A VOS split with one 2-object video, its annotations and an mp4 copy."""
    root = tmp_path_factory.mktemp("vos")
    masks = make_two_object_video(root / "JPEGImages" / "vid", num_frames=N_FRAMES)
    (root / "Annotations" / "vid").mkdir(parents=True)
    for t in range(N_FRAMES):
        labels = np.zeros(masks[1][t].shape, np.uint8)
        labels[masks[1][t]], labels[masks[2][t]] = 1, 2
        _save_labels(root / "Annotations" / "vid" / f"{t:05d}.png", labels)
    h, w = masks[1].shape[1:]
    writer = cv2.VideoWriter(str(root / "vid.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for t in range(N_FRAMES):
        writer.write(cv2.imread(str(root / "JPEGImages" / "vid" / f"{t:05d}.jpg")))
    writer.release()
    return root, masks


def cli(*args) -> int:
    return run_cli(main, [str(a) for a in args] + ["--quiet"])


def _labels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "P"
        return np.array(img)


@pytest.mark.parametrize("input_kind", ["frames", "mp4"])
@pytest.mark.parametrize("prompt_type", ["mask", "box", "point"])
def test_every_prompt_type_on_frames_and_mp4(vos_root, mini_checkpoint, tmp_path, input_kind, prompt_type):
    root, masks = vos_root
    video = root / "JPEGImages" / "vid" if input_kind == "frames" else root / "vid.mp4"
    args = ["--video_path", video, "--checkpoint", mini_checkpoint, "--model_cfg", "mini", "--output_dir", tmp_path / "out"]
    if prompt_type == "mask":
        args += ["--mask_path", root / "Annotations" / "vid" / "00000.png"]
    elif prompt_type == "box":
        ys, xs = np.nonzero(masks[1][0])
        args += ["--prompt_type", "box", "--box", xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    else:
        ys, xs = np.nonzero(masks[1][0])
        args += ["--prompt_type", "point", "--points", f"{xs.mean():.1f},{ys.mean():.1f},1;5,5,0"]
    assert cli(*args) == 0
    name = "vid"
    pngs = sorted((tmp_path / "out" / name).glob("*.png"))
    assert [p.stem for p in pngs] == [f"{t:05d}" for t in range(N_FRAMES)]
    first = _labels(pngs[0])
    assert first.shape == masks[1].shape[1:]
    expected_ids = {1, 2} if prompt_type == "mask" else {1}
    assert set(np.unique(first)) - {0} <= expected_ids and (first > 0).any()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["videos"][0]["frames"] == N_FRAMES and summary["videos"][0]["fps"] > 0
    assert not list((tmp_path / "out").glob(".tmp-*"))


def test_mask_prompt_on_vos_folder_uses_first_frame_gt(vos_root, mini_checkpoint, tmp_path):
    root, _ = vos_root
    assert cli("--video_path", root / "JPEGImages" / "vid", "--checkpoint", mini_checkpoint, "--model_cfg", "mini",
               "--output_dir", tmp_path / "out", "--overlay", "--save_per_object") == 0
    gt0 = _labels(root / "Annotations" / "vid" / "00000.png")
    pred0 = _labels(tmp_path / "out" / "vid" / "00000.png")
    for obj in (1, 2):  # the prompted GT comes back (through SAM2's low-res mask logits)
        inter, union = ((pred0 == obj) & (gt0 == obj)).sum(), ((pred0 == obj) | (gt0 == obj)).sum()
        assert inter / union > 0.8
    assert len(list((tmp_path / "out" / "per_object" / "vid" / "2").glob("*.png"))) == N_FRAMES
    cap = cv2.VideoCapture(str(tmp_path / "out" / "overlays" / "vid.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES
    extras = json.loads((tmp_path / "out" / "summary.json").read_text())["videos"][0]["extras"]
    assert extras["overlay"].endswith("overlays/vid.mp4") and extras["per_object"].endswith("per_object/vid")


def test_speed_flags_reach_the_session(vos_root, mini_checkpoint, tmp_path):
    root, _ = vos_root
    base = ["--video_path", root / "JPEGImages" / "vid", "--checkpoint", mini_checkpoint, "--model_cfg", "mini"]
    runs = {"fp32": [], "batched": ["--batch_objects"], "bf16": ["--batch_objects", "--dtype", "bf16"]}
    for name, flags in runs.items():
        assert cli(*base, "--output_dir", tmp_path / name, *flags) == 0
    frames = sorted(p.name for p in (tmp_path / "fp32" / "vid").glob("*.png"))
    assert len(frames) == N_FRAMES
    agree = [(_labels(tmp_path / "fp32" / "vid" / f) == _labels(tmp_path / "batched" / "vid" / f)).mean()
             for f in frames]
    assert min(agree) >= 0.999, min(agree)  # fp32 batching: logits equal up to reassociation
    assert sorted(p.name for p in (tmp_path / "bf16" / "vid").glob("*.png")) == frames
    # (bf16's mask IoU vs fp32 is tested on weights that track: tests/test_speed_options.py)
    assert cli(*base, "--output_dir", tmp_path / "x", "--dtype", "fp16") == 2  # choices=


def test_dataset_dir_mode(vos_root, mini_checkpoint, tmp_path):
    root, _ = vos_root
    assert cli("--dataset_dir", root, "--checkpoint", mini_checkpoint, "--model_cfg", "mini", "--output_dir", tmp_path / "o",
               "--overlay") == 0
    assert len(list((tmp_path / "o" / "vid").glob("*.png"))) == N_FRAMES
    extras = json.loads((tmp_path / "o" / "summary.json").read_text())["videos"][0]["extras"]
    assert set(extras) == {"masks", "overlay"} and Path(extras["overlay"]).is_file()


def test_json_prompts_with_an_object_appearing_later(vos_root, mini_checkpoint, tmp_path):
    root, masks = vos_root
    _save_labels(tmp_path / "obj1.png", masks[1][0].astype(np.uint8))
    ys, xs = np.nonzero(masks[2][5])
    spec = {"prompts": [
        {"obj_id": 1, "frame": 0, "mask": "obj1.png"},
        {"obj_id": 7, "frame": 5, "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
         "points": [[float(xs.mean()), float(ys.mean()), 1]]},
    ]}
    (tmp_path / "prompts.json").write_text(json.dumps(spec))
    assert cli("--video_path", root / "JPEGImages" / "vid", "--checkpoint", mini_checkpoint, "--model_cfg", "mini",
               "--prompts", tmp_path / "prompts.json", "--output_dir", tmp_path / "out") == 0
    frames = [_labels(tmp_path / "out" / "vid" / f"{t:05d}.png") for t in range(N_FRAMES)]
    assert all(not (f == 7).any() for f in frames[:5])
    assert (frames[5] == 7).any() and (frames[0] == 1).any()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["videos"][0]
    assert summary["objects"] == [1, 7] and summary["prompt_frames"] == {"0": [1], "5": [7]}


def test_reverse_covers_frames_before_the_prompt(vos_root, mini_checkpoint, tmp_path):
    root, masks = vos_root
    _save_labels(tmp_path / "m.png", masks[1][7].astype(np.uint8))
    base = ["--video_path", root / "JPEGImages" / "vid", "--checkpoint", mini_checkpoint, "--model_cfg", "mini",
            "--mask_path", tmp_path / "m.png", "--prompt_frame", 7]
    assert cli(*base, "--output_dir", tmp_path / "fwd") == 0
    assert cli(*base, "--output_dir", tmp_path / "both", "--reverse") == 0
    fwd = [_labels(tmp_path / "fwd" / "vid" / f"{t:05d}.png") for t in range(N_FRAMES)]
    both = [_labels(tmp_path / "both" / "vid" / f"{t:05d}.png") for t in range(N_FRAMES)]
    assert not any(f.any() for f in fwd[:7])
    assert all(b.any() for b in both[:7])
    assert all(np.array_equal(a, b) for a, b in zip(fwd[7:], both[7:]))


def test_eviction_gives_identical_results_over_60_frames(tmp_path, mini_checkpoint):
    make_two_object_video(tmp_path / "long", num_frames=60)
    predictor = build_tsms_sam2_video_predictor("mini", str(mini_checkpoint), memory="tsms")

    def run(evict):
        state = predictor.init_state(open_video_source(tmp_path / "long"), evict_outputs=evict)
        predictor.add_new_points_or_box(state, 30, 1, points=[[100, 40]], labels=[1])
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for reverse in (False, True):
                for f, _, logits in predictor.propagate_in_video(state, reverse=reverse):
                    out[(reverse, f)] = logits.clone()
        stored = sum(len(d["non_cond_frame_outputs"]) for d in state["output_dict_per_obj"].values())
        return out, stored

    kept, stored_all = run(False)
    evicted, stored_few = run(True)
    assert kept.keys() == evicted.keys() and len(kept) == 61
    assert all(torch.equal(kept[k], evicted[k]) for k in kept)
    assert stored_all == 59 and stored_few < stored_all * 0.8


def _live_frames(folder: Path, delay: float, interrupt_after=None):
    for t, path in enumerate(sorted(folder.glob("*.jpg"))):
        if interrupt_after is not None and t == interrupt_after:
            raise KeyboardInterrupt
        time.sleep(delay)
        yield np.array(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("interrupt_after", [None, 8])
def test_live_mode_from_a_generator(mini_checkpoint, tmp_path, interrupt_after):
    n = 18  # >= 16 frames: SAM2 then reads the same object-pointer window as for a stream
    folder = tmp_path / "src" / "vid"
    masks = make_two_object_video(folder, num_frames=n)
    predictor = build_tsms_sam2_video_predictor("mini", str(mini_checkpoint), memory="tsms")
    source = StreamSource(_live_frames(folder, 0.01, interrupt_after), name="live")
    prompt = Prompt(obj_id=1, frame_idx=0, mask=masks[1][0])
    result = segment_video(predictor, source, [prompt], tmp_path / "out")
    expected = n if interrupt_after is None else interrupt_after
    assert result.live and result.frames == expected and result.interrupted == (interrupt_after is not None)
    assert len(list((tmp_path / "out" / "live").glob("*.png"))) == expected
    assert result.latency_ms["median"] > 0
    # frames arrive one by one yet give the offline result (for the frames seen so far)
    offline = segment_video(predictor, open_video_source(folder), [prompt], tmp_path / "off")
    assert offline.frames == n
    for t in range(expected):
        name = f"{t:05d}.png"
        assert np.array_equal(_labels(tmp_path / "out" / "live" / name), _labels(tmp_path / "off" / "vid" / name))


# ---------------------------------------------------------------- bad input
@pytest.fixture()
def corrupt_video(vos_root, tmp_path):
    root, _ = vos_root
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for p in (root / "JPEGImages" / "vid").glob("*.jpg"):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "00006.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def _bad_cases(root, masks, tmp_path, ckpt, corrupt):
    video = root / "JPEGImages" / "vid"
    big = np.zeros((10, 10), np.uint8)
    big[2:5, 2:5] = 1
    _save_labels(tmp_path / "small_mask.png", big)
    _save_labels(tmp_path / "empty_mask.png", np.zeros(masks[1].shape[1:], np.uint8))
    (tmp_path / "a_file").write_text("x")
    torch.save({"weights": 1}, tmp_path / "not_sam2.pt")
    m = ["--checkpoint", ckpt, "--model_cfg", "mini"]
    return {
        "missing video": (["--video_path", tmp_path / "nope.mp4", *m], "video not found"),
        "unreadable video": (["--video_path", tmp_path / "a_file", *m], "unsupported video file"),
        "corrupt frame": (["--video_path", corrupt, *m, "--mask_path", root / "Annotations/vid/00000.png"], "frame 6"),
        "box outside": (["--video_path", video, *m, "--prompt_type", "box", "--box", 0, 0, 500, 20], "outside"),
        "point outside": (["--video_path", video, *m, "--prompt_type", "point", "--points", "900,3,1"], "outside"),
        "mask size": (["--video_path", video, *m, "--mask_path", tmp_path / "small_mask.png"], "mask is 10x10 but the video is 128x96"),
        "empty mask": (["--video_path", video, *m, "--mask_path", tmp_path / "empty_mask.png"], "empty"),
        "prompt type": (["--video_path", video, *m, "--prompt_type", "scribble"], "invalid choice: 'scribble'"),
        "points parse": (["--video_path", video, *m, "--prompt_type", "point", "--points", "1;2;x"], "cannot parse point"),
        "not a checkpoint": (["--video_path", video, "--checkpoint", tmp_path / "not_sam2.pt", "--model_cfg", "mini"], "not a SAM2/TSMS checkpoint"),
        "size mismatch": (["--video_path", video, "--checkpoint", ckpt, "--model_cfg", "small"], "does not match the model config"),
        "output is a file": (["--video_path", video, *m, "--output_dir", tmp_path / "a_file"], "exists and is a file"),
    }


CASES = ["missing video", "unreadable video", "corrupt frame", "box outside", "point outside", "mask size",
         "empty mask", "prompt type", "points parse", "not a checkpoint", "size mismatch", "output is a file"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_error(vos_root, mini_checkpoint, tmp_path, corrupt_video, capsys, case):
    root, masks = vos_root
    args, message = _bad_cases(root, masks, tmp_path, mini_checkpoint, corrupt_video)[case]
    out_dir = tmp_path / "out"
    if "--output_dir" not in args:
        args = [*args, "--output_dir", out_dir]
    assert cli(*args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    if out_dir.exists():  # nothing half-written: no video folder, no temp folder
        assert not [p for p in out_dir.iterdir() if p.name != "summary.json"]


def test_real_cli_process_exit_code(vos_root, mini_checkpoint, tmp_path):
    """The script itself (not main()) from another working directory: bootstrap + exit code."""
    root, _ = vos_root
    ok = subprocess.run(
        [sys.executable, str(REPO / "inference" / "predict_video.py"), "--video_path", str(root / "JPEGImages" / "vid"),
         "--checkpoint", str(mini_checkpoint), "--model_cfg", "mini", "--output_dir", "res", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "res" / "vid").glob("*.png"))) == N_FRAMES
    assert "propagate in video" not in ok.stderr and "it/s" not in ok.stderr  # --quiet silences sam2's bar too
    bad = subprocess.run(
        [sys.executable, str(REPO / "inference" / "predict_video.py"), "--video_path", "missing.mp4", "--model_cfg", "mini"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["error: video not found: missing.mp4"]


def test_user_error_is_exported():
    assert issubclass(UserError, Exception)
