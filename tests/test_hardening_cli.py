"""Issue 13: one-line errors instead of tracebacks or silent acceptance (evaluate, prepare,
synthetic, training config), and training runs that never overwrite each other."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

import eval.evaluate as evaluate_cli
from data.endovis import parse_split
from data.endovis17 import prepare_endovis17
from data.synthetic import main as synthetic_main
from tests.test_prepare_endovis import _make_dataset17
from training.config import check_train_config, compose_train_config
from training.prompts import PromptConfig
from training.run_dir import RunDir, prepare_run_dir
from utils.cli import run_cli
from utils.errors import UserError

pytestmark = pytest.mark.usefixtures("restore_logging")


# --------------------------------------------------------------------------- evaluate


@pytest.fixture()
def gt_pred(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_cli, "setup_logging", lambda *a, **k: None)
    labels = np.zeros((16, 16), np.uint8)
    labels[2:8, 2:8] = 1
    for side in ("gt", "pred"):
        (tmp_path / side / "v").mkdir(parents=True)
        Image.fromarray(labels).save(tmp_path / side / "v" / "00000.png")
    return tmp_path / "gt", tmp_path / "pred"


def _evaluate(gt_pred, *extra):
    gt, pred = gt_pred
    return run_cli(evaluate_cli.main, ["--pred_dir", str(pred), "--gt_dir", str(gt), "--workers", "1",
                                       "--no_progress", *map(str, extra)])


def test_evaluate_out_pointing_at_a_folder_fails_before_scoring(gt_pred, tmp_path, capsys, monkeypatch):
    scored = []
    monkeypatch.setattr(evaluate_cli, "evaluate_predictions", lambda config: scored.append(config))
    (tmp_path / "reports").mkdir()
    # before: IsADirectoryError traceback after scoring, the scores thrown away
    assert _evaluate(gt_pred, "--out", tmp_path / "reports") == 2
    err = capsys.readouterr().err
    assert "error: --out" in err and "is a folder" in err and not scored


def test_evaluate_out_under_a_file_fails_before_scoring(gt_pred, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert _evaluate(gt_pred, "--csv", tmp_path / "file" / "scores.csv") == 2
    assert "error: --csv" in capsys.readouterr().err


def test_evaluate_bound_th_nan_is_refused(gt_pred, capsys):
    assert _evaluate(gt_pred, "--bound_th", "nan") == 2  # before: accepted, every F score NaN
    assert "error: --bound_th must be a positive number, got nan" in capsys.readouterr().err


def test_evaluate_out_still_written_where_asked(gt_pred, tmp_path):
    assert _evaluate(gt_pred, "--out", tmp_path / "new" / "scores.json") == 0
    assert (tmp_path / "new" / "scores.json").is_file()


# --------------------------------------------------------------------------- prepare


@pytest.fixture(scope="module")
def raw17_one(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw17_one")
    _make_dataset17(root, 1, frames=(0,))
    return root


@pytest.mark.parametrize("text", ["..=2", ".=2", ".tmp=2"])
def test_split_names_must_be_plain(text):
    with pytest.raises(UserError, match="not a plain name"):  # before: '..' wrote into the parent of --out_dir
        parse_split(text)


def test_prepare_split_dot_dot_writes_nothing_outside(raw17_one, tmp_path):
    with pytest.raises(UserError):
        prepare_endovis17(raw17_one, tmp_path / "work" / "out", splits=["..=1"])
    assert not (tmp_path / "work" / "JPEGImages").exists()


def test_prepare_never_replaces_a_folder_it_did_not_write(raw17_one, tmp_path):
    mine = tmp_path / "out" / "x" / "Annotations" / "instrument_dataset_1"
    mine.mkdir(parents=True)
    (mine / "my_labels.png").write_bytes(b"hand-made")
    with pytest.raises(UserError, match="was not written by this tool"):
        prepare_endovis17(raw17_one, tmp_path / "out", splits=["x=1"])
    assert (mine / "my_labels.png").read_bytes() == b"hand-made"
    prepare_endovis17(raw17_one, tmp_path / "other", splits=["x=1"])  # a fresh folder still works
    prepare_endovis17(raw17_one, tmp_path / "other", splits=["x=1"], objects="type")  # and its re-runs


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("extra, message", [
    (["--fps", "0"], "--fps must lie in"),
    (["--fps", "nan"], "--fps must lie in"),
    (["--size", "100000", "100000"], "--size H W must lie in 32..4096"),
])
def test_synthetic_cli_refuses_absurd_values(tmp_path, capsys, extra, message):
    code = run_cli(synthetic_main, ["--out", str(tmp_path / "s"), "--num_videos", "1", "--num_frames", "1", *extra])
    assert code == 2 and message in capsys.readouterr().err and not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- training


def test_prob_point_input_above_one_is_a_user_error():
    with pytest.raises(UserError, match=r"model.prompts.prob_point_input must lie in \[0, 1\], got 1.5"):
        PromptConfig(prob_point_input=1.5)  # before: ValueError traceback
    with pytest.raises(UserError, match="must be a number"):
        PromptConfig(prob_box_input="often")
    with pytest.raises(UserError, match="integer >= 1"):
        PromptConfig(max_init_cond_frames=0)


@pytest.mark.parametrize("probs", ["[0.5,0.6]", "[1.2,-0.2]", "[0.1,0.1]"])
def test_scale_probs_must_sum_to_one(probs):
    with pytest.raises(UserError, match="must be probabilities in \\[0, 1\\] that sum to 1"):
        compose_train_config(overrides=[f"scale_probs={probs}"])  # before: silently renormalised by the sampler


def test_paper_scale_probs_pass():
    check_train_config(compose_train_config(overrides=["scale_probs=[0.9,0.1]"]))


FAKE_CONFIG = "epochs: 1\nrun_dir: run\ntrainer: {}\nmodel: {}\n"


def _fake_run(root):
    run = RunDir(root)
    run.checkpoints.mkdir(parents=True)
    run.last.write_bytes(b"first run")
    run.best.write_bytes(b"first best")
    (run.root / "config.yaml").write_text(FAKE_CONFIG)  # what training writes: run_dir, trainer, model, epochs...
    return run


def test_a_second_run_into_a_run_dir_is_refused(tmp_path):
    run = _fake_run(tmp_path / "run")
    # before: accepted, and training then replaced last.pt and best.pt
    with pytest.raises(UserError, match=f"run_dir {run.root} already holds a run; pass resume=auto to continue "
                                        f"or choose another run_dir"):
        prepare_run_dir(run.root, OmegaConf.create({"resume": None, "epochs": 2}))
    assert run.last.read_bytes() == b"first run" and (run.root / "config.yaml").read_text() == FAKE_CONFIG


def test_resume_continues_and_cleans_orphan_checkpoint_tmp_files(tmp_path):
    run = _fake_run(tmp_path / "run")
    orphan = run.checkpoints / ".last.pt.k2j3h4.tmp"
    orphan.write_bytes(b"half a checkpoint")
    user_file = run.checkpoints / "notes.tmp"
    user_file.write_text("mine")
    prepare_run_dir(run.root, OmegaConf.create({"resume": "auto", "epochs": 2}))
    assert not orphan.exists() and user_file.exists()
    assert "epochs: 2" in (run.root / "config.yaml").read_text()


def test_a_fresh_or_empty_run_dir_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    prepare_run_dir(tmp_path / "empty", OmegaConf.create({"resume": None}))
    prepare_run_dir(tmp_path / "new", OmegaConf.create({"resume": None}))
    assert (tmp_path / "new" / "git_sha.txt").is_file()
