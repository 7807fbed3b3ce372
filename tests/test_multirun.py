"""Hydra multirun of the training CLI (training/multirun.py) and train()'s float result."""

from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from training.multirun import expand_sweep, run_sweep, split_multirun_flag
from training.result import TrainResult
from utils.cli import run_cli
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tsms_sam2_surg.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread", "restore_logging")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from data.synthetic_video import write_synthetic_dataset

    root = tmp_path_factory.mktemp("datasets") / "synthetic"
    write_synthetic_dataset(root, 1, 6, seed=0, size=(128, 128), write_mp4=False, progress=False)
    return root


def _tiny(root: Path, run_dir: Path, *extra: str):
    """One training step (1 video, 1 clip) and one short validation per job."""
    return ["experiment=synthetic_tiny", f"data.train.root={root}", f"data.val.root={root}", f"run_dir={run_dir}",
            "data.train.multiplier=1", "epochs=1", "num_frames=3", "max_num_objects=1",
            "num_workers=0", "trainer.progress=false", "trainer.val_max_videos=1", "trainer.val_max_frames=3",
            "model.prompts.num_correction_clicks=1", *extra]


def test_expand_sweep_is_the_cartesian_product():
    fixed, jobs = expand_sweep(["sampler=uniform,multiscale", "memory=sam2,tsms", "seed=1,2,3", "epochs=2"])
    assert fixed == ["epochs=2"]
    assert len(jobs) == 12 and len({j.dir_name for j in jobs}) == 12
    assert jobs[0].overrides == ("sampler=uniform", "memory=sam2", "seed=1", "epochs=2")
    assert jobs[1].swept == ("sampler=uniform", "memory=sam2", "seed=2")  # last key varies fastest
    assert jobs[11].dir_name == "11_sampler=multiscale,memory=tsms,seed=3"
    _, ranged = expand_sweep(["seed=range(1,4)", "data_root=/a/b c"])
    assert [j.swept for j in ranged] == [("seed=1",), ("seed=2",), ("seed=3",)]
    assert expand_sweep(["seed=1"])[1][0].dir_name == "0"  # nothing swept: one job


def test_expand_sweep_errors():
    with pytest.raises(UserError, match="run_dir cannot be swept"):
        expand_sweep(["run_dir=a,b"])
    with pytest.raises(UserError, match="cannot expand the sweep"):
        expand_sweep(["seed=[1,"])


def test_split_multirun_flag():
    assert split_multirun_flag(["-m", "seed=1,2"]) == (True, ["seed=1,2"])
    assert split_multirun_flag(["seed=1", "--multirun"]) == (True, ["seed=1"])
    assert split_multirun_flag(["seed=1"]) == (False, ["seed=1"])


def test_train_result_is_a_float_that_carries_the_summary():
    state = SimpleNamespace(best_dice=0.625, best_epoch=2, step=7)
    result = TrainResult(SimpleNamespace(state=state, run_dir=Path("r"), model=None))
    assert isinstance(result, float) and result == 0.625 and result.state.step == 7 and result.run_dir == Path("r")
    assert type(pickle.loads(pickle.dumps(result))) is float
    never = TrainResult(SimpleNamespace(state=SimpleNamespace(best_dice=-1.0, best_epoch=-1)))
    assert math.isnan(never)  # no validation ran


def test_sweep_refuses_to_start_over_and_resumes(tmp_path, data_root):
    calls = []

    def fake_train(cfg):
        calls.append((cfg.seed, cfg.run_dir))
        (Path(cfg.run_dir) / "checkpoints").mkdir(parents=True)
        return 0.5 if cfg.seed == 1 else math.nan

    overrides = _tiny(data_root, tmp_path / "base", "seed=1,2")
    assert run_sweep(CONFIG, overrides, fake_train)[0] == 0.5
    manifest = yaml.safe_load((tmp_path / "base" / "multirun" / "multirun.yaml").read_text())
    assert [(j["dir"], j["metric"]) for j in manifest["jobs"]] == [("0_seed=1", 0.5), ("1_seed=2", None)]
    with pytest.raises(UserError, match="already holds a sweep"):
        run_sweep(CONFIG, overrides, fake_train)
    (tmp_path / "base" / "multirun" / "multirun.yaml").unlink()
    with pytest.raises(UserError, match="0_seed=1 already holds a run; pass resume=auto"):
        run_sweep(CONFIG, overrides, fake_train)
    assert len(calls) == 2  # nothing ran on a refused sweep

    def resumed_train(cfg):
        calls.append((cfg.seed, cfg.run_dir))
        assert cfg.resume == "auto"
        return 0.75

    assert run_sweep(CONFIG, [*overrides, "resume=auto"], resumed_train) == [0.75, 0.75]
    manifest = yaml.safe_load((tmp_path / "base" / "multirun" / "multirun.yaml").read_text())
    assert [j["metric"] for j in manifest["jobs"]] == [0.75, 0.75] and len(calls) == 4


def test_cli_multirun_two_by_two(tmp_path, data_root):
    """The docs/training.md form `-m sampler=a,b seed=1,2`: 4 real 1-step runs, each with its own dir and metric."""
    spec = importlib.util.spec_from_file_location("train_cli_multirun", REPO / "training" / "train_tsms_sam2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = tmp_path / "sweep"
    argv = ["-m", *_tiny(data_root, base, "sampler=uniform,multiscale", "seed=1,2")]
    assert run_cli(module.main, argv) == 0
    sweep = base / "multirun"
    names = ["0_sampler=uniform,seed=1", "1_sampler=uniform,seed=2",
             "2_sampler=multiscale,seed=1", "3_sampler=multiscale,seed=2"]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == names
    for name in names:
        cfg = yaml.safe_load((sweep / name / "config.yaml").read_text())
        sampler, seed = name.split("_", 1)[1].split(",")
        assert cfg["run_dir"] == str(sweep / name) and cfg["seed"] == int(seed.split("=")[1])
        expected = "MultiScaleTemporalSampler" if sampler.endswith("multiscale") else "UniformTemporalSampler"
        assert cfg["sampler"]["_target_"].endswith(expected)
        assert (sweep / name / "checkpoints" / "last.pt").is_file()
    manifest = yaml.safe_load((sweep / "multirun.yaml").read_text())
    assert [j["dir"] for j in manifest["jobs"]] == names
    metrics = [j["metric"] for j in manifest["jobs"]]
    assert all(0.0 <= m <= 1.0 for m in metrics), metrics
