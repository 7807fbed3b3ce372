"""The README's correction loop, as written: predict -> correct in the annotator (headless
Chromium) -> export -> evaluate, each a real CLI in a subprocess; and ``--masks`` taking a
predict_video.py output root."""

from __future__ import annotations

import logging
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from data.mask_io import read_label_png, write_label_png
from inference.annotator import open_annotator
from tests.annotator_helpers import PredictorCache, write_ground_truth
from tests.browser import canvas_xy, find_browser, launch
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CORRECTED_FRAME = 8
OBJ_1_ON_FRAME_8 = (60.0, 38.0)  # tests.conftest: object 1's centre is (20 + 5t, 30 + t)


def readme_loop_commands():
    """The bash block of the README's Annotate section that runs predict_video.py, as argv lists."""
    section = (REPO / "README.md").read_text().split("\n## Annotate\n", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        if "predict_video.py" in block:
            return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    raise AssertionError("no predict -> annotate -> evaluate block in the README's Annotate section")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_mp4(frames_dir: Path, path: Path) -> None:
    import cv2

    frames = sorted(frames_dir.glob("*.jpg"))
    h, w = cv2.imread(str(frames[0])).shape[:2]
    path.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()


@pytest.fixture()
def user_folder(tmp_path, two_object_video, mini_checkpoint):
    """What the README's commands expect to find where the user runs them."""
    from models import build_model, save_checkpoint

    video_dir, gt_masks = two_object_video
    _write_mp4(video_dir, tmp_path / "samples" / "surgery.mp4")
    model = build_model(config="mini", checkpoint=str(mini_checkpoint), memory="tsms")
    save_checkpoint(tmp_path / "checkpoints" / "tsms_sam2_best.pth", model, model.tsms_config)  # embeds its config
    write_ground_truth(tmp_path / "ground_truth", "surgery", gt_masks)
    (tmp_path / "first_frame.png").write_bytes((tmp_path / "ground_truth" / "surgery" / "00000.png").read_bytes())
    return tmp_path


def _run(argv, cwd, what):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def _first_line(process, timeout: float) -> str:
    lines = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def _correct_in_the_page(url):
    """One correction of object 1 on frame 8, track forward, Export: what a user does in step 2."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=60000)
        assert page.locator("#objects li").count() == 2  # the predicted objects, loaded from --masks
        for _ in range(CORRECTED_FRAME):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(f"() => document.getElementById('frame-label').textContent === '{CORRECTED_FRAME} / 13'")
        page.keyboard.press("1")
        page.mouse.click(*canvas_xy(page, *OBJ_1_ON_FRAME_8))
        page.wait_for_function("() => window.annotator.latencies.length >= 1", timeout=60000)
        page.keyboard.press("t")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('tracked 6 frames')", timeout=120000)
        page.click("#export")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('exported to')", timeout=120000)
        browser.close()
    assert not errors, errors


def _printed_dice(stdout: str) -> float:
    """Mean Dice across objects (a fraction) from evaluate.py's table: the first cell of its overall row."""
    header = next(line for line in stdout.splitlines() if "objects" in line and "frames" in line)
    assert header.split()[2].lower() == "dice", header
    match = re.search(r"^overall, across objects\s+\d+\s+\d+\s+([0-9.]+) ±", stdout, re.M)
    assert match, stdout
    return float(match.group(1)) / 100


def test_readme_predict_correct_export_evaluate(user_folder):
    find_browser()  # no browser: one line on how to get one, before anything runs
    commands = readme_loop_commands()
    scripts = [argv[1] for argv in commands]
    assert scripts == ["inference/predict_video.py", "inference/annotate.py", "eval/evaluate.py", "eval/evaluate.py"]
    assert all(argv[0] == "python" for argv in commands)
    real = [[sys.executable, str(REPO / argv[1])] + argv[2:] for argv in commands]  # the user's cwd is user_folder
    results, annotations = user_folder / "results" / "surgery", user_folder / "annotations" / "surgery"

    _run(real[0], user_folder, "predict_video.py")
    frames = [f"{t:05d}.png" for t in range(14)]
    assert sorted(p.name for p in results.glob("*.png")) == frames
    predicted = [read_label_png(results / f) for f in frames]

    port = _free_port()  # the only change to the README's command: not the default port 8765
    log_path = user_folder / "annotate.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(real[1] + ["--port", str(port)], cwd=user_folder, stdout=subprocess.PIPE,
                                  stderr=log, text=True)
    try:
        line = _first_line(server, timeout=180)  # "annotating surgery (14 frames): open http://...", or "" on error
        assert f"open http://127.0.0.1:{port}/" in line, f"annotate.py: {line}{log_path.read_text()}"
        _correct_in_the_page(f"http://127.0.0.1:{port}/")
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
        finally:
            server.stdout.close()
    annotate_log = log_path.read_text()
    assert server.returncode == 0, annotate_log
    assert f"opening {Path('results', 'surgery')}" in annotate_log, annotate_log  # says which folder it opened

    corrected = [read_label_png(annotations / f) for f in frames]
    for t in range(CORRECTED_FRAME):  # the correction re-tracked forward from frame 8 only
        np.testing.assert_array_equal(corrected[t], predicted[t])
    changed = [int(((corrected[t] == 1) != (predicted[t] == 1)).sum()) for t in range(CORRECTED_FRAME, 14)]
    assert sum(changed) > 0, "the correction changed nothing"
    for t in range(CORRECTED_FRAME, 14):  # object 2 was not re-tracked: it keeps its pixels wherever object 1 is not
        keep = (corrected[t] != 1) & (predicted[t] != 1)
        np.testing.assert_array_equal(corrected[t][keep] == 2, predicted[t][keep] == 2)

    from eval import EvaluationConfig, evaluate_predictions

    dice = []
    for argv, pred in zip(real[2:], (results.parent, annotations.parent)):
        printed = _printed_dice(_run(argv, user_folder, "evaluate.py").stdout)
        expected = evaluate_predictions(EvaluationConfig(pred, user_folder / "ground_truth", workers=1, progress=False))
        assert printed == pytest.approx(expected.across_objects["dice"].mean, abs=5e-5)  # it scored that folder
        dice.append(printed)
    print(f"\nDice: predicted {dice[0]:.4f}, corrected {dice[1]:.4f}; object-1 pixels changed on frames 8-13: {changed}")


