"""Issue 22 (sections 3 and 4, writers): no writer replaces a file it did not write or writes
over its own inputs, one writer per folder, one line (exit 2) on a full disk or a read-only
folder with earlier results intact, and bad input named instead of crashed on or swallowed.

Tests run as root, where chmod blocks nothing: full disks and read-only folders are
simulated by :func:`disk_fault`, which makes writes under one folder fail as the kernel
would (ENOSPC on ``write()``, EROFS on ``open``/``mkdir``).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval.evaluate as evaluate_cli
from data.synthetic import main as synthetic_main
from data.vos_index import scan_vos_root
from eval import benchmark_memory, benchmark_speed
from inference.predict import run_videos
from inference.video_sources import ImageFolderSource
from tests.test_hardening_predict import EchoPredictor, _frames, _prompt
from tests.test_prepare_endovis import _make_dataset17
from utils.cli import run_cli
from utils.errors import UserError
from utils.io import atomic_torch_save, plain_name

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("restore_logging")


# --------------------------------------------------------------------------- helpers


def _under(path, folder: Path) -> bool:
    if isinstance(path, int):
        return False
    p = Path(os.path.abspath(os.fsdecode(path)))
    return p == folder or folder in p.parents


class _FullFile:
    """A file object whose writes fail as on a full disk (no file name, like the kernel's)."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


@pytest.fixture()
def disk_fault(monkeypatch):
    """``disk_fault(folder, errno.ENOSPC | errno.EROFS)``: writes under ``folder`` fail."""

    def install(folder: Path, code: int):
        folder = Path(os.path.abspath(folder))
        real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

        def fake_open(file, mode="r", *args, **kwargs):
            writing = any(c in mode for c in "wax+")
            if writing and _under(file, folder):
                if code == errno.EROFS:
                    raise OSError(code, os.strerror(code), os.fsdecode(file))
                return _FullFile(real_open(file, mode, *args, **kwargs))
            return real_open(file, mode, *args, **kwargs)

        def fake_os_open(path, flags, *args, **kwargs):
            if code == errno.EROFS and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and _under(path, folder):
                raise OSError(code, os.strerror(code), os.fsdecode(path))
            return real_os_open(path, flags, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            if code == errno.EROFS and _under(path, folder) and not os.path.exists(path):
                raise OSError(code, os.strerror(code), os.fsdecode(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)

    return install


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    return errors[0]


def _tree(root: Path) -> dict:
    """Every file under ``root`` with its bytes (hidden ones too)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _label(value: int = 1, hw=(16, 16)) -> np.ndarray:
    labels = np.zeros(hw, np.uint8)
    labels[2:8, 2:8] = value
    return labels


@pytest.fixture()
def gt_pred(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_cli, "setup_logging", lambda *a, **k: None)
    for side in ("gt", "pred"):
        (tmp_path / side / "v").mkdir(parents=True)
        for t in range(2):
            Image.fromarray(_label()).save(tmp_path / side / "v" / f"{t:05d}.png")
    return tmp_path / "gt", tmp_path / "pred"


def _evaluate(gt, pred, *extra):
    return run_cli(evaluate_cli.main, ["--pred_dir", str(pred), "--gt_dir", str(gt), "--workers", "1",
                                       "--no_progress", *map(str, extra)])


HOLDER = """
import sys, time
sys.path.insert(0, {repo!r})
from utils.io import hold_lock
with hold_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture()
def lock_holder():
    """Start another process that holds a folder's lock; yields ``start(folder, what) -> Popen``."""
    procs = []

    def start(folder: Path, what: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO)), str(folder), what],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- 3. foreign files: evaluate


def test_evaluate_out_never_replaces_a_foreign_json(gt_pred, tmp_path, capsys):
    gt, pred = gt_pred
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    assert _evaluate(gt, pred, "--out", mine) == 2  # before: replaced by the report
    assert "notes.json exists and was not written by evaluate.py" in _one_error(capsys)
    assert mine.read_text() == '{"my": "notes"}'


def test_evaluate_replaces_its_own_report_json_csv_and_plot(gt_pred, tmp_path):
    gt, pred = gt_pred
    outs = ["--out", tmp_path / "r.json", "--csv", tmp_path / "r.csv", "--plot", tmp_path / "r.png"]
    assert _evaluate(gt, pred, *outs) == 0
    assert _evaluate(gt, pred, *outs) == 0  # a re-run replaces what evaluate.py wrote
    assert json.loads((tmp_path / "r.json").read_text())["overall"]["n_frames"] == 2
    assert Image.open(tmp_path / "r.png").info["Software"] == "TSMS-SAM2 eval/evaluate.py"


def test_evaluate_csv_pointed_at_a_scored_mask_is_refused(gt_pred, capsys):
    gt, pred = gt_pred
    mask = gt / "v" / "00001.png"
    before = mask.read_bytes()
    assert _evaluate(gt, pred, "--csv", mask) == 2  # before: the ground-truth PNG became CSV text
    assert "lies inside --gt_dir" in _one_error(capsys)
    assert mask.read_bytes() == before


@pytest.mark.parametrize("flag,target", [("--plot", "gt/v/00000.png"), ("--out", "pred/v/00000.png"),
                                         ("--out", "pred/new.json"), ("--plot", "gt/meta.json")])
def test_evaluate_outputs_inside_its_inputs_are_refused(gt_pred, tmp_path, capsys, flag, target):
    gt, pred = gt_pred
    before = _tree(tmp_path)
    assert _evaluate(gt, pred, flag, tmp_path / target) == 2
    assert "which this run reads" in _one_error(capsys)
    assert _tree(tmp_path) == before


def test_evaluate_two_outputs_on_one_path_are_refused(gt_pred, tmp_path, capsys):
    gt, pred = gt_pred
    assert _evaluate(gt, pred, "--out", tmp_path / "x", "--csv", tmp_path / "x") == 2  # before: CSV over the JSON
    assert "--csv and --out are the same file" in _one_error(capsys)
    assert not (tmp_path / "x").exists()


def test_evaluate_plot_never_replaces_a_foreign_png(gt_pred, tmp_path, capsys):
    gt, pred = gt_pred
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).save(photo)
    before = photo.read_bytes()
    assert _evaluate(gt, pred, "--plot", photo) == 2
    assert "photo.png exists and was not written by evaluate.py" in _one_error(capsys)
    assert photo.read_bytes() == before


