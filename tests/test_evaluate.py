"""eval/evaluate.py end to end on small synthetic folders, and every bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eval.evaluate as cli
from eval import EvaluationConfig, evaluate_predictions
from utils.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
HW = (40, 56)
FRAMES = 4


@pytest.fixture(autouse=True)
def _keep_pytest_logging(monkeypatch):
    """main() reconfigures the root logger; inside pytest that would steal its handlers."""
    monkeypatch.setattr(cli, "setup_logging", lambda *a, **k: None)


def save_ids(path: Path, labels: np.ndarray, mode: str = "P") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))  # mode L
    if mode == "P":
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [128] * 756)  # now P, same values
    elif mode != "L":
        image = image.convert(mode)
    image.save(path)


def two_objects(t: int, hw=HW) -> np.ndarray:
    labels = np.zeros(hw, np.uint8)
    labels[5:20, 4 + t:20 + t] = 1
    labels[22:35, 30:50 - t] = 2
    return labels


def write_video(root: Path, video: str, frames, mode: str = "P") -> None:
    for t, labels in enumerate(frames):
        save_ids(root / video / f"{t:05d}.png", labels, mode)


@pytest.fixture
def dataset(tmp_path):
    """Videos a and b, objects 1 and 2 in every frame. Predictions: a perfect; in b object 2
    is never predicted. Per-object Dice: a1=a2=b1=1, b2=0."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    frames = [two_objects(t) for t in range(FRAMES)]
    for video in ("a", "b"):
        write_video(gt, video, frames)
    write_video(pred, "a", frames)
    write_video(pred, "b", [np.where(f == 2, 0, f) for f in frames])
    return gt, pred


