"""Smoke version of the quickstart: every stage runs as the
user's command would (subprocesses of the real CLIs), at toy sizes, and every artefact
the README promises is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
                                    "--size", "64", "--from_scratch", *TOY], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
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