# --------------------------------------------------------------------------- 4. evaluate: silent wrong results


def test_pred_dir_equal_to_gt_dir_is_refused(gt_pred, capsys):
    gt, _ = gt_pred
    assert _evaluate(gt, gt) == 2  # before: Dice 100
    assert "are the same folder" in _one_error(capsys)


def test_pred_dir_that_links_to_gt_dir_is_refused(gt_pred, tmp_path, capsys):
    gt, _ = gt_pred
    (tmp_path / "link").symlink_to(gt)
    assert _evaluate(gt, tmp_path / "link") == 2
    assert "are the same folder" in _one_error(capsys)


def test_prediction_video_folder_linked_to_its_ground_truth_is_refused(gt_pred, tmp_path, capsys):
    gt, _ = gt_pred
    (tmp_path / "p2").mkdir()
    (tmp_path / "p2" / "v").symlink_to(gt / "v")
    assert _evaluate(gt, tmp_path / "p2") == 2
    assert "is the ground-truth folder" in _one_error(capsys)


def test_extra_prediction_frames_are_counted_in_a_warning(gt_pred, caplog):
    gt, pred = gt_pred
    for t in (2, 3, 7):  # frames the ground truth does not have
        Image.fromarray(_label()).save(pred / "v" / f"{t:05d}.png")
    with caplog.at_level(logging.WARNING):
        assert _evaluate(gt, pred) == 0
    # before: not a word
    assert "3 predicted frame(s) in 1 video(s) have no ground-truth frame and were not scored: v: 3 " \
           "(00002, 00003, 00007)" in caplog.text


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "cr\rx", "esc\x1b[31m"])
def test_video_names_with_control_characters_are_refused_by_evaluate(gt_pred, capsys, name):
    gt, pred = gt_pred
    for side in (gt, pred):
        (side / name).mkdir()
        Image.fromarray(_label()).save(side / name / "00000.png")
    assert _evaluate(gt, pred) == 2  # before: the name split the table rows and log lines
    line = _one_error(capsys)
    assert "holds control characters" in line and repr(name) in line


