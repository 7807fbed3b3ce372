"""Smoke version of the quickstart: every stage runs as the
user's command would (subprocesses of the real CLIs), at toy sizes, and every artefact
the README promises is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TOY = ["--train_videos", "2", "--val_videos", "1", "--frames", "4", "--epochs", "1", "--clips_per_video", "1",
       "--threads", "1", "--override", "num_frames=3", "--override", "trainer.image_every=1"]


def _run(script: str, args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_quickstart_smoke_writes_every_artefact(tmp_path):
    out = tmp_path / "qs"
    result = _run("quickstart.py", ["--out", str(out), "--test_videos", "2", "--long_videos", "1", "--static_videos", "1",
                                    "--size", "64", "--from_scratch", "--procs", "2", *TOY], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # two DDP processes, each with its own share: 2 videos x 1 clip x 2 processes = 4 clips, 2 steps each
    assert "torch.distributed.run --standalone --nproc_per_node=2 training/train_tsms_sam2.py" in result.stderr
    assert "1 epochs x 2 steps (batch 1 x 2 process(es))" in result.stderr
    # data, training run (config, checkpoints incl. the untrained weights, tensorboard)
    for split in ("train", "val", "test", "test_long", "test_static"):
        assert (out / "data" / split / "meta.json").is_file()
    long_meta = json.loads((out / "data" / "test_long" / "meta.json").read_text())
    assert long_meta["scenario"] == "sustained" and long_meta["num_frames"] == 96  # sustained mixed motion
    assert json.loads((out / "data" / "test_static" / "meta.json").read_text())["scenario"] == "long"
    run = out / "run"
    for name in ("init.pt", "last.pt"):
        assert (run / "checkpoints" / name).is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # predictions + overlay videos, evaluation JSON/CSV/plot, summary table
    overlays = sorted((out / "predictions" / "trained" / "overlays").glob("*.mp4"))
    assert len(overlays) == 2 and all(p.stat().st_size > 0 for p in overlays)
    assert (out / "predictions" / "untrained" / "summary.json").is_file()
    assert not (out / "predictions" / "untrained_long").exists()  # the baseline skips the long videos
    assert len(list((out / "predictions" / "trained_long" / "overlays").glob("*.mp4"))) == 1
    assert len(list((out / "predictions" / "trained_static" / "overlays").glob("*.mp4"))) == 1
    assert (out / "eval" / "dice_trained.png").stat().st_size > 0
    assert (out / "eval" / "trained_objects.csv").is_file()
    report = json.loads((out / "eval" / "trained.json").read_text())
    assert report["settings"]["skip_first"] is True
    summary = (out / "summary.md").read_text()
    assert "Dice, trained" in summary and "Dice, untrained" in summary and "fast videos" in summary
    assert "| test_long/video_0000 | long, sustained mixed motion |" in summary
    assert "| test_static/video_0000 | long, static phases |" in summary
    assert "**long, sustained mixed motion videos**" in summary and "**long, static phases videos**" in summary
    assert summary in result.stdout  # the table is printed too
    # the commands of each stage are logged so a user can rerun them by hand
    assert "training/train_tsms_sam2.py" in result.stderr and "eval/evaluate.py" in result.stderr


def test_quickstart_refuses_bad_input(tmp_path):
    result = _run("quickstart.py", ["--out", str(tmp_path / "x"), "--size", "100"], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: --size must be a multiple of 32 (the model's stride), got 100")
    result = _run("quickstart.py", ["--out", str(tmp_path / "x"), "--init_checkpoint", "auto"], cwd=tmp_path)
    assert result.returncode == 2 and "no official SAM2 checkpoint in" in result.stderr
    assert not (tmp_path / "x").exists()  # nothing was started


def test_quickstart_refuses_an_out_that_holds_a_run(tmp_path):
    (tmp_path / "x" / "run" / "checkpoints").mkdir(parents=True)
    result = _run("quickstart.py", ["--out", str(tmp_path / "x")], cwd=tmp_path)
    assert result.returncode == 2 and "already holds a quickstart run" in result.stderr
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["run"]  # no data generated


def test_quickstart_init_checkpoint_name_must_tell_the_model(tmp_path):
    from quickstart import find_official_checkpoint
    from utils.cli import UserError

    good = tmp_path / "sam2.1_hiera_small.pt"
    good.write_bytes(b"x")
    assert find_official_checkpoint(str(good), None) == (good.resolve(), "small")
    v1 = tmp_path / "sam2_hiera_tiny.pt"
    v1.write_bytes(b"x")
    assert find_official_checkpoint(str(v1), None)[1] == "sam2_tiny"
    other = tmp_path / "weights.pt"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match="pass --init_model"):
        find_official_checkpoint(str(other), None)
    assert find_official_checkpoint(str(other), "mini")[1] == "mini"


def test_summary_names_objects_mostly_hidden_on_the_prompt_frame(tmp_path):
    """An object whose first-frame mask is a sliver of its later area is named, with its Dice;
    one fully shown is not, and an object absent on frame 0 (prompted later) is not either."""
    from data.mask_io import write_label_png
    from eval.synthetic_pipeline import hidden_prompts, quickstart_summary

    video = tmp_path / "test" / "Annotations" / "video_0000"
    video.mkdir(parents=True)
    for t in range(5):
        labels = np.zeros((40, 40), np.uint8)
        labels[0:10, 0:10] = 1                      # object 1: 100 px on every frame
        labels[20:30, 20:30] = 2                    # object 2: 100 px, but 15 px on frame 0
        if t == 0:
            labels[20:30, 20:30] = 0
            labels[20:23, 20:25] = 2
        if t >= 2:
            labels[30:40, 0:10] = 3                 # object 3 appears on frame 2
        write_label_png(video / f"{t:05d}.png", labels)
    assert hidden_prompts(tmp_path / "test") == [("video_0000", 2, pytest.approx(0.15))]
    report = {"videos": {"video_0000": {"objects": {"1": {"dice": 0.9}, "2": {"dice": 0.25}, "3": {"dice": None}}}}}
    (tmp_path / "test" / "meta.json").write_text(
        '{"videos": {"video_0000": {"speed": "slow", "scenario": "basic"}}}')
    text = quickstart_summary({"test": tmp_path / "test"}, {"trained": {"test": report}}, [], {"total": 60.0})
    assert "Mostly hidden on the prompt frame" in text and "video_0000 object 2 (15%, Dice 0.25)" in text
    assert "object 1 (" not in text


def test_training_clips_scale_with_the_processes(tmp_path):
    """Each DDP process draws --clips_per_video clips per video (the sampler splits an epoch's
    clips between processes): the epoch's clips scale with the processes."""
    from quickstart import CLIPS_PER_VIDEO, parse_args, training_overrides

    def multiplier(*argv):
        found = [o for o in training_overrides(parse_args(["--from_scratch", *argv]), tmp_path)
                 if o.startswith("data.train.multiplier=")]
        assert len(found) == 1
        return int(found[0].split("=")[1])

    assert multiplier("--procs", "1") == CLIPS_PER_VIDEO == 18
    assert multiplier("--procs", "2") == 36
    assert multiplier("--procs", "3", "--clips_per_video", "5") == 15
    from utils.cli import UserError
    with pytest.raises(UserError, match="--procs must be at least 1, got 0"):
        parse_args(["--procs", "0"])
