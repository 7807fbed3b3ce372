"""training/train_tsms_sam2.py: a short real run, and one-line errors for bad input."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models import read_checkpoint
from utils.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "train_tsms_sam2.py"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """``<root>/synthetic`` (3 videos) and ``<root>/synthetic_val`` (1 video), 128 px."""
    from data.synthetic_video import write_synthetic_dataset

    root = tmp_path_factory.mktemp("datasets")
    write_synthetic_dataset(root / "synthetic", 3, 8, seed=0, size=(128, 128), write_mp4=False, progress=False)
    write_synthetic_dataset(root / "synthetic_val", 1, 6, seed=1000, size=(128, 128), write_mp4=False, progress=False)
    return root


@pytest.fixture(scope="module")
def cli_main():
    spec = importlib.util.spec_from_file_location("train_tsms_sam2_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _small(data_root, run_dir, *extra):
    return ["experiment=synthetic_tiny", f"data_root={data_root}", f"run_dir={run_dir}", "data.train.multiplier=1",
            "num_frames=3", "max_num_objects=1", "num_workers=0", "trainer.progress=false",
            "model.prompts.num_correction_clicks=1", *extra]


def test_readme_command_runs_on_synthetic_data(data_root, tmp_path):
    """The docs/training.md command (plus overrides) through the real script: last/best checkpoints and TensorBoard."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(SCRIPT), "--config", "configs/tsms_sam2_surg.yaml", "--epochs", "1", "--batch_size", "1",
           *_small(data_root, run_dir, "trainer.val_max_frames=4", "trainer.image_every=1")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["train_state"]["epoch"] == 1 and last["train_state"]["step"] == 3  # --epochs 1 beats the experiment's 12
    best = read_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert 0.0 <= best["train_state"]["best_dice"] <= 1.0
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert "epochs: 1" in (run_dir / "config.yaml").read_text()


def test_batch_size_zero_exits_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--config", "configs/tsms_sam2_surg.yaml", "--batch_size", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --batch_size must be >= 1, got 0"]


def _run_error(cli_main, capsys, argv):
    code = run_cli(cli_main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_missing_dataset_root(cli_main, capsys, tmp_path):
    msg = _run_error(cli_main, capsys, _small(tmp_path / "nowhere", tmp_path / "run"))
    assert "data.train.root not found" in msg and "nowhere" in msg
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start


def test_empty_dataset(cli_main, capsys, tmp_path):
    empty = tmp_path / "datasets" / "synthetic"
    (empty / "JPEGImages").mkdir(parents=True)
    (empty / "Annotations").mkdir()
    msg = _run_error(cli_main, capsys, _small(tmp_path / "datasets", tmp_path / "run"))
    assert "no annotated videos" in msg


def test_checkpoint_of_the_wrong_size(cli_main, capsys, data_root, tmp_path, mini_checkpoint):
    msg = _run_error(cli_main, capsys, _small(data_root, tmp_path / "run", "model_size=tiny",
                                              f"model.checkpoint={mini_checkpoint}"))
    assert "does not match the model config" in msg and "SAM2.1 tiny" in msg


def test_missing_official_checkpoint(cli_main, capsys, data_root, tmp_path):
    msg = _run_error(cli_main, capsys, _small(data_root, tmp_path / "run", "model_size=small"))
    assert "model.checkpoint not found: checkpoints/sam2.1_hiera_small.pt" in msg


def test_unknown_config_group_option(cli_main, capsys, tmp_path):
    msg = _run_error(cli_main, capsys, ["sampler=nonexistent_sampler"])
    assert "nonexistent_sampler" in msg


def test_resume_from_a_missing_file(cli_main, capsys, data_root, tmp_path):
    msg = _run_error(cli_main, capsys, _small(data_root, tmp_path / "run", f"resume={tmp_path}/nope.pt"))
    assert "resume checkpoint not found" in msg


def test_resume_from_weights_only_checkpoint(cli_main, capsys, data_root, tmp_path, mini_checkpoint):
    msg = _run_error(cli_main, capsys, _small(data_root, tmp_path / "run", f"resume={mini_checkpoint}"))
    assert "no training state" in msg


def test_print_config(cli_main, capsys):
    assert run_cli(cli_main, ["--print_config", "experiment=endovis18"]) == 0
    out = capsys.readouterr().out
    assert "name: endovis18_tsms_sam2_s" in out and "EndoVis2018" in out