@pytest.mark.parametrize("name", ["a\nb", "x\ty", "z\r"])
def test_control_characters_in_names_are_refused_for_outputs_and_training(tmp_path, name):
    with pytest.raises(UserError, match="holds control characters"):
        plain_name(name, "video name")  # predict_video.py output names, prepare split/video names
    for kind in ("JPEGImages", "Annotations"):
        (tmp_path / kind / name).mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "JPEGImages" / name / "00000.jpg")
    Image.fromarray(_label()).save(tmp_path / "Annotations" / name / "00000.png")
    with pytest.raises(UserError, match="holds control characters"):
        scan_vos_root(tmp_path)


# --------------------------------------------------------------------------- 3. foreign files: synthetic


def _synthetic(out: Path, *extra) -> int:
    return run_cli(synthetic_main, ["--out", str(out), "--num_videos", "1", "--num_frames", "2", "--size", "32", "32",
                                    "--no_mp4", "--log_level", "WARNING", *map(str, extra)])


def test_synthetic_rerun_keeps_the_users_files(tmp_path):
    out = tmp_path / "syn"
    assert _synthetic(out) == 0
    (out / "NOTES.txt").write_text("my notes")
    (out / "preds" / "video_0000").mkdir(parents=True)
    (out / "preds" / "video_0000" / "00000.png").write_bytes(b"my prediction")
    assert _synthetic(out, "--seed", "3", "--num_frames", "3") == 0
    # before: the whole folder was replaced, NOTES.txt and preds/ deleted
    assert (out / "NOTES.txt").read_text() == "my notes"
    assert (out / "preds" / "video_0000" / "00000.png").read_bytes() == b"my prediction"
    assert json.loads((out / "meta.json").read_text())["seed"] == 3
    assert len(list((out / "JPEGImages" / "video_0000").iterdir())) == 3
    assert not [p for p in out.iterdir() if p.name.startswith(".")] + list(tmp_path.glob(".syn*"))


@pytest.mark.parametrize("planted", ["JPEGImages/video_0000/00099.jpg", "JPEGImages/my_video/00000.jpg",
                                     "ImageSets/mine.txt", "Annotations/video_0000/notes.txt"])
def test_synthetic_rerun_refuses_to_replace_a_file_it_did_not_write(tmp_path, capsys, planted):
    out = tmp_path / "syn"
    assert _synthetic(out) == 0
    (out / planted).parent.mkdir(parents=True, exist_ok=True)
    (out / planted).write_bytes(b"mine")
    before = _tree(out)
    assert _synthetic(out, "--seed", "4") == 2
    assert "was not written by the generator" in _one_error(capsys)
    assert _tree(out) == before


def test_synthetic_into_a_prepared_dataset_is_refused(tmp_path, capsys):
    from data.endovis17 import prepare_endovis17

    _make_dataset17(tmp_path / "raw", 1, frames=(0,))
    prepare_endovis17(tmp_path / "raw", tmp_path / "prepared", splits=["test=1"])
    for out in (tmp_path / "prepared", tmp_path / "prepared" / "test"):
        before = _tree(tmp_path / "prepared")
        assert _synthetic(out) == 2
        assert "not written by this generator" in _one_error(capsys)
        assert _tree(tmp_path / "prepared") == before


def test_synthetic_publication_killed_half_way_is_recognised_as_ours(tmp_path):
    """A run killed between moving its entries and its meta.json leaves the journal: the next
    run sees the mix as its own (it would otherwise refuse the new frames as foreign)."""
    from data.synthetic_output import JOURNAL

    out = tmp_path / "syn"
    assert _synthetic(out) == 0
    assert _synthetic(tmp_path / "new", "--num_frames", "4") == 0
    os.replace(out / "JPEGImages", tmp_path / "old_images")
    os.replace(tmp_path / "new" / "JPEGImages", out / "JPEGImages")  # 4 frames, meta says 2
    (out / JOURNAL).write_text((tmp_path / "new" / "meta.json").read_text())
    assert _synthetic(out) == 0
    assert len(list((out / "JPEGImages" / "video_0000").iterdir())) == 2 and not (out / JOURNAL).exists()


# --------------------------------------------------------------------------- 3. foreign files: prepare


def test_prepare_out_dir_inside_raw_dir_is_refused(tmp_path, capsys):
    from data.prepare_endovis17 import main as prepare_main

    raw = tmp_path / "raw"
    _make_dataset17(raw, 1, frames=(0,))
    before = _tree(raw)
    assert run_cli(prepare_main, ["--raw_dir", str(raw), "--out_dir", str(raw / "prepared"), "--split", "t=1"]) == 2
    assert "lies inside --raw_dir" in _one_error(capsys)  # before: written into the raw download
    assert _tree(raw) == before