def test_masks_takes_an_output_root_or_the_videos_folder(two_object_video, mini_checkpoint, tmp_path, caplog):
    """predict_video.py writes <root>/<video>/; --masks takes the root as well as <root>/<video>."""
    video_dir, gt_masks = two_object_video
    root = write_ground_truth(tmp_path / "results", "clip", gt_masks)  # the layout predict_video.py writes
    (root / "other_video").mkdir()
    predictors = PredictorCache(mini_checkpoint)
    for n, masks_dir in enumerate([root, root / "clip"]):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="inference.annotator"):
            state = open_annotator(video_dir, predictors, tmp_path / f"out{n}", masks_dir=masks_dir)
        try:
            assert sorted(state.objects) == [1, 2] and sorted(state.loaded_ids) == [1, 2]
            for t in range(14):
                np.testing.assert_array_equal(state.store.labels(t) == 1, gt_masks[1][t])
        finally:
            state.close()
        opened = [r.getMessage() for r in caplog.records if "opening" in r.getMessage()]
        assert len(opened) == 1 and opened[0].endswith(str(root / "clip")), opened

    # a root of other videos only: one line that says so
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "video_0001").mkdir(parents=True)
    write_label_png(elsewhere / "video_0001" / "00000.png", np.zeros((96, 128), np.uint8))
    with pytest.raises(UserError, match=r"has no clip/ folder and no masks of its own \(it holds video_0001\)"):
        open_annotator(video_dir, predictors, tmp_path / "out9", masks_dir=elsewhere)
    assert not (tmp_path / "out9").exists()  # refused before anything is written


def test_rerunning_the_correct_command_resumes_the_corrections(two_object_video, mini_checkpoint, tmp_path, caplog):
    """Step 2 run again on the same --output_dir (after Ctrl-C) shows the corrected export,
    not the predictions of --masks over it (an Export would then have written them back)."""
    from inference.annotator.export import export

    video_dir, gt_masks = two_object_video
    shifted = {obj_id: np.roll(m, 6, axis=2) for obj_id, m in gt_masks.items()}  # "predictions" to correct
    root = write_ground_truth(tmp_path / "results", "clip", shifted)
    predictors = PredictorCache(mini_checkpoint)
    state = open_annotator(video_dir, predictors, tmp_path / "annotations", masks_dir=root)
    state.add_point(1, CORRECTED_FRAME, *OBJ_1_ON_FRAME_8)
    state.start_tracking("forward", [1])
    state.wait()
    export(state)
    corrected = [state.store.labels(t).copy() for t in range(14)]
    state.close()
    predicted = [read_label_png(root / "clip" / f"{t:05d}.png") for t in range(14)]
    assert sum(not np.array_equal(c, p) for c, p in zip(corrected, predicted)) == 14 - CORRECTED_FRAME

    with caplog.at_level(logging.WARNING, logger="inference.annotator"):
        again = open_annotator(video_dir, predictors, tmp_path / "annotations", masks_dir=root)
    try:
        for t in range(14):
            np.testing.assert_array_equal(again.store.labels(t), corrected[t])
    finally:
        again.close()
    assert any("is not loaded again" in r.getMessage() for r in caplog.records)
