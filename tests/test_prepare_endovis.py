"""EndoVis2017 / EndoVis2018 preparation on small fake raw trees with the real naming."""

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.endovis import parse_split
from data.endovis17 import fold_splits, instrument_type, prepare_endovis17
from data.endovis18 import SCENE_CLASSES, SPLITS, prepare_endovis18
from data.mask_io import read_label_png, read_rgb
from data.prepare_endovis17 import main as main17
from data.prepare_endovis18 import main as main18
from utils.cli import run_cli
from utils.errors import UserError

H17, W17 = 1080, 1920
PROGRASP = (slice(100, 200), slice(400, 600))  # raw coordinates
BIPOLAR = (slice(150, 250), slice(500, 700))


pytestmark = pytest.mark.usefixtures("restore_logging")


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), array, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def _frame17(dataset: int, frame: int) -> np.ndarray:
    rows = (np.arange(H17) % 256).astype(np.uint8)[:, None]
    cols = (np.arange(W17) % 256).astype(np.uint8)[None, :]
    return np.dstack([np.broadcast_to(rows, (H17, W17)), np.broadcast_to(cols, (H17, W17)),
                      np.full((H17, W17), dataset * 10 + frame, np.uint8)])


def _make_dataset17(root: Path, dataset: int, frames=(0, 1)) -> None:
    base = root / f"instrument_dataset_{dataset}"
    for f in frames:
        name = f"frame{f:03d}.png"
        _png(base / "left_frames" / name, _frame17(dataset, f))
        prograsp = np.zeros((H17, W17), np.uint8)
        prograsp[PROGRASP] = 10  # part values (shaft 10, ...) count as the instrument
        prograsp[0:20, 0:50] = 30  # outside the crop box: must vanish
        _png(base / "ground_truth" / "Left_Prograsp_Forceps_labels" / name, prograsp)
        bipolar = np.zeros((H17, W17), np.uint8)
        bipolar[BIPOLAR] = 255
        _png(base / "ground_truth" / "Maryland_Bipolar_Forceps_labels" / name, bipolar)