def test_prepare_refuses_a_foreign_meta_json_before_writing_any_split(tmp_path, capsys):
    from data.prepare_endovis17 import main as prepare_main

    raw = tmp_path / "raw"
    for dataset in (1, 2):
        _make_dataset17(raw, dataset, frames=(0,))
    (tmp_path / "out" / "b").mkdir(parents=True)
    (tmp_path / "out" / "b" / "meta.json").write_text('{"mine": 1}')
    argv = ["--raw_dir", str(raw), "--out_dir", str(tmp_path / "out"), "--split", "a=1", "--split", "b=2"]
    assert run_cli(prepare_main, argv) == 2  # before: split a written, then b/meta.json replaced
    assert "meta.json exists and was not written by a prepare run" in _one_error(capsys)
    assert (tmp_path / "out" / "b" / "meta.json").read_text() == '{"mine": 1}'
    assert not (tmp_path / "out" / "a").exists()


# --------------------------------------------------------------------------- 3. foreign files: benchmarks


def test_benchmark_speed_overwrite_never_replaces_a_foreign_file(tmp_path, capsys):
    (tmp_path / "speed.json").write_text('{"mine": true}')
    argv = ["--models", "mini", "--sizes", "128", "--frames", "10", "--out", str(tmp_path / "speed"), "--overwrite"]
    assert run_cli(benchmark_speed.main, argv) == 2  # before: replaced after the run
    assert "speed.json exists and was not written by benchmark_speed.py" in _one_error(capsys)
    assert (tmp_path / "speed.json").read_text() == '{"mine": true}'


def test_benchmark_memory_refuses_an_earlier_result_without_overwrite(tmp_path, capsys):
    (tmp_path / "mem.json").write_text(json.dumps({"meta": {}, "rows": []}))
    assert run_cli(benchmark_memory.main, ["--out", str(tmp_path / "mem")]) == 2  # before: replaced silently
    assert "pass --overwrite" in _one_error(capsys)
    (tmp_path / "mem.md").write_text("my table")
    assert run_cli(benchmark_memory.main, ["--out", str(tmp_path / "mem"), "--overwrite"]) == 2
    assert "mem.md exists and was not written by benchmark_memory.py" in _one_error(capsys)


# --------------------------------------------------------------------------- 3. foreign files: training run_dir


def _check_run_dir(run_dir, resume):
    from training.run_dir import check_run_dir

    check_run_dir(run_dir, resume)


