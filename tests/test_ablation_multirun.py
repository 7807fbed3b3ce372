"""The ablation as a Hydra multirun (eval/ablation_run.py): launchers, resume, refusals, any dataset.

Every run here is tiny: 1 training video of 4 frames at 64 px, one training step per
(row, seed), and 3 held-out videos (6, 6 and 16 frames).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from eval import ablation_run
from utils.cli import run_cli

pytestmark = pytest.mark.usefixtures("restore_logging")

TINY = ["data.size=64", "bootstrap=200", "device=cpu",
        "data.generate.train.num_videos=1", "data.generate.train.num_frames=4",
        "data.generate.val.num_videos=1", "data.generate.val.num_frames=4",
        "data.generate.fast.num_videos=1", "data.generate.fast.num_frames=6",
        "data.generate.slow.num_videos=1", "data.generate.slow.num_frames=6",
        "data.generate.scenarios.num_videos=1", "data.generate.scenarios.num_frames=16",
        "data.generate.scenarios.scenario=crossing",
        "train.epochs=1", "train.clips_per_video=1",
        'train.overrides=["num_frames=3","num_workers=0","trainer.val_every=0","max_num_objects=2"]']
SWEEP = ["-m", "seed=1,2", "row=tsms,tsms_fast", "reference=tsms"]
JOBS = [("tsms", 1), ("tsms", 2), ("tsms_fast", 1), ("tsms_fast", 2)]


def _run(argv, capsys=None):
    code = run_cli(ablation_run.main, list(argv))
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def _scores(out: Path, row: str, seed: int) -> dict:
    return json.loads((out / "scores" / row / f"s{seed}.json").read_text())


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def basic(tmp_path_factory):
    """2 rows x 2 seeds with the basic launcher, run from an empty working directory."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        code, _ = _run([*SWEEP, "out=abl", *TINY])
    assert code == 0
    return cwd / "abl"


def test_basic_multirun_scores_every_job_and_writes_the_report(basic):
    assert sorted(p.name for p in basic.parent.iterdir()) == ["abl"]  # Hydra wrote nothing beside out
    for row, seed in JOBS:
        scores = _scores(basic, row, seed)
        assert sorted(scores["dice"]) == ["fast/video_0000", "scenarios/video_0000", "slow/video_0000"]
        assert all(0.0 <= d <= 1.0 for d in scores["dice"].values())
        assert "crossing" in scores["events"]
        assert (basic / "hydra" / f"{row}_s{seed}" / ".hydra" / "config.yaml").is_file()
    # tsms_fast tracks the tsms weights of its seed: two trainings, not four
    assert sorted(p.name for p in (basic / "runs").iterdir()) == ["tsms_s1", "tsms_s2"]
    results = json.loads((basic / "results.json").read_text())
    assert list(results["groups"]) == ["fast", "slow", "crossing"]
    assert "delta" not in results["summary"]["tsms"] and results["summary"]["tsms_fast"]["delta"][0] is not None
    assert results["summary"]["tsms_fast"]["seeds"] == [1, 2]
    assert results["costs"]["tsms_fast"][0] < results["costs"]["tsms"][0]  # fewer attended tokens
    table = (basic / "results.md").read_text()
    assert "| TSMS | multiscale | tsms | 2 |" in table and "tsms → tsms_fast" in table and "(reference)" in table
    assert "Dice inside event windows" in table and "launcher basic" in table
    assert (basic / "ablation.png").stat().st_size > 1000
    settings = json.loads((basic / "settings.json").read_text())
    assert list(settings["rows"]) == ["tsms", "tsms_fast"] and settings["train"]["epochs"] == 1


