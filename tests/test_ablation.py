"""The ablation's rows and statistics on hand-made scores (eval/ablation.py), the committed scores, and the
synthetic ablation's command (eval/ablation_synthetic.py)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from eval import ablation as abl
from utils.cli import run_cli
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_rows_follow_the_paper_and_inference_rows_reuse_the_tsms_weights():
    r = abl.default_rows()
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
    rows = [abl.default_rows()["sam2"], abl.default_rows()["tsms"]]
    scores = {"sam2": {1: {"events": {"reappear": 0.5, "occluded": 0.9}}, 2: {"events": {"reappear": 0.7}}},
              "tsms": {1: {"events": {"reappear": 0.6, "occluded": 1.0}}}}
    table = abl.events_markdown(rows, scores)
    assert "| row | occluded | reappear |" in table
    assert "| SAM2 | 0.900 | 0.600 ± 0.141 |" in table and "| TSMS | 1.000 | 0.600 |" in table
    assert abl.events_markdown(rows, {"sam2": {1: {}}, "tsms": {1: {}}}) == ""


def test_a_row_is_data_and_a_bad_row_is_one_line():
    row = abl.Row.from_mapping("x", {"sampler": "uniform", "memory": "tsms", "overrides": ["num_frames=4"]})
    assert (row.infer_memory, row.label, row.overrides, row.trains) == ("tsms", "x", ("num_frames=4",), True)
    with pytest.raises(UserError, match="row 'x': unknown field.s. smapler"):
        abl.Row.from_mapping("x", {"smapler": "uniform", "memory": "tsms"})
    with pytest.raises(UserError, match="row 'x' needs a sampler"):
        abl.Row.from_mapping("x", {"memory": "tsms"})
    with pytest.raises(UserError, match="overrides must be a list of key=value"):
        abl.Row.from_mapping("x", {"sampler": "uniform", "memory": "tsms", "overrides": "num_frames=4"})


def test_preset_names_are_rows_and_preset_at_row_tracks_its_weights():
    from eval.ablation_setup import compose_ablation, resolve_row

    cfg = compose_ablation(["out=/tmp/unused"])
    fast = resolve_row("tsms_fast", cfg)
    assert resolve_row("tsms_pool", cfg) == abl.Row("tsms_pool", "tsms_pool", "multiscale", "tsms_pool", "tsms_pool")
    on_ms = resolve_row("tsms_pool@ms", cfg)
    assert (on_ms.sampler, on_ms.memory, on_ms.infer_memory, on_ms.weights_of) == ("uniform", "tsms", "tsms_pool", "ms")
    assert fast.weights_of == "tsms"
    with pytest.raises(UserError, match="tracks the weights of 'tsms'; name tsms_pool@tsms instead"):
        resolve_row("tsms_pool@tsms_fast", cfg)
    with pytest.raises(UserError, match="unknown row 'nope'; choose one of sam2, ts, ms"):
        resolve_row("nope", cfg)


def test_committed_scores_still_rebuild_the_committed_table(tmp_path):
    """docs/ablation/ (settings.json in the multirun's format, groups.json, scores/) gives the
    committed table again, and its settings are those of the documented command, so
    copying it into an out folder lets a rerun add rows or seeds."""
    from eval.ablation_report import write_report
    from eval.ablation_setup import compose_ablation, settings_of
    from eval.ablation_synthetic import multirun_overrides, parse_args

    out = tmp_path / "abl"
    shutil.copytree(REPO / "docs" / "ablation", out)
    write_report(out, bootstrap=10000)
    committed = (REPO / "docs" / "ablation" / "results.md").read_text().splitlines()
    assert (out / "results.md").read_text().splitlines()[4:] == committed[4:]  # every table row, same numbers
    overrides = [o for o in multirun_overrides(parse_args(["--out", str(out)])) if o != "-m"]
    overrides = [o for o in overrides if not o.startswith(("seed=", "row="))]
    settings = settings_of(compose_ablation(overrides), [])
    committed_settings = json.loads((REPO / "docs" / "ablation" / "settings.json").read_text())
    assert {k: v for k, v in settings.items() if k != "rows"} == {
        k: v for k, v in committed_settings.items() if k != "rows"}
    defaults = abl.default_rows()  # the committed rows are still defined, the same way
    assert {k: {f: v for f, v in row.items() if f != "label"} for k, row in committed_settings["rows"].items()} == {
        k: defaults[k].definition() for k in committed_settings["rows"]}


TOY = ["--size", "64", "--train_videos", "1", "--val_videos", "1", "--frames", "4", "--epochs", "1",
       "--clips_per_video", "1", "--override", "num_frames=3", "--override", "num_workers=0",
       "--override", "trainer.val_every=0", "--override", "max_num_objects=2", "--test_videos", "1",
       "--scenario_videos", "1", "--scenario_frames", "16", "--bootstrap", "200"]


@pytest.mark.usefixtures("restore_logging")
def test_ablation_synthetic_is_the_synthetic_multirun_and_refuses_other_settings(tmp_path, capsys):
    from eval.ablation_synthetic import main

    out = tmp_path / "abl"
    args = ["--out", str(out), "--rows", "sam2", "tsms_fast", "--seeds", "1", *TOY]
    assert run_cli(main, args) == 0
    data = json.loads((out / "results.json").read_text())
    assert list(data["groups"]) == ["fast", "slow", "occlusion", "crossing", "jumps", "long", "appearance"]
    assert sorted(data["summary"]) == ["sam2", "tsms_fast"]
    assert data["summary"]["tsms_fast"]["delta"] is not None and "delta" not in data["summary"]["sam2"]
    # tsms_fast attends the prompted and the newest memory only; sam2 up to 7
    assert data["costs"]["tsms_fast"][0] < data["costs"]["sam2"][0]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["sam2_s1", "tsms_s1"]  # tsms_fast: TSMS weights
    table = (out / "results.md").read_text()
    assert "| SAM2 | uniform | sam2 | 1 |" in table and "(reference)" in table and "tsms → tsms_fast" in table
    assert "Dice inside event windows" in table and "reappear" in table
    assert "Command: `python eval/ablation_synthetic.py --out" in table
    capsys.readouterr()
    # other data into the same --out would not compare: refused, nothing touched
    assert run_cli(main, ["--out", str(out), "--rows", "sam2", "--seeds", "1", *TOY[:-4], "--scenario_frames", "20",
                          "--bootstrap", "200"]) == 2
    assert "other settings (data.generate.scenarios.num_frames)" in capsys.readouterr().err


def test_ablation_refuses_bad_input_before_any_work(tmp_path, capsys):
    from eval.ablation_synthetic import main

    assert run_cli(main, ["--out", str(tmp_path / "a"), "--rows", "nope"]) == 2
    assert "unknown row 'nope'" in capsys.readouterr().err
    assert run_cli(main, ["--out", str(tmp_path / "a"), "--seeds", "1", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --seeds has duplicates: [1, 1]"
    assert not (tmp_path / "a").exists()
