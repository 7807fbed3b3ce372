"""The speed benchmark and the GPU check script, on the mini model (CPU, seconds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from eval import benchmark_speed
from utils.bootstrap import REPO_ROOT


def test_benchmark_reports_ratios_profiles_and_objects(tmp_path, restore_logging):
    out = tmp_path / "speed"
    argv = ["--models", "mini", "--sizes", "128", "--frames", "10", "--repeats", "1", "--objects", "1", "2",
            "--dtypes", "fp32", "bf16", "--memories", "tsms", "--threads", "1", "--out", str(out)]
    assert benchmark_speed.main(argv) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    names = {r["predictor"] for r in rows}
    assert names == {"sam2 (Meta)", "ours (tsms, fp32)", "ours (tsms, bf16)"}
    assert sorted({r["objects"] for r in rows}) == [1, 2]
    for r in rows:
        assert r["speedup_vs_sam2"] > 0 and r["steady_frames"] == 10 - 8
        assert set(r["profile_ms"]) >= {"image_encoder", "memory_attention", "sam_mask_decoder", "memory_encoder", "other"}
        assert r["profile_ms"]["image_encoder"] > 0
        if r["predictor"] == "sam2 (Meta)":
            assert r["speedup_vs_sam2"] == 1.0 and r["memory_tokens"] > 7 * 64  # 7 frames + object pointers
        else:
            assert r["memory_tokens"] < 7 * 64  # MS pruned
    assert "| mini | 128 | 2 | ours (tsms, bf16) |" in out.with_suffix(".md").read_text()
    with pytest.raises(Exception, match="exists; pass --overwrite"):  # re-runs never overwrite silently
        benchmark_speed.main(argv)


def test_benchmark_tracks_with_a_checkpoints_weights(tmp_path):
    """--checkpoint: every predictor (Meta's and ours) gets the trained weights, so rules
    that gate frames on predicted quality attend what a trained model predicts."""
    import torch

    from models import read_checkpoint
    from tests.trained_model import TRAINED_CHECKPOINT

    specs = benchmark_speed.variants(["quality"], ["fp32"], [False], torch.device("cpu"))
    predictors = benchmark_speed.build_predictors("mini", 128, specs, torch.device("cpu"), checkpoint=TRAINED_CHECKPOINT)
    trained = read_checkpoint(TRAINED_CHECKPOINT)["model"]
    for predictor, _, _ in predictors.values():
        state = predictor.state_dict()
        assert all(torch.equal(state[k], v.float()) for k, v in trained.items())
    with pytest.raises(Exception, match="pass one --models"):
        benchmark_speed.main(["--models", "mini", "tiny", "--checkpoint", str(TRAINED_CHECKPOINT), "--out",
                              str(tmp_path / "x")])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The GPU script end to end on CPU with tiny settings: tests, benchmark, one JSON.

    Slow (~2-3 min on 2 shared cores: several fresh processes for the memory column)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO_ROOT / "eval" / "gpu_check.sh"), "--device", "cpu", "--dry_run",
                           "--out", str(tmp_path / "check")], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["device"] == "cpu"
    assert report["tests"]["failed"] == 0 and report["tests"]["passed"] >= 2
    assert report["stages"] == {"tests": 0, "bench_mini": 0}
    assert {r["model"] for r in report["benchmark"]["rows"]} == {"mini"}
    assert {r["objects"] for r in report["benchmark"]["rows"]} == {1, 3}
    assert all(r["peak_rss_mb"] > 0 for r in report["benchmark"]["rows"] if r["objects"] == 1)