def run(argv, capsys):
    code = run_cli(cli.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---------------------------------------------------------------------- happy path


def test_cli_end_to_end_writes_json_csv_plot(dataset, tmp_path, capsys):
    gt, pred = dataset
    assert Image.open(gt / "a" / "00000.png").mode == "P"
    out, table, plot = tmp_path / "o" / "results.json", tmp_path / "o" / "objects.csv", tmp_path / "o" / "dice.png"
    code, stdout, _ = run(["--pred_dir", pred, "--gt_dir", gt, "--out", out, "--csv", table, "--plot", plot,
                           "--workers", "2"], capsys)
    assert code == 0
    result = json.loads(out.read_text())
    overall = result["overall"]
    assert (overall["n_videos"], overall["n_objects"], overall["n_frames"]) == (2, 4, 2 * FRAMES)
    # across objects: [1, 1, 1, 0]; across videos: [1, 0.5]
    assert overall["across_objects"]["dice"] == pytest.approx({"mean": 0.75, "std": np.sqrt(0.1875), "n": 4})
    assert overall["across_videos"]["dice"] == pytest.approx({"mean": 0.75, "std": 0.25, "n": 2})
    assert "objects" in overall["across_objects"]["description"]
    b = result["videos"]["b"]
    assert b["objects"]["2"]["dice"] == 0.0 and b["objects"]["2"]["f"] == 0.0
    assert b["objects"]["2"]["per_frame"]["j"] == [0.0] * FRAMES
    assert b["mean_and_std_across_objects"]["dice"] == pytest.approx({"mean": 0.5, "std": 0.5, "n": 2})
    assert b["frames"] == [f"{t:05d}" for t in range(FRAMES)]
    assert result["overall"]["class_metrics"] is None
    rows = list(csv.DictReader(table.open()))
    assert [(r["video"], r["object_id"], float(r["dice"])) for r in rows] == [
        ("a", "1", 1.0), ("a", "2", 1.0), ("b", "1", 1.0), ("b", "2", 0.0)]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "overall, across objects" in stdout and "overall, across videos" in stdout
    assert " 75.00 ± 43.30" in stdout and " 75.00 ± 25.00" in stdout
    assert not list(out.parent.glob(".*.tmp"))


def test_script_runs_from_another_directory(dataset, tmp_path):
    gt, pred = dataset
    proc = subprocess.run(
        [sys.executable, str(REPO / "eval" / "evaluate.py"), "--pred_dir", str(pred), "--gt_dir", str(gt),
         "--out", "r.json", "--workers", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["overall"]["n_objects"] == 4


def test_function_api_matches_metric_functions(tmp_path):
    from eval.metrics import binary_mask_scores

    rng = np.random.default_rng(0)
    gt_frames = [two_objects(t) for t in range(FRAMES)]
    pred_frames = [np.roll(f, int(rng.integers(-3, 4)), axis=1) for f in gt_frames]
    write_video(tmp_path / "gt", "v", gt_frames)
    write_video(tmp_path / "pred", "v", pred_frames)
    result = evaluate_predictions(EvaluationConfig(tmp_path / "pred", tmp_path / "gt", workers=1, progress=False))
    for obj in result.objects:
        expected = np.array([binary_mask_scores(p == obj.object_id, g == obj.object_id)
                             for p, g in zip(pred_frames, gt_frames)])
        np.testing.assert_allclose(obj.frames["dice"], expected[:, 0])
        np.testing.assert_allclose(obj.frames["j"], expected[:, 1])
        np.testing.assert_allclose(obj.frames["f"], expected[:, 2])
        assert obj.scores["jf"] == pytest.approx((expected[:, 1].mean() + expected[:, 2].mean()) / 2)


def test_skip_first_and_last_and_filters(dataset, tmp_path):
    gt, pred = dataset
    # object 3 exists only in the (skipped) first GT frame: it is still an object, scored
    # 1 on the later frames where it is absent from both sides.
    first = two_objects(0)
    first[36:39, 2:6] = 3
    save_ids(gt / "a" / "00000.png", first)
    cfg = dict(workers=1, progress=False)
    result = evaluate_predictions(EvaluationConfig(pred, gt, skip_first=True, skip_last=True, **cfg))
    a = result.videos[0]
    assert a.frames == ["00001", "00002"]
    assert [o.object_id for o in a.objects] == [1, 2, 3]
    assert a.objects[2].scores["dice"] == 1.0
    only = evaluate_predictions(EvaluationConfig(pred, gt, videos=["b"], objects=[2], **cfg))
    assert [v.name for v in only.videos] == ["b"]
    assert [(o.video, o.object_id, o.scores["dice"]) for o in only.objects] == [("b", 2, 0.0)]


def test_class_metrics_with_class_map(dataset, tmp_path, capsys):
    gt, pred = dataset
    class_map = tmp_path / "classes.json"
    class_map.write_text(json.dumps({"1": "grasper", "2": "scissors"}))
    out = tmp_path / "r.json"
    code, stdout, _ = run(["--pred_dir", pred, "--gt_dir", gt, "--class_map", class_map, "--out", out,
                           "--workers", "1"], capsys)
    assert code == 0
    cm = json.loads(out.read_text())["overall"]["class_metrics"]
    # a: both classes IoU 1 in every frame; b: grasper 1, scissors 0 (missed) in every frame.
    assert cm["challenge_iou"] == pytest.approx(0.75)
    assert cm["isinet_iou"] == pytest.approx(0.75)
    assert cm["per_class_iou"] == pytest.approx({"grasper": 1.0, "scissors": 0.5})
    assert cm["mciou"] == pytest.approx(0.75)
    assert "Challenge IoU 75.00" in stdout
    # identity: ids are classes "1" and "2"; same numbers
    code, _, _ = run(["--pred_dir", pred, "--gt_dir", gt, "--class_map", "identity", "--out", out,
                      "--workers", "1"], capsys)
    assert code == 0
    assert json.loads(out.read_text())["overall"]["class_metrics"]["per_class_iou"] == {"1": 1.0, "2": 0.5}


def test_per_video_class_map_and_unmapped_id(dataset, tmp_path, capsys):
    gt, pred = dataset
    per_video = tmp_path / "pv.json"
    per_video.write_text(json.dumps({"a": {"1": "x", "2": "x"}, "*": {"1": "x", "2": "y"}}))
    result = evaluate_predictions(EvaluationConfig(pred, gt, class_map=str(per_video), workers=1, progress=False))
    assert result.videos[0].class_metrics["per_class_iou"] == {"x": 1.0}
    assert result.videos[1].class_metrics["per_class_iou"] == {"x": 1.0, "y": 0.0}
    partial_map = tmp_path / "partial.json"
    partial_map.write_text(json.dumps({"1": "x"}))
    code, _, err = run(["--pred_dir", pred, "--gt_dir", gt, "--class_map", partial_map, "--workers", "1"], capsys)
    assert_one_line_error(code, err, "no class for object id 2")


def test_per_object_folders_score_like_palette(dataset, tmp_path):
    gt, pred = dataset
    objects_pred = tmp_path / "pred_objects"
    for video in ("a", "b"):
        for png in sorted((pred / video).glob("*.png")):
            labels = np.array(Image.open(png))
            for obj in (1, 2):
                save_ids(objects_pred / video / str(obj) / png.name, (labels == obj) * 255, "L")
    objects_gt = tmp_path / "gt_objects"
    for png in sorted(gt.glob("*/*.png")):
        labels = np.array(Image.open(png))
        for obj in (1, 2):
            save_ids(objects_gt / png.parent.name / str(obj) / png.name, (labels == obj) * 255, "1")
    cfg = dict(workers=1, progress=False)
    palette = evaluate_predictions(EvaluationConfig(pred, gt, **cfg))
    for pred_dir, gt_dir in ((objects_pred, gt), (objects_pred, objects_gt), (pred, objects_gt)):
        per_object = evaluate_predictions(EvaluationConfig(pred_dir, gt_dir, **cfg))
        assert len(per_object.objects) == 4
        for p, q in zip(palette.objects, per_object.objects):
            assert (p.video, p.object_id, p.scores) == (q.video, q.object_id, q.scores)


def test_grayscale_ids_accepted_and_extra_prediction_frames_ignored(dataset, tmp_path):
    gt, pred = dataset
    write_video(pred, "a", [two_objects(t) for t in range(FRAMES)], mode="L")
    save_ids(pred / "a" / "99999.png", two_objects(0))  # no ground truth for it
    result = evaluate_predictions(EvaluationConfig(pred, gt, workers=1, progress=False))
    assert result.videos[0].summary["dice"].mean == 1.0 and len(result.videos[0].frames) == FRAMES


# ---------------------------------------------------------------------- bad input


def test_missing_directories(dataset, tmp_path, capsys):
    gt, pred = dataset
    code, _, err = run(["--pred_dir", pred], capsys)
    assert_one_line_error(code, err, "--gt_dir")
    code, _, err = run(["--pred_dir", pred, "--gt_dir", tmp_path / "nope"], capsys)
    assert_one_line_error(code, err, "ground-truth directory not found", "nope")
    code, _, err = run(["--pred_dir", tmp_path / "nada", "--gt_dir", gt], capsys)
    assert_one_line_error(code, err, "prediction directory not found", "nada")


def test_missing_video_is_an_error_unless_allowed(dataset, tmp_path, capsys):
    gt, pred = dataset
    write_video(gt, "c", [two_objects(t) for t in range(FRAMES)])
    out = tmp_path / "r.json"
    code, _, err = run(["--pred_dir", pred, "--gt_dir", gt, "--out", out], capsys)
    assert_one_line_error(code, err, "missing from the predictions", "c", "--allow_missing")
    assert not out.exists()
    code, stdout, _ = run(["--pred_dir", pred, "--gt_dir", gt, "--out", out, "--allow_missing", "--workers", "1"],
                          capsys)
    assert code == 0
    c = json.loads(out.read_text())["videos"]["c"]
    assert c["missing_prediction"] is True and c["objects"]["1"]["dice"] == 0.0
    assert "c (no prediction)" in stdout


def test_missing_frame_is_an_error_unless_allowed(dataset, capsys):
    gt, pred = dataset
    (pred / "a" / "00002.png").unlink()
    code, _, err = run(["--pred_dir", pred, "--gt_dir", gt, "--workers", "1"], capsys)
    assert_one_line_error(code, err, "no prediction for frame '00002'")
    result = evaluate_predictions(EvaluationConfig(pred, gt, allow_missing=True, workers=1, progress=False))
    assert result.videos[0].missing_frames == ["00002"]
    assert result.videos[0].objects[0].frames["dice"].tolist() == [1.0, 1.0, 0.0, 1.0]


def test_size_mismatch_names_file_and_sizes(dataset, tmp_path, capsys):
    gt, pred = dataset
    save_ids(pred / "b" / "00001.png", np.zeros((40, 60), np.uint8))
    out = tmp_path / "r.json"
    code, _, err = run(["--pred_dir", pred, "--gt_dir", gt, "--out", out, "--workers", "2"], capsys)
    assert_one_line_error(code, err, "size mismatch", str(pred / "b" / "00001.png"), "60x40", "56x40")
    assert not out.exists()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA"])
def test_colour_or_non_palette_mask_is_refused(dataset, capsys, mode):
    gt, pred = dataset
    save_ids(pred / "a" / "00001.png", two_objects(1), mode)
    code, _, err = run(["--pred_dir", pred, "--gt_dir", gt, "--workers", "1"], capsys)
    assert_one_line_error(code, err, str(pred / "a" / "00001.png"), f"mode {mode}")


def test_empty_ground_truth_dir(dataset, tmp_path, capsys):
    _, pred = dataset
    (tmp_path / "empty_gt").mkdir()
    code, _, err = run(["--pred_dir", pred, "--gt_dir", tmp_path / "empty_gt"], capsys)
    assert_one_line_error(code, err, "is empty")
    (tmp_path / "empty_gt" / "a").mkdir()
    code, _, err = run(["--pred_dir", pred, "--gt_dir", tmp_path / "empty_gt", "--workers", "1"], capsys)
    assert_one_line_error(code, err, "contains no mask PNGs")


def test_unknown_video_and_object_selection(dataset, capsys):
    gt, pred = dataset
    code, _, err = run(["--pred_dir", pred, "--gt_dir", gt, "--videos", "zzz"], capsys)
    assert_one_line_error(code, err, "--videos", "zzz")
    code, _, err = run(["--pred_dir", pred, "--gt_dir", gt, "--objects", "9", "--workers", "1"], capsys)
    assert_one_line_error(code, err, "no ground-truth object with ids [9]")