def test_training_never_replaces_a_foreign_config_or_git_sha(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("my: settings\n")
    with pytest.raises(UserError, match="config.yaml exists and was not written by training"):
        _check_run_dir(run, "auto")  # before: resume=auto replaced it
    (run / "config.yaml").unlink()
    (run / "git_sha.txt").write_text("my notes\n")
    with pytest.raises(UserError, match="git_sha.txt exists and was not written by training"):
        _check_run_dir(run, None)  # before: a fresh start replaced it


def test_training_refuses_checkpoints_it_did_not_write(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(b"somebody's weights")
    with pytest.raises(UserError, match="no config.yaml written by training"):
        _check_run_dir(run, "auto")  # before: training started and replaced best.pt


@pytest.mark.parametrize("where", ["train", "train/run", "."])
def test_a_run_dir_overlapping_the_training_data_is_refused(tmp_path, train_data, where):
    from training.config import compose_train_config
    from training.trainer import train

    run = (train_data / where).resolve()
    cfg = compose_train_config(overrides=[f"run_dir={run}", "device=cpu", f"data.train.root={train_data / 'train'}",
                                          "data.val=null", "trainer.val_every=0"])
    before = _tree(train_data)
    with pytest.raises(UserError, match="run_dir .* data.train.root .* which this run reads"):
        train(cfg)  # before: config.yaml, checkpoints and event files went into the dataset
    assert _tree(train_data) == before


# --------------------------------------------------------------------------- 3. concurrent writers


def test_hold_lock_names_the_holder_and_frees_with_a_killed_process(tmp_path, lock_holder):
    from utils.io import hold_lock

    proc = lock_holder(tmp_path / "folder", "training")
    with pytest.raises(UserError, match=rf"in use by another training \(pid {proc.pid} on "):
        with hold_lock(tmp_path / "folder", "training"):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with hold_lock(tmp_path / "folder", "training"):  # a dead holder's lock is free
        assert (tmp_path / "folder" / ".tsms.lock").read_text().split()[0] == str(os.getpid())
    assert not (tmp_path / "folder" / ".tsms.lock").exists()
    with hold_lock(tmp_path / "new", "training"):
        pass
    assert not (tmp_path / "new").exists()  # created for the lock and left empty: removed


def test_a_second_training_in_one_run_dir_is_refused(tmp_path, lock_holder):
    from training.config import compose_train_config
    from training.trainer import train

    run = tmp_path / "run"
    proc = lock_holder(run, "training")
    cfg = compose_train_config(overrides=[f"run_dir={run}", "resume=auto", "device=cpu", f"data_root={tmp_path / 'none'}"])
    # before: it went on (here to a missing dataset; with data, both wrote checkpoints)
    with pytest.raises(UserError, match=rf"{run} is in use by another training \(pid {proc.pid} on "):
        train(cfg)


def test_a_second_prediction_into_one_output_folder_is_refused(tmp_path, lock_holder):
    out = tmp_path / "out"
    proc = lock_holder(out, "predict_video.py run")
    jobs = [("vid", lambda: (ImageFolderSource(_frames(tmp_path / "vid")), _prompt()))]
    with pytest.raises(UserError, match=rf"in use by another predict_video.py run \(pid {proc.pid} on "):
        run_videos(EchoPredictor(), jobs, out, {})  # before: both runs wrote into the folder
    assert not (out / "vid").exists()
    proc.kill()
    proc.wait()
    run_videos(EchoPredictor(), jobs, out, {})
    assert len(list((out / "vid").glob("*.png"))) == 3 and not (out / ".tsms.lock").exists()


# --------------------------------------------------------------------------- 3. full disk, read-only folder


@pytest.mark.parametrize("code,cause", [(errno.ENOSPC, "no space left on device (errno 28)"),
                                        (errno.EROFS, "read-only file system (errno 30)")])
def test_evaluate_on_a_full_or_read_only_disk(gt_pred, tmp_path, capsys, disk_fault, code, cause):
    gt, pred = gt_pred
    (tmp_path / "reports").mkdir()
    assert _evaluate(gt, pred, "--out", tmp_path / "reports" / "r.json") == 0
    before = _tree(tmp_path / "reports")
    disk_fault(tmp_path / "reports", code)
    assert _evaluate(gt, pred, "--out", tmp_path / "reports" / "r.json") == 2  # before: a traceback
    line = _one_error(capsys)
    assert f"cannot write in {tmp_path / 'reports'} (r.json): {cause}" in line
    assert _tree(tmp_path / "reports") == before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_synthetic_on_a_full_or_read_only_disk_keeps_the_earlier_dataset(tmp_path, capsys, disk_fault, code):
    out = tmp_path / "syn"
    assert _synthetic(out) == 0
    before = _tree(tmp_path)
    disk_fault(tmp_path, code)
    assert _synthetic(out, "--seed", "9") == 2  # before: a traceback
    assert f"cannot write in {out}" in _one_error(capsys)
    assert _tree(tmp_path) == before and not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_prepare_on_a_full_or_read_only_disk(tmp_path, capsys, disk_fault, code):
    from data.prepare_endovis17 import main as prepare_main

    _make_dataset17(tmp_path / "raw", 1, frames=(0,))
    (tmp_path / "out").mkdir()
    disk_fault(tmp_path / "out", code)
    assert run_cli(prepare_main, ["--raw_dir", str(tmp_path / "raw"), "--out_dir", str(tmp_path / "out"),
                                  "--split", "t=1"]) == 2  # before: a traceback
    assert f"cannot write in {tmp_path / 'out'}" in _one_error(capsys)
    assert not _tree(tmp_path / "out")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_prediction_on_a_full_or_read_only_disk_keeps_earlier_results(tmp_path, capsys, disk_fault, code):
    out = tmp_path / "out"
    jobs = [("vid", lambda: (ImageFolderSource(_frames(tmp_path / "vid")), _prompt()))]
    run_videos(EchoPredictor(), jobs, out, {})
    before = _tree(out)
    disk_fault(out, code)
    assert run_cli(lambda argv: run_videos(EchoPredictor(), jobs, out, {})) == 2  # before: a traceback
    assert f"cannot write in {out}" in _one_error(capsys)
    assert _tree(out) == before


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    from data.synthetic_video import write_synthetic_dataset

    root = tmp_path_factory.mktemp("train_data")
    write_synthetic_dataset(root / "train", 2, 4, seed=0, size=(64, 64), write_mp4=False, progress=False)
    return root


@pytest.mark.parametrize("code,cause", [(errno.ENOSPC, "(config.yaml): no space left on device"),
                                        (errno.EROFS, "(.tsms.lock): read-only file system")])
def test_training_on_a_full_or_read_only_run_dir_is_one_line(tmp_path, capsys, disk_fault, train_data, code, cause,
                                                              one_torch_thread):
    from training.config import compose_train_config
    from training.trainer import train

    run = tmp_path / "run"
    run.mkdir()  # an empty run_dir on a disk that is full or read-only
    cfg = compose_train_config(overrides=[
        "experiment=synthetic_tiny", f"run_dir={run}", "device=cpu", f"data.train.root={train_data / 'train'}",
        "data.val=null", "trainer.val_every=0", "num_frames=2", "max_num_objects=1", "num_workers=0", "epochs=1",
        "trainer.progress=false"])
    disk_fault(run, code)
    assert run_cli(lambda argv: train(cfg)) == 2  # before: a traceback
    assert f"cannot write in {run} {cause}" in _one_error(capsys)
    assert not _tree(run)  # no file (no half config, no lock left behind)


def test_a_checkpoint_on_a_full_disk_is_a_disk_error_not_a_torch_runtime_error(tmp_path, disk_fault):
    (tmp_path / "ck").mkdir()
    disk_fault(tmp_path / "ck", errno.ENOSPC)
    with pytest.raises(OSError) as info:  # before: RuntimeError "unexpected pos ...": a traceback
        atomic_torch_save({"w": torch.zeros(10000)}, tmp_path / "ck" / "last.pt")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "ck" / "last.pt")
    assert not list((tmp_path / "ck").iterdir())


# --------------------------------------------------------------------------- 4. benchmark arguments, temp data


@pytest.mark.parametrize("flag,value", [("--sizes", "0"), ("--threads", "0"), ("--objects", "0"), ("--repeats", "0"),
                                        ("--sizes", "100"), ("--frames", "3"), ("--warmup_frames", "-1")])
def test_benchmark_speed_bad_numbers_are_one_line(tmp_path, capsys, flag, value):
    assert run_cli(benchmark_speed.main, [flag, value, "--out", str(tmp_path / "s")]) == 2  # before: tracebacks
    assert f"error: {flag} must be" in _one_error(capsys)


def test_benchmark_speed_keeps_its_scratch_data_inside_out_and_removes_it(tmp_path, monkeypatch):
    seen = []

    def fake_benchmark(model, size, specs, video_dir, *args, **kwargs):
        seen.append(Path(video_dir))
        raise RuntimeError("stop here")

    before = set(Path(tempfile.gettempdir()).glob("tsms_bench_*"))
    monkeypatch.setattr(benchmark_speed, "benchmark", fake_benchmark)
    with pytest.raises(RuntimeError, match="stop here"):
        benchmark_speed.main(["--models", "mini", "--sizes", "128", "--frames", "10", "--threads", "1",
                              "--out", str(tmp_path / "bench" / "speed")])
    assert (tmp_path / "bench") in seen[0].parents  # before: under /tmp/tsms_bench_speed_*, never removed
    assert not seen[0].exists() and not list((tmp_path / "bench").iterdir())
    assert set(Path(tempfile.gettempdir()).glob("tsms_bench_*")) == before


def test_benchmark_memory_keeps_its_scratch_data_inside_out_and_removes_it(tmp_path, monkeypatch):
    seen = []

    def fake_make_video(work, *args, **kwargs):
        seen.append(Path(work))
        (Path(work) / "synthetic").mkdir()
        raise RuntimeError("stop here")

    monkeypatch.setattr(benchmark_memory, "make_video", fake_make_video)
    with pytest.raises(RuntimeError, match="stop here"):
        benchmark_memory.main(["--out", str(tmp_path / "bench" / "mem")])
    assert (tmp_path / "bench") in seen[0].parents  # before: /tmp/tsms_bench_mem_*, never removed
    assert not seen[0].exists() and not list((tmp_path / "bench").iterdir())


# --------------------------------------------------------------------------- 4. training data of another size


def _vos(root: Path, sizes) -> Path:
    for kind in ("JPEGImages", "Annotations"):
        (root / kind / "v").mkdir(parents=True)
    for t, (frame_hw, mask_hw) in enumerate(sizes):
        Image.fromarray(np.zeros(frame_hw + (3,), np.uint8)).save(root / "JPEGImages" / "v" / f"{t:05d}.jpg")
        Image.fromarray(_label(hw=mask_hw)).save(root / "Annotations" / "v" / f"{t:05d}.png")
    return root


def test_a_frame_of_another_size_is_named_when_the_dataset_is_indexed(tmp_path):
    root = _vos(tmp_path, [((16, 16), (16, 16)), ((16, 16), (16, 16)), ((24, 16), (24, 16))])
    # before: indexed fine, then a crash mid-epoch when a clip stacked frames of two sizes
    with pytest.raises(UserError, match=r"video v: .*JPEGImages/v/00002.jpg is 16x24 but .*00000.jpg is 16x16"):
        scan_vos_root(root)


def test_a_mask_of_another_size_is_named_when_the_dataset_is_indexed(tmp_path):
    root = _vos(tmp_path, [((16, 16), (16, 16)), ((16, 16), (16, 20))])
    with pytest.raises(UserError, match=r"Annotations/v/00001.png is 20x16 but .*00000.jpg is 16x16"):
        scan_vos_root(root)


# --------------------------------------------------------------------------- 4. NaN weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path, capsys, mini_checkpoint, two_object_video, bad):
    import inference.predict_video as predict_cli

    state = torch.load(mini_checkpoint, weights_only=True)["model"]
    name = next(k for k, v in state.items() if v.is_floating_point() and "mask_decoder" in k)
    state[name] = state[name].clone()
    state[name].view(-1)[3] = bad
    path = tmp_path / "broken.pt"
    torch.save({"model": state}, path)
    video_dir, masks = two_object_video
    Image.fromarray(masks[1][0].astype(np.uint8)).save(tmp_path / "first.png")
    argv = ["--video_path", str(video_dir), "--checkpoint", str(path), "--model_cfg", "mini", "--prompt_type", "mask",
            "--mask_path", str(tmp_path / "first.png"), "--output_dir", str(tmp_path / "out"), "--device", "cpu",
            "--quiet", "--log_level", "WARNING"]
    assert run_cli(predict_cli.main, argv) == 2  # before: empty masks and exit 0
    line = _one_error(capsys)
    assert f"{path}: weight {name} holds 1 non-finite value(s)" in line
    assert not (tmp_path / "out" / video_dir.name).exists()


def test_finite_weights_pass_the_check(mini_checkpoint):
    from models.weights_check import check_finite_weights

    check_finite_weights(torch.load(mini_checkpoint, weights_only=True)["model"], "mini")


# --------------------------------------------------------------------------- the same on a real full disk


@pytest.fixture()
def tiny_tmpfs(tmp_path):
    """A real 128 KiB tmpfs (needs mount rights, e.g. root in a privileged container; else skipped):
    checks that the simulated faults above match what the kernel does."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_full_disk_is_one_line_and_keeps_earlier_results(tiny_tmpfs, gt_pred, capsys):
    gt, pred = gt_pred
    assert _evaluate(gt, pred, "--out", tiny_tmpfs / "r.json") == 0
    assert _synthetic(tiny_tmpfs / "syn") == 0
    before = _tree(tiny_tmpfs)
    fd = os.open(tiny_tmpfs / "fill", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError):  # fill the disk
        while True:
            os.write(fd, b"\0" * 1024)
    os.close(fd)
    before["fill"] = (tiny_tmpfs / "fill").read_bytes()
    assert _evaluate(gt, pred, "--out", tiny_tmpfs / "r.json") == 2
    assert f"cannot write in {tiny_tmpfs} (r.json): no space left on device" in _one_error(capsys)
    assert _synthetic(tiny_tmpfs / "syn", "--seed", "5", "--size", "64", "64") == 2
    assert f"cannot write in {tiny_tmpfs / 'syn'}" in _one_error(capsys)
    assert _tree(tiny_tmpfs) == before
