"""predict_video.py under torchrun (2 gloo CPU processes): sharded videos, byte-identical
PNGs, one merged summary.json, a failed video named while the others complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.distributed import shard_jobs
from inference.predict_video import main
from tests.conftest import make_two_object_video
from utils.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
VIDEOS = {"a": 7, "b": 5, "c": 6}  # name: frames


@pytest.fixture(scope="module")
def vos_split(tmp_path_factory):
    """Three 2-object videos with first-frame annotations, and ``broken`` without any."""
    root = tmp_path_factory.mktemp("vos_ddp")
    for seed, (name, frames) in enumerate(VIDEOS.items()):
        masks = make_two_object_video(root / "JPEGImages" / name, num_frames=frames, seed=seed)
        labels = np.zeros(masks[1][0].shape, np.uint8)
        labels[masks[1][0]], labels[masks[2][0]] = 1, 2
        (root / "Annotations" / name).mkdir(parents=True)
        img = Image.fromarray(labels, mode="P")
        img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        img.save(root / "Annotations" / name / "00000.png")
    make_two_object_video(root / "JPEGImages" / "broken", num_frames=4, seed=9)
    (root / "Annotations" / "broken").mkdir()
    return root


def test_shard_jobs_balances_frames_and_covers_every_job_once():
    sizes = [10, 1, 5, 5, 3]
    shards = [shard_jobs(sizes, 2, r) for r in range(2)]
    assert shards == [[0, 4], [1, 2, 3]]  # 13 frames vs 11
    assert sorted(shards[0] + shards[1]) == list(range(5))
    assert shard_jobs(sizes, 1, 0) == list(range(5))
    assert [shard_jobs([4], 3, r) for r in range(3)] == [[0], [], []]


def test_two_processes_write_what_one_writes(vos_split, mini_checkpoint, tmp_path, capsys, one_torch_thread,
                                            restore_logging):
    """One thread in every process: CPU kernels may sum in another order with more threads."""
    args = ["--dataset_dir", str(vos_split), "--checkpoint", str(mini_checkpoint), "--model_cfg", "mini", "--quiet",
            "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "inference" / "predict_video.py"), *args, "--output_dir", str(tmp_path / "ddp")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert run_cli(main, [*args, "--output_dir", str(tmp_path / "single")]) == 2
    single_err = capsys.readouterr().err
    _, stderr = proc.communicate(timeout=300)

    for err in (single_err, stderr):  # the failed video is named, once, on one line
        errors = [line for line in err.splitlines() if "error: " in line]
        assert len(errors) == 1 and "1 of 4 video(s) failed: broken (file not found:" in errors[0], err[-3000:]
    assert proc.returncode != 0
    for name, frames in VIDEOS.items():  # the others complete, byte for byte
        single = sorted((tmp_path / "single" / name).glob("*.png"))
        ddp = sorted((tmp_path / "ddp" / name).glob("*.png"))
        assert len(single) == frames and [p.name for p in single] == [p.name for p in ddp]
        assert [a.name for a, b in zip(single, ddp) if a.read_bytes() != b.read_bytes()] == [], name
    assert not (tmp_path / "ddp" / "broken").exists()

    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    reference = json.loads((tmp_path / "single" / "summary.json").read_text())
    assert [v["video"] for v in summary["videos"]] == [v["video"] for v in reference["videos"]] == list(VIDEOS)
    assert summary["failed"] == reference["failed"] and [f["video"] for f in summary["failed"]] == ["broken"]
    assert summary["world_size"] == 2 and sorted(r["rank"] for r in summary["ranks"]) == [0, 1]
    assert sum(r["videos"] for r in summary["ranks"]) == 4 and all(r["videos"] for r in summary["ranks"])
    assert summary["frames"] == reference["frames"] == sum(VIDEOS.values())
    assert not [p for p in (tmp_path / "ddp").iterdir() if p.name.startswith(".tmp")]