@pytest.fixture(scope="module")
def raw17(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw17")
    for dataset in range(1, 9):
        _make_dataset17(root, dataset, frames=(0,) if dataset > 3 else (0, 1))
    return root


def test_endovis17_fold_crop_and_instance_ids(raw17, tmp_path):
    out = tmp_path / "ev17"
    metas = prepare_endovis17(raw17, out, fold=0, objects="instance", image_format="png")
    assert sorted(metas) == ["train", "valid"]
    assert sorted(os.listdir(out / "valid" / "JPEGImages")) == ["instrument_dataset_1", "instrument_dataset_3"]
    assert sorted(os.listdir(out / "train" / "JPEGImages")) == [
        f"instrument_dataset_{i}" for i in (2, 4, 5, 6, 7, 8)]
    video = out / "valid" / "JPEGImages" / "instrument_dataset_3"
    assert sorted(os.listdir(video)) == ["00000.png", "00001.png"]
    image = read_rgb(video / "00001.png")
    assert image.shape == (1024, 1280, 3)
    assert np.array_equal(image, _frame17(3, 1)[28:1052, 320:1600])
    label = read_label_png(out / "valid" / "Annotations" / "instrument_dataset_3" / "00001.png")
    expected = np.zeros((H17, W17), np.uint8)
    expected[PROGRASP] = 1  # Left_Prograsp_Forceps_labels (first in sorted order)
    expected[BIPOLAR] = 2  # Maryland_Bipolar_Forceps_labels, drawn on top
    assert np.array_equal(label, expected[28:1052, 320:1600])
    prompt = read_label_png(out / "valid" / "Prompts" / "instrument_dataset_3" / "00000.png")
    assert np.array_equal(prompt, label)
    meta = json.loads((out / "valid" / "meta.json").read_text())
    objects = meta["videos"]["instrument_dataset_3"]["objects"]
    assert objects["1"]["name"] == "Left_Prograsp_Forceps (Prograsp Forceps)"
    assert objects["2"]["first_frame"] == 0 and objects["2"]["num_frames"] == 2


def test_endovis17_type_ids_user_split_and_nested_layout(raw17, tmp_path):
    nested = tmp_path / "raw"
    (nested / "train").mkdir(parents=True)
    os.symlink(raw17 / "instrument_dataset_2", nested / "train" / "instrument_dataset_2")
    out = tmp_path / "ev17"
    assert main17(["--raw_dir", str(nested), "--out_dir", str(out), "--split", "mine=2", "--objects", "type",
                   "--log_level", "WARNING"]) == 0
    assert sorted(os.listdir(out)) == ["mine"]
    assert sorted(os.listdir(out / "mine" / "JPEGImages" / "instrument_dataset_2")) == ["00000.jpg", "00001.jpg"]
    label = read_label_png(out / "mine" / "Annotations" / "instrument_dataset_2" / "00000.png")
    assert set(np.unique(label).tolist()) == {0, 1, 2}  # 1 Bipolar Forceps, 2 Prograsp Forceps
    assert label[BIPOLAR[0].start - 28 + 50, BIPOLAR[1].start - 320 + 50] == 1
    assert label[PROGRASP[0].start - 28 + 5, PROGRASP[1].start - 320 + 5] == 2


def test_endovis17_reruns_are_idempotent(raw17, tmp_path):
    out = tmp_path / "ev17"
    args = dict(splits=["a=1"], image_format="png")
    prepare_endovis17(raw17, out, **args)
    files = sorted(p for p in (out / "a").rglob("*") if p.is_file() and p.name != "meta.json")
    stamps = {p: p.stat().st_mtime_ns for p in files}
    prepare_endovis17(raw17, out, **args)
    assert sorted(p for p in (out / "a").rglob("*") if p.is_file() and p.name != "meta.json") == files
    assert {p: p.stat().st_mtime_ns for p in files} == stamps  # skipped, nothing rewritten
    prepare_endovis17(raw17, out, objects="type", **args)  # other options: converted again
    label = read_label_png(out / "a" / "Annotations" / "instrument_dataset_1" / "00000.png")
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    assert not list((out / "a").glob(".*.tmp"))


def test_endovis17_errors(raw17, tmp_path):
    with pytest.raises(UserError, match="instrument_dataset_9"):
        prepare_endovis17(raw17, tmp_path / "o", splits=["test=9"])
    broken = tmp_path / "broken"
    shutil.copytree(raw17 / "instrument_dataset_1", broken / "instrument_dataset_1")
    (broken / "instrument_dataset_1" / "ground_truth" / "Maryland_Bipolar_Forceps_labels" / "frame001.png").unlink()
    with pytest.raises(UserError, match="Maryland_Bipolar_Forceps_labels/frame001.png"):
        prepare_endovis17(broken, tmp_path / "o", splits=["x=1"])
    shutil.rmtree(broken / "instrument_dataset_1" / "ground_truth")
    with pytest.raises(UserError, match="instrument_dataset_1/ground_truth"):
        prepare_endovis17(broken, tmp_path / "o", splits=["x=1"])
    small = tmp_path / "small" / "instrument_dataset_1"
    _png(small / "left_frames" / "frame000.png", np.zeros((48, 64, 3), np.uint8))
    _png(small / "ground_truth" / "Other_labels" / "frame000.png", np.zeros((48, 64), np.uint8))
    with pytest.raises(UserError, match=r"frame000.png: expected a 1920x1080.*got 64x48"):
        prepare_endovis17(small.parent, tmp_path / "o", splits=["x=1"])
    assert not (tmp_path / "o" / "x" / "JPEGImages" / "instrument_dataset_1").exists()


def test_endovis17_names_folds_and_split_parsing():
    assert instrument_type("Left_Prograsp_Forceps_labels") == 2
    assert instrument_type("Maryland_Bipolar_Forceps_labels") == 1
    assert instrument_type("Right_Large_Needle_Driver_labels") == 3
    assert instrument_type("Left_Vessel_Sealer_labels") == 4
    assert instrument_type("Grasping_Retractor_labels") == 5
    assert instrument_type("Right_Monopolar_Curved_Scissors_labels") == 6
    assert instrument_type("Other_labels") == 7
    with pytest.raises(UserError, match="Camera_labels"):
        instrument_type("Camera_labels")
    assert [fold_splits(k)["valid"] for k in range(4)] == [[1, 3], [2, 5], [4, 8], [6, 7]]
    assert fold_splits(2)["train"] == [1, 2, 3, 5, 6, 7]
    assert parse_split("test=9,10") == ("test", [9, 10])
    assert parse_split("t=1-3,7") == ("t", [1, 2, 3, 7])
    with pytest.raises(UserError):
        parse_split("nonsense")


# ---------------------------------------------------------------- EndoVis2018

H18, W18 = 12, 16


def _label18(seq: int) -> np.ndarray:
    """Every class colour once per row-band, plus background."""
    label = np.zeros((H18, W18, 3), np.uint8)
    for class_id, (_, colour) in enumerate(SCENE_CLASSES, start=1):
        label[class_id % H18, class_id] = colour
    label[0, 0] = SCENE_CLASSES[seq % 11][1]
    return label


def _make_seq18(root: Path, seq: int, frames=(0,)) -> None:
    for f in frames:
        name = f"frame{f:03d}.png"
        _png(root / f"seq_{seq}" / "left_frames" / name, np.full((H18, W18, 3), seq * 5 + f, np.uint8))
        _png(root / f"seq_{seq}" / "labels" / name, _label18(seq))


@pytest.fixture(scope="module")
def raw18(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw18")
    release = root / "miccai_challenge_2018_release_1"
    for seq in SPLITS["train"] + SPLITS["valid"]:
        _make_seq18(release if seq < 5 else root, seq, frames=(0, 1) if seq == 2 else (0,))
    return root


def test_endovis18_standard_splits_and_colour_ids(raw18, tmp_path):
    out = tmp_path / "ev18"
    assert main18(["--raw_dir", str(raw18), "--out_dir", str(out), "--log_level", "WARNING"]) == 0
    assert sorted(os.listdir(out / "valid" / "JPEGImages")) == ["seq_15", "seq_2", "seq_5", "seq_9"]
    assert sorted(os.listdir(out / "train" / "JPEGImages")) == sorted(f"seq_{i}" for i in SPLITS["train"])
    label = read_label_png(out / "valid" / "Annotations" / "seq_2" / "00001.png")
    for class_id in range(1, 12):
        assert label[class_id % H18, class_id] == class_id
    assert label[0, 0] == 3 and label[5, 0] == 0
    assert read_rgb(out / "valid" / "JPEGImages" / "seq_2" / "00001.jpg").shape == (H18, W18, 3)
    meta = json.loads((out / "valid" / "meta.json").read_text())
    assert meta["class_names"]["1"] == "instrument-shaft" and meta["class_names"]["11"] == "ultrasound-probe"
    assert (out / "valid" / "Prompts" / "seq_2" / "00000.png").is_file()


def test_endovis18_class_subset(raw18, tmp_path):
    prepare_endovis18(raw18, tmp_path / "o", splits=["s=3"], classes=[1, 2, 3])
    label = read_label_png(tmp_path / "o" / "s" / "Annotations" / "seq_3" / "00000.png")
    assert set(np.unique(label).tolist()) == {0, 1, 2, 3}


def test_endovis18_unknown_colour_names_file_pixel_and_colour(raw18, tmp_path):
    bad = tmp_path / "bad"
    _make_seq18(bad, 1)
    label = _label18(1)
    label[2, 3] = (1, 2, 3)
    _png(bad / "seq_1" / "labels" / "frame000.png", label)
    with pytest.raises(UserError) as info:
        prepare_endovis18(bad, tmp_path / "o", splits=["x=1"])
    message = str(info.value)
    assert "seq_1/labels/frame000.png" in message and "(x=3, y=2)" in message and "(1, 2, 3)" in message
    code = run_cli(main18, ["--raw_dir", str(bad), "--out_dir", str(tmp_path / "o"), "--split", "x=1"])
    assert code == 2


def test_endovis18_missing_paths(raw18, tmp_path, capsys):
    assert run_cli(main18, ["--raw_dir", str(raw18), "--out_dir", str(tmp_path / "o"), "--split", "x=8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: missing raw folder") and "seq_8" in err and err.count("\n") == 1
    partial = tmp_path / "partial"
    _make_seq18(partial, 4)
    shutil.rmtree(partial / "seq_4" / "labels")
    with pytest.raises(UserError, match="seq_4/labels"):
        prepare_endovis18(partial, tmp_path / "o", splits=["x=4"])


def test_endovis18_isinet_instrument_masks(raw18, tmp_path):
    isinet = tmp_path / "isinet"
    folder = isinet / "seq_2" / "instrument_labels"
    a = np.zeros((H18, W18), np.uint8)
    a[0:4, 0:4] = 255
    b = np.zeros((H18, W18), np.uint8)
    b[6:10, 6:10] = 1
    _png(folder / "frame000_class2_inst0.png", a)
    _png(folder / "frame000_class4_inst0.png", b)
    _png(folder / "frame001_class4_inst1.png", a)
    prepare_endovis18(raw18, tmp_path / "t", splits=["v=2"], objects="instrument_type", isinet_root=isinet)
    first = read_label_png(tmp_path / "t" / "v" / "Annotations" / "seq_2" / "00000.png")
    second = read_label_png(tmp_path / "t" / "v" / "Annotations" / "seq_2" / "00001.png")
    assert first[1, 1] == 2 and first[7, 7] == 4 and second[1, 1] == 4 and second[7, 7] == 0
    prepare_endovis18(raw18, tmp_path / "i", splits=["v=2"], objects="instrument_instance", isinet_root=isinet)
    first = read_label_png(tmp_path / "i" / "v" / "Annotations" / "seq_2" / "00000.png")
    second = read_label_png(tmp_path / "i" / "v" / "Annotations" / "seq_2" / "00001.png")
    assert first[1, 1] == 1 and first[7, 7] == 2 and second[1, 1] == 3
    with pytest.raises(UserError, match="isinet/seq_5"):
        prepare_endovis18(raw18, tmp_path / "x", splits=["v=5"], objects="instrument_type", isinet_root=isinet)