def test_joblib_runs_jobs_side_by_side_with_identical_scores(basic, tmp_path):
    out = tmp_path / "abl"
    # num_workers=1: a loky worker cannot fork data-loading workers; the job loads in-process
    workers = 'train.overrides=["num_frames=3","num_workers=1","trainer.val_every=0","max_num_objects=2"]'
    code, _ = _run([*SWEEP, f"out={out}", *TINY, workers, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert code == 0
    for row, seed in JOBS:
        a, b = _scores(basic, row, seed), _scores(out, row, seed)
        assert a["dice"] == b["dice"] and a["tokens"] == b["tokens"] and a["events"] == b["events"]
    assert "launcher joblib (n_jobs 2)" in (out / "results.md").read_text()


def test_submitit_local_executor_runs_a_job(basic, tmp_path):
    out = tmp_path / "abl"
    shutil.copytree(basic, out)
    (out / "scores" / "tsms" / "s1.json").unlink()
    code, _ = _run(["-m", "seed=1", "row=tsms", "reference=tsms", f"out={out}", *TINY,
                    "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"])
    assert code == 0
    assert _scores(out, "tsms", 1) == {**_scores(basic, "tsms", 1), "ms": _scores(out, "tsms", 1)["ms"]}
    assert list((out / "hydra" / ".submitit").glob("*/*_0_result.pkl"))  # the job ran under submitit


def test_rerun_skips_finished_jobs_and_resumes_a_training(basic, tmp_path, capsys):
    out = tmp_path / "abl"
    shutil.copytree(basic, out)
    before = _tree(out / "scores")
    checkpoints = _tree(out / "runs")
    code, _ = _run([*SWEEP, f"out={out}", *TINY], capsys)
    assert code == 0
    assert _tree(out / "scores") == before and _tree(out / "runs") == checkpoints  # nothing trained or tracked
    # an interrupted sitting: seed 2's training lost its done-marker, its scores are missing
    (out / "runs" / "tsms_s2" / "ablation_done.json").unlink()
    for row in ("tsms", "tsms_fast"):
        (out / "scores" / row / "s2.json").unlink()
    code, _ = _run([*SWEEP, f"out={out}", *TINY], capsys)
    assert code == 0
    for row in ("tsms", "tsms_fast"):
        assert _scores(out, row, 2)["dice"] == _scores(basic, row, 2)["dice"]  # resumed from last.pt: same model
    assert (out / "runs" / "tsms_s2" / "ablation_done.json").is_file()


def test_a_changed_setting_is_refused_with_one_line(basic, tmp_path, capsys):
    out = tmp_path / "abl"
    shutil.copytree(basic, out)
    before = _tree(out)
    tiny = [o for o in TINY if not o.startswith("train.epochs")]
    code, err = _run([*SWEEP, f"out={out}", *tiny, "train.epochs=2"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "holds an ablation made with other settings (train.epochs)" in err
    code, err = _run([*SWEEP, f"out={out}", *TINY, "rows.tsms.sampler=uniform"], capsys)
    assert code == 2 and "other settings (rows.tsms.sampler)" in err
    assert _tree(out) == before  # refused before anything was written


def test_refusals_before_any_work(tmp_path, capsys):
    out = tmp_path / "abl"
    cases = {
        "unknown row 'nope'": ["row=nope"],
        "hydra.sweep.dir cannot be set here": ["hydra.sweep.dir=/tmp/elsewhere"],
        "hydra.job.chdir cannot be set here": ["hydra.job.chdir=true"],
        "hydra.launcher._target_ cannot be set here": ["hydra.launcher._target_=os.system"],
        "hydra/launcher must be one of": ["hydra/launcher=ray"],
        "names 'os.system', which is not a SAM2/TSMS class": ["+data.evil._target_=os.system"],
        "row 'evil': ": ["row=evil", '+rows.evil={sampler: uniform, memory: sam2, '
                                       'overrides: ["optim.optimizer._target_=os.system"]}'],
        "out cannot be swept": [f"out={tmp_path}/a,{tmp_path}/b"],
        "runs row tsms seed 1 more than once": ["row=tsms", "threads=1,2"],
    }
    for message, extra in cases.items():
        code, err = _run(["-m", f"out={out}", *TINY, *extra], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, (message, err)
    code, err = _run(["-m", f"out={out}", *TINY, "row=evil", '+rows.evil={sampler: uniform, memory: sam2, '
                      'overrides: ["optim.optimizer._target_=os.system"]}'], capsys)
    assert "optim.optimizer._target_ names 'os.system', which is not a SAM2/TSMS class" in err
    assert not out.exists()


def _endovis_layout(root: Path) -> None:
    """``EndoVis2017/{train,valid}`` as data/prepare_endovis17.py lays them out: VOS folders
    of frames and palette label PNGs."""
    from data.mask_io import write_label_png
    from tests.conftest import make_two_object_video

    for split, videos in (("train", ["instrument_dataset_2"]), ("valid", ["instrument_dataset_1",
                                                                           "instrument_dataset_3"])):
        for i, video in enumerate(videos):
            frames = root / "EndoVis2017" / split / "JPEGImages" / video
            masks = make_two_object_video(frames, num_frames=5, hw=(64, 80), seed=i)
            (root / "EndoVis2017" / split / "Annotations" / video).mkdir(parents=True)
            for t in range(5):
                label = np.zeros((64, 80), np.uint8)
                label[masks[1][t]], label[masks[2][t]] = 1, 2
                write_label_png(root / "EndoVis2017" / split / "Annotations" / video / f"{t:05d}.png", label)


def test_a_prepared_endovis_dataset(tmp_path, capsys):
    _endovis_layout(tmp_path / "datasets")
    out = tmp_path / "abl"
    argv = ["data=endovis17", f"data_root={tmp_path / 'datasets'}", f"out={out}", "row=sam2", "seed=3",
            "train.experiment=synthetic_tiny", "train.resolution=64", "train.epochs=1", "train.clips_per_video=1",
            'train.overrides=["num_frames=3","num_workers=0","trainer.val_every=0","max_num_objects=2"]',
            "bootstrap=200", "device=cpu"]
    code, err = _run(argv, capsys)
    assert code == 0, err
    scores = _scores(out, "sam2", 3)
    assert sorted(scores["dice"]) == ["valid/instrument_dataset_1", "valid/instrument_dataset_3"]
    assert "events" not in scores  # no scenario metadata on real data
    assert json.loads((out / "groups.json").read_text()) == {
        "valid": ["valid/instrument_dataset_1", "valid/instrument_dataset_3"]}
    settings = json.loads((out / "settings.json").read_text())
    assert settings["data"]["videos"]["test/valid"] == {"instrument_dataset_1": 5, "instrument_dataset_3": 5}
    train_cfg = (out / "runs" / "sam2_s3" / "config.yaml").read_text()
    assert str(tmp_path / "datasets" / "EndoVis2017" / "train") in train_cfg
    assert "# Ablation on EndoVis2017" in (out / "results.md").read_text()
    # the dataset changed under the ablation (a frame more): its scores would not compare
    src = tmp_path / "datasets" / "EndoVis2017" / "valid"
    shutil.copy(src / "JPEGImages" / "instrument_dataset_1" / "00004.jpg",
                src / "JPEGImages" / "instrument_dataset_1" / "00005.jpg")
    code, err = _run(argv, capsys)
    assert code == 2 and "other settings (" in err and "data.videos.test/valid.instrument_dataset_1" in err


def test_a_failed_job_is_named_in_one_line_and_the_others_finish(basic, tmp_path, capsys):
    out = tmp_path / "abl"
    shutil.copytree(basic, out)
    (out / "scores" / "tsms_fast" / "s1.json").unlink()
    bad = '+rows.bad={sampler: uniform, memory: sam2, overrides: ["data.train.video_list=[no_such_video]"]}'
    code, err = _run(["-m", "seed=1", "row=bad,tsms_fast", "reference=tsms", f"out={out}", *TINY, bad], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and err.strip().splitlines()[-1] == errors[0]
    assert errors[0].startswith("error: 1 of 2 jobs did not finish: bad seed 1 (") and "no_such_video" in errors[0]
    assert "rerun the same command to retry them" in errors[0]
    assert _scores(out, "tsms_fast", 1)["dice"] == _scores(basic, "tsms_fast", 1)["dice"]  # the other job ran
    assert (out / "logs" / "bad_s1.error").is_file()
    assert "bad" in json.loads((out / "settings.json").read_text())["rows"]


def test_a_missing_launcher_plugin_is_named(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "hydra_plugins.hydra_joblib_launcher" else real(name, *a))
    code, err = _run(["-m", f"out={tmp_path / 'abl'}", "hydra/launcher=joblib"], capsys)
    assert code == 2 and err.strip() == ("error: hydra/launcher=joblib needs the hydra-joblib-launcher package "
                                         "(pip install hydra-joblib-launcher; it is in requirements.txt)")
    code, err = _run(["-m", "--cfg", "job"], capsys)
    assert code == 2 and "leave out -m" in err
    assert not (tmp_path / "abl").exists()


def test_rows_fine_tune_a_base_whose_content_is_a_setting(basic, tmp_path, capsys):
    """train.base (the protocols' pretrained base): every trained row starts from it, and the
    file's sha256, not its path, is a setting: a changed base is refused in the same out."""
    import hashlib

    base = tmp_path / "base.pt"
    shutil.copy(basic / "runs" / "tsms_s1" / "checkpoints" / "last.pt", base)
    out = tmp_path / "abl"
    code, err = _run(["-m", f"out={out}", "seed=1", "row=sam2", f"data.base={base}", *TINY], capsys)
    assert code == 0, err
    config = (out / "runs" / "sam2_s1" / "config.yaml").read_text()
    assert f"checkpoint: {base.resolve()}" in config
    settings = json.loads((out / "settings.json").read_text())
    assert settings["train"]["base"] == {"file": "base.pt", "sha256": hashlib.sha256(base.read_bytes()).hexdigest()}
    assert "Fine-tuned from the pretrained base base.pt" in (out / "results.md").read_text()
    base.write_bytes(base.read_bytes() + b"\0")  # another base under the same name
    code, err = _run(["-m", f"out={out}", "seed=2", "row=sam2", f"data.base={base}", *TINY], capsys)
    assert code == 2 and "train.base.sha256" in err and err.count("\n") == 1
    code, err = _run(["-m", f"out={tmp_path / 'x'}", "row=sam2", f"data.base={tmp_path / 'none.pt'}", *TINY], capsys)
    assert code == 2 and "train.base: checkpoint not found" in err


@pytest.mark.parametrize("data, n_videos, groups", [
    ("synthetic_paper", 50, {"fast", "slow", "sustained", "basic96", "occlusion", "crossing", "jumps", "long",
                             "appearance", "distractor"}),
    ("synthetic_ts_isolated", 22, {"fast", "jumps", "sustained"})])
def test_the_protocols_of_docs_method(data, n_videos, groups, tmp_path):
    """P1 and P2 (docs/method.md): >= 40 held-out videos for the paper's setting, slow-only
    training for TS isolated, both fine-tuned from the pretrained base."""
    from data.synthetic_scenarios import video_scenarios
    from eval.ablation_setup import compose_ablation, generated_splits

    cfg = compose_ablation([f"data={data}", f"out={tmp_path}"])
    assert cfg.train.base == "checkpoints/tsms_sam2_mini_base.pt" and cfg.train.experiment == "synthetic_finetune"
    splits = generated_splits(cfg)
    tests = {k: v for k, v in splits.items() if k not in ("train", "val")}
    assert sum(v["num_videos"] for v in tests.values()) == n_videos
    named = {v.get("scenario", "basic") for v in tests.values()}
    found = {k if v.get("scenario", "basic") == "basic" else s for k, v in tests.items()
             for s in video_scenarios(v["num_videos"], v.get("scenario", "basic"))}
    assert found == groups and named <= groups | {"basic", "mixed"}
    if data == "synthetic_ts_isolated":
        assert splits["train"]["speed"] == "slow" and splits["val"]["speed"] == "slow"
        assert splits["train"]["num_frames"] >= 8 * 6 - 5  # an 8-frame clip fits stride 6
