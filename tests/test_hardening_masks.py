"""Issue 13: one label-PNG reader and one frame sort for training, inference and evaluation;
file permissions; plain names and the inside-the-root check."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eval.masks
import inference.prompts
from data.mask_io import list_frames, natural_key, read_label_png, write_label_png
from data.vos_index import scan_vos_root
from eval.masks import scan_video
from inference.prompts import masks_from_label_png, prompts_from_json
from inference.video_sources import ImageFolderSource
from utils.errors import UserError
from utils.io import atomic_dir, atomic_write, inside, plain_name


def _png16(path: Path, labels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint16)).save(path)  # mode I;16
    return path


def _two_objects(a: int, b: int) -> np.ndarray:
    labels = np.zeros((8, 8), np.int64)
    labels[:4, :4], labels[4:, 4:] = a, b
    return labels


# --------------------------------------------------------------------------- one reader


def test_16bit_ids_256_and_257_are_refused_naming_the_file_everywhere(tmp_path):
    png = _png16(tmp_path / "Annotations" / "vid" / "00000.png", _two_objects(256, 257))
    with Image.open(png) as img:
        assert img.mode == "I;16"
    # before: astype(uint8) wrapped 256 -> 0 and 257 -> 1, one object vanished into the background
    with pytest.raises(UserError, match=r"00000\.png: mask holds object id 257"):
        read_label_png(png)
    with pytest.raises(UserError, match="00000.png"):  # inference prompts
        masks_from_label_png(png)
    video = scan_video(png.parent)  # evaluation
    with pytest.raises(UserError, match="object id 257"):
        video.load("00000")
    (tmp_path / "JPEGImages" / "vid").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "JPEGImages" / "vid" / "00000.jpg")
    record = scan_vos_root(tmp_path)[0]  # training
    with pytest.raises(UserError, match="object id 257"):
        record.load_label(0)


def test_16bit_ids_below_256_read_as_the_same_ids_as_palette(tmp_path):
    labels = _two_objects(7, 200)
    _png16(tmp_path / "a.png", labels)
    write_label_png(tmp_path / "b.png", labels)
    Image.fromarray((labels > 0)).save(tmp_path / "c.png")  # 1-bit
    assert np.array_equal(read_label_png(tmp_path / "a.png"), labels.astype(np.uint8))
    assert np.array_equal(read_label_png(tmp_path / "b.png"), labels.astype(np.uint8))
    assert set(np.unique(read_label_png(tmp_path / "c.png")).tolist()) == {0, 1}
    assert [p.obj_id for p in masks_from_label_png(tmp_path / "a.png")] == [7, 200]


def test_other_readers_are_gone_and_the_alias_is_the_one_function():
    assert not hasattr(eval.masks, "read_id_mask")
    assert getattr(eval.masks, "natural_key", natural_key) is natural_key
    assert inference.prompts.read_label_png is read_label_png


def test_rgb_annotation_fails_at_dataset_indexing_naming_the_file(tmp_path):
    (tmp_path / "JPEGImages" / "v").mkdir(parents=True)
    (tmp_path / "Annotations" / "v").mkdir(parents=True)
    for t in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "JPEGImages" / "v" / f"{t:05d}.jpg")
        write_label_png(tmp_path / "Annotations" / "v" / f"{t:05d}.png", np.zeros((8, 8), np.uint8))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "Annotations" / "v" / "00002.png")  # RGB
    with pytest.raises(UserError, match=r"Annotations/v/00002\.png: mask has mode RGB"):
        scan_vos_root(tmp_path)  # before: only a ValueError traceback inside a DataLoader worker


@pytest.mark.parametrize("folders, message", [
    (("0", "1"), "per-object folder 0 is the background"),
    (("7", "007"), "two per-object folders name object 7"),
])
def test_per_object_folder_0_and_duplicate_ids_are_refused(tmp_path, folders, message):
    for obj in folders:
        (tmp_path / "vid" / obj).mkdir(parents=True)
        Image.fromarray(np.full((4, 4), 255, np.uint8)).save(tmp_path / "vid" / obj / "00000.png")
    with pytest.raises(UserError, match=message):  # before: 0 was scored as an object, 7/007 merged silently
        scan_video(tmp_path / "vid")


# --------------------------------------------------------------------------- one sort


def test_natural_key_orders_frames_and_videos_by_number():
    names = ["frame10.jpg", "frame9.jpg", "frame100.jpg", "2.jpg", "10.jpg", "1.jpg"]
    assert sorted(names, key=natural_key) == ["1.jpg", "2.jpg", "10.jpg", "frame9.jpg", "frame10.jpg", "frame100.jpg"]


def test_frames_with_one_stem_and_two_extensions_are_refused(tmp_path):
    for ext in ("jpg", "png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"00000.{ext}")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "00001.jpg")
    # before: both frames were named 00000 and the second mask overwrote the first
    with pytest.raises(UserError, match=r"00000\.jpg and 00000\.png are two frames with one name"):
        ImageFolderSource(tmp_path)


def test_non_numeric_frame_names_warn_with_the_order_used(tmp_path, caplog):
    for name in ("b10", "b9", "a1"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{name}.jpg")
    with caplog.at_level(logging.WARNING, logger="data.mask_io"):
        frames = list_frames(tmp_path)
    assert [p.stem for p in frames] == ["a1", "b9", "b10"]
    assert "not all numbers; using natural order" in caplog.text and "a1.jpg, b9.jpg, b10.jpg" in caplog.text


# --------------------------------------------------------------------------- prompts JSON schema


def _prompts(tmp_path: Path, entry) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"prompts": [entry]}))
    return path


@pytest.mark.parametrize("entry, message", [
    ({"obj_id": 1, "frmae": 3, "box": [0, 0, 4, 4]}, "unknown key.*'frmae'"),
    ({"obj_id": 1, "pionts": [[1, 1, 1]]}, "unknown key.*'pionts'"),
    ({"obj_id": 1, "points": [[1, 1, 2]]}, "has label 2; labels are 1"),
    ({"obj_id": 1, "points": [[1, 1, True]]}, "has label True"),
    ({"obj_id": 1.7, "box": [0, 0, 4, 4]}, "'obj_id' must be an integer, got 1.7"),
    ({"obj_id": "1", "box": [0, 0, 4, 4]}, "'obj_id' must be an integer"),
    ({"obj_id": True, "box": [0, 0, 4, 4]}, "'obj_id' must be an integer, got True"),
    ({"obj_id": 1, "frame": 2.5, "box": [0, 0, 4, 4]}, "'frame' must be an integer, got 2.5"),
    ({"obj_id": 1, "box": [0, 0, 4]}, "'box' must be 4 numbers"),
])
def test_prompts_json_schema(tmp_path, entry, message):
    # before: unknown keys were ignored, 2.5 became frame 2, label 2 and True passed through
    with pytest.raises(UserError, match=message):
        prompts_from_json(_prompts(tmp_path, entry))


def test_prompts_json_unknown_top_level_key(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"prompts": [{"obj_id": 1, "box": [0, 0, 4, 4]}], "promts": []}))
    with pytest.raises(UserError, match="unknown top-level key.*'promts'"):
        prompts_from_json(path)


def test_prompts_json_valid_entry_still_reads(tmp_path):
    [p] = prompts_from_json(_prompts(tmp_path, {"obj_id": 3, "frame": 2, "points": [[1.5, 2, 1], [3, 4, 0]]}))
    assert (p.obj_id, p.frame_idx, p.points, p.labels) == (3, 2, [[1.5, 2.0], [3.0, 4.0]], [1, 0])


# --------------------------------------------------------------------------- files we write


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_writes_get_umask_permissions(tmp_path, umask_022):
    with atomic_write(tmp_path / "a.json") as f:
        f.write("{}")
    with atomic_dir(tmp_path / "d") as d:
        (d / "x").write_text("x")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # before: 0o600
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755  # before: 0o700


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "a\\b"])
def test_plain_name_refuses(name):
    with pytest.raises(UserError, match="not a plain name"):
        plain_name(name, "video name")


def test_inside_refuses_paths_resolving_outside(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "out", tmp_path / "out" / "v" / "1.png")
    for bad in (tmp_path / "out" / ".." / "x", tmp_path / "out" / "link" / "x"):
        with pytest.raises(UserError, match="outside the output folder"):
            inside(tmp_path / "out", bad)
