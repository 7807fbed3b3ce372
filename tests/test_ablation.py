"""The ablation's statistics on hand-made scores (eval/ablation.py), and its CLI's resume and refusals."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval import ablation as abl

REPO = Path(__file__).resolve().parents[1]


def test_rows_follow_the_paper_and_inference_rows_reuse_the_tsms_weights():
    r = abl.ROWS
    assert [(r[k].sampler, r[k].memory) for k in ("sam2", "ts", "ms", "tsms")] == [
        ("uniform", "sam2"), ("multiscale", "sam2"), ("uniform", "tsms"), ("multiscale", "tsms")]
    assert r["tsms_fast"].run_key == r["auto"].run_key == "tsms"
    assert not r["tsms_fast"].trains and r["motion_adaptive"].trains
    assert (r["tsms_fast"].infer_memory, r["auto"].pruning_threshold) == ("tsms_fast", "auto")


def test_mean_and_sample_std_over_seeds():
    per_seed = {1: {"a": 0.8, "b": 0.6}, 2: {"a": 0.9, "b": 0.7}}
    assert abl.seed_means(per_seed, ["a", "b"]) == pytest.approx([0.7, 0.8])
    mean, std = abl.mean_std(abl.seed_means(per_seed, ["a", "b"]))
    assert mean == pytest.approx(0.75) and std == pytest.approx(math.sqrt(0.005))  # ddof=1
    assert math.isnan(abl.mean_std([0.5])[1])  # one seed: no std
    assert abl.seed_means({1: {"a": math.nan, "b": 0.4}}, ["a", "b"]) == [0.4]  # NaN videos left out


def test_paired_bootstrap_of_a_constant_difference_is_exact():
    b = np.array([0.2, 0.5, 0.9, 0.4])
    assert abl.paired_bootstrap(b + 0.05, b, n_boot=200) == pytest.approx((0.05, 0.05, 0.05))


def test_paired_bootstrap_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    diff = rng.normal(0.02, 0.04, size=400)
    base = rng.uniform(0.3, 0.9, size=400)
    d, low, high = abl.paired_bootstrap(base + diff, base, n_boot=4000)
    half = 1.96 * diff.std(ddof=1) / math.sqrt(diff.size)
    assert d == pytest.approx(diff.mean())
    assert low == pytest.approx(d - half, abs=0.15 * half) and high == pytest.approx(d + half, abs=0.15 * half)
    # pairing matters: the same differences on noisier videos give the same interval
    noisy = rng.uniform(0.0, 1.0, size=400)
    assert abl.paired_bootstrap(noisy + diff, noisy, n_boot=4000)[1:] == pytest.approx((low, high), abs=1e-9)


def test_summarize_on_hand_made_scores():
    groups = {"fast": ["f1", "f2"], "long": ["l1"]}
    scores = {
        "sam2": {1: {"f1": 0.6, "f2": 0.8, "l1": 0.4}, 2: {"f1": 0.7, "f2": 0.7, "l1": 0.5}},
        "tsms": {1: {"f1": 0.7, "f2": 0.8, "l1": 0.6}, 2: {"f1": 0.8, "f2": 0.8, "l1": 0.6}},
    }
    s = abl.summarize(scores, groups, n_boot=500)
    assert s["sam2"]["seeds"] == [1, 2] and "delta" not in s["sam2"]
    assert s["sam2"]["all"][0] == pytest.approx((0.6 + 0.8 + 0.4 + 0.7 + 0.7 + 0.5) / 6)
    assert s["tsms"]["long"] == pytest.approx((0.6, 0.0))
    # per-video seed means: sam2 0.65 0.75 0.45, tsms 0.75 0.8 0.6 -> differences 0.1 0.05 0.15
    d, low, high = s["tsms"]["delta"]
    assert d == pytest.approx(0.1) and 0.05 <= low <= d <= high <= 0.15
    assert abl.fmt_delta(s["tsms"]["delta"]).startswith("+10.0 [")


def test_cost_is_mean_tokens_and_median_ms():
    per_seed = {1: {"tokens": {"a": 100, "b": 300}, "ms": {"a": 10.0, "b": 30.0, "c": 50.0}},
                2: {"tokens": {"a": 200, "b": None}, "ms": {"a": 20.0, "b": None}}}
    tokens, ms = abl.cost(per_seed)
    assert tokens == pytest.approx(200.0) and ms == pytest.approx((30.0 + 20.0) / 2)


def test_event_table_is_mean_and_std_over_seeds():
    rows = [abl.ROWS["sam2"], abl.ROWS["tsms"]]
    scores = {"sam2": {1: {"events": {"reappear": 0.5, "occluded": 0.9}}, 2: {"events": {"reappear": 0.7}}},
              "tsms": {1: {"events": {"reappear": 0.6, "occluded": 1.0}}}}
    table = abl.events_markdown(rows, scores)
    assert "| row | occluded | reappear |" in table
    assert "| SAM2 | 0.900 | 0.600 ± 0.141 |" in table and "| TSMS | 1.000 | 0.600 |" in table
    assert abl.events_markdown(rows, {"sam2": {1: {}}, "tsms": {1: {}}}) == ""


def _run(args, cwd):
    return subprocess.run([sys.executable, str(REPO / "eval" / "ablation_synthetic.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


TOY = ["--train_videos", "2", "--val_videos", "1", "--frames", "4", "--epochs", "1", "--clips_per_video", "1",
       "--override", "num_frames=3", "--test_videos", "1", "--scenario_videos", "1", "--scenario_frames", "6"]


def test_ablation_smoke_scores_every_group_resumes_and_refuses_other_settings(tmp_path):
    out = tmp_path / "abl"
    args = ["--out", str(out), "--rows", "sam2", "tsms_fast", "--seeds", "1", "--jobs", "2", *TOY]
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    assert list(data["groups"]) == ["fast", "slow", "occlusion", "crossing", "jumps", "long", "appearance"]
    assert sorted(data["summary"]) == ["sam2", "tsms_fast"]
    assert data["summary"]["tsms_fast"]["delta"] is not None and "delta" not in data["summary"]["sam2"]
    # tsms_fast attends the prompted and the newest memory only; sam2 up to 7
    assert data["costs"]["tsms_fast"][0] < data["costs"]["sam2"][0]
    trained = sorted(p.name for p in (out / "runs").iterdir())
    assert trained == ["sam2_s1", "tsms_s1"]  # tsms_fast tracks the TSMS weights
    table = (out / "results.md").read_text()
    assert "| SAM2 | uniform | sam2 | 1 |" in table and "(reference)" in table and "tsms → tsms_fast" in table
    assert "Dice inside event windows" in table and "reappear" in table
    assert (out / "ablation.png").stat().st_size > 1000
    # rerun: nothing is trained or tracked again, the table is rebuilt from the kept scores
    before = {p: p.stat().st_mtime_ns for p in (out / "scores").rglob("*.json")}
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training (" not in result.stderr and "prediction (" not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in (out / "scores").rglob("*.json")} == before
    # other data into the same --out would not compare: refused, nothing touched
    result = _run(["--out", str(out), "--rows", "sam2", "--seeds", "1", *TOY[:-2], "--scenario_frames", "8"],
                  tmp_path)
    assert result.returncode == 2 and "other settings (scenario_frames)" in result.stderr


def test_ablation_refuses_bad_input_before_any_work(tmp_path):
    result = _run(["--out", str(tmp_path / "a"), "--rows", "nope"], tmp_path)
    assert result.returncode == 2 and "invalid choice: 'nope'" in result.stderr
    result = _run(["--out", str(tmp_path / "a"), "--seeds", "1", "1"], tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == "error: --seeds has duplicates: [1, 1]"
    assert not (tmp_path / "a").exists()
