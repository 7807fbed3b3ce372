"""The annotator page in a real headless Chromium (found by tests/browser.py, driven by Playwright):
click, box, track, correct one object, export, and the pixels of a screenshot."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from inference.annotator import open_annotator
from tests.annotator_helpers import BOX_2, CLICK_1, PredictorCache, write_ground_truth, serving
from tests.browser import canvas_xy, find_browser, launch

OBJ_2_ON_FRAME_8 = (76.0, 57.0)  # tests.conftest: centre (100 - 3t, 65 - t)


@pytest.fixture()
def server(two_object_video, mini_checkpoint, tmp_path):
    find_browser()  # no browser: one line on how to get one, before the model is built
    state = open_annotator(two_object_video[0], PredictorCache(mini_checkpoint), tmp_path / "out")
    with serving(state) as url:
        yield state, url
    state.close()


def _prompts_done(page, n):
    page.wait_for_function(f"() => window.annotator.latencies.length >= {n}", timeout=30000)  # a function: no eval under the CSP


def _wait_status(page, text):
    page.wait_for_function(f"() => document.getElementById('status').textContent.includes({text!r})", timeout=60000)


def _dice_vs_predict_video(state, two_object_video, checkpoint, tmp_path):
    """Mean Dice (eval/evaluate.py's scoring) of the export and of predict_video.py given the
    prompts the browser made."""
    import json

    from eval import EvaluationConfig, evaluate_predictions
    from inference.predict_video import main as predict_main

    video_dir, gt_masks = two_object_video
    click, box = state.prompts[(1, 0)], state.prompts[(2, 0)]
    (tmp_path / "p.json").write_text(json.dumps({"prompts": [
        {"obj_id": 1, "frame": 0, "points": [[x, y, lab] for (x, y), lab in zip(click.points, click.labels)]},
        {"obj_id": 2, "frame": 0, "box": box.box}]}))
    assert predict_main(["--video_path", str(video_dir), "--checkpoint", str(checkpoint), "--model_cfg", "mini",
                         "--memory", "tsms", "--prompts", str(tmp_path / "p.json"),
                         "--output_dir", str(tmp_path / "pred"), "--quiet"]) == 0
    gt = write_ground_truth(tmp_path / "gt", "clip", gt_masks)
    return [evaluate_predictions(EvaluationConfig(d, gt, workers=1, progress=False)).across_objects["dice"].mean
            for d in (state.output_dir, tmp_path / "pred")]


def test_click_box_track_correct_export_in_chromium(server, two_object_video, mini_checkpoint, tmp_path, restore_logging):
    from playwright.sync_api import sync_playwright

    state, url = server
    video_dir, gt_masks = two_object_video
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=30000)

        page.mouse.click(*canvas_xy(page, *CLICK_1))  # object 1 is created by the first click
        _prompts_done(page, 1)
        assert (state.store.labels(0) == 1).any() and state.prompts[(1, 0)].points == [[pytest.approx(CLICK_1[0], abs=1), pytest.approx(CLICK_1[1], abs=1)]]

        page.click("#add-object")
        page.wait_for_selector("#objects li.active[data-id='2']")
        page.mouse.move(*canvas_xy(page, BOX_2[0], BOX_2[1]))
        page.mouse.down()
        page.mouse.move(*canvas_xy(page, BOX_2[2], BOX_2[3]), steps=5)
        page.mouse.up()
        _prompts_done(page, 2)
        box = state.prompts[(2, 0)].box
        assert box is not None and np.allclose(box, BOX_2, atol=1.5)

        page.click("#track-forward")
        _wait_status(page, "tracked 14 frames")
        assert all(state.store.has(t) for t in range(14))
        page.click("#export")
        _wait_status(page, "exported to")
        dice_ours, dice_predict = _dice_vs_predict_video(state, two_object_video, mini_checkpoint, tmp_path)
        assert dice_ours == pytest.approx(dice_predict, abs=1e-12)
        page.evaluate("document.getElementById('status').textContent = ''")

        page.keyboard.press("Shift+ArrowLeft")  # tracking left the page on frame 13
        page.keyboard.press("Shift+ArrowLeft")
        assert page.text_content("#frame-label") == "0 / 13"
        page.keyboard.press("Shift+ArrowRight")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        assert page.text_content("#frame-label") == "8 / 13"
        before = [state.store.labels(t) == 1 for t in range(14)]
        page.keyboard.press("2")
        page.mouse.click(*canvas_xy(page, *OBJ_2_ON_FRAME_8))
        _prompts_done(page, 3)
        assert (2, 8) in state.prompts
        page.wait_for_function("() => (document.querySelector(\"#objects li[data-id='2'] .retrack\") || {}).textContent"
                               " === '\u27f3 8'")  # marked for re-tracking from frame 8
        assert page.query_selector("#objects li[data-id='1'] .retrack") is None
        page.click("#track-forward")
        _wait_status(page, "tracked 6 frames")
        assert state.job.obj_ids == [2]
        for t in range(14):
            np.testing.assert_array_equal(state.store.labels(t) == 1, before[t])

        flagged = sorted({f for t in state.timeline()["objects"].values() for f in t["flagged"] if f > 8})
        page.keyboard.press("n")
        if flagged:
            page.wait_for_function(f"() => document.getElementById('frame-label').textContent === '{flagged[0]} / 13'")
        else:
            _wait_status(page, "no flagged frame")

        page.click("#export")
        _wait_status(page, "exported to")
        assert sorted(p.name for p in (state.output_dir / "clip").iterdir()) == sorted(
            [f"{t:05d}.png" for t in range(14)] + [".annotator_export.json"])
        assert page.query_selector("#objects .retrack") is None  # tracked: nothing left to re-track
        assert (state.output_dir / "coco" / "clip.json").is_file() and (state.output_dir / "overlays" / "clip.mp4").is_file()

        page.keyboard.press("Home")
        page.wait_for_function("() => document.getElementById('frame-label').textContent === '0 / 13'")
        page.wait_for_timeout(300)
        shot = tmp_path / "annotator.png"
        page.locator("#canvas").screenshot(path=str(shot))
        if os.environ.get("ANNOTATOR_SCREENSHOT"):  # docs/annotator.png is made this way
            page.screenshot(path=os.environ["ANNOTATOR_SCREENSHOT"])
        latencies = page.evaluate("window.annotator.latencies")
        browser.close()
    assert not errors, errors
    print(f"\nclick-to-mask latency (ms, mini model, CPU): {[round(x) for x in latencies]}")

    # pixels: the object-1 colour is on the instrument, the plain frame where no mask is
    img = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    frame = np.asarray(Image.open(video_dir / "00000.jpg").convert("RGB")).astype(float)
    labels = state.store.labels(0)
    scale = min(img.shape[0] / frame.shape[0], img.shape[1] / frame.shape[1])  # object-fit: contain
    oy, ox = (img.shape[0] - frame.shape[0] * scale) / 2, (img.shape[1] - frame.shape[1] * scale) / 2

    def shown(y, x):
        return img[int(oy + (y + 0.5) * scale), int(ox + (x + 0.5) * scale)]
    alpha = 140 / 255
    red = np.array([128, 0, 0])
    from scipy.ndimage import binary_erosion

    on_instrument = np.argwhere(binary_erosion(gt_masks[1][0] & (labels == 1), iterations=2))
    away = np.hypot(on_instrument[:, 1] - CLICK_1[0], on_instrument[:, 0] - CLICK_1[1]) > 5  # not under the click dot
    on_instrument = on_instrument[away]
    assert len(on_instrument) > 0, "no object-1 mask on the instrument"
    y, x = on_instrument[len(on_instrument) // 2]
    expected = (1 - alpha) * frame[y, x] + alpha * red
    np.testing.assert_allclose(shown(y, x), expected, atol=20)
    ys, xs = np.nonzero(labels == 0)
    far = np.argmax((ys - CLICK_1[1]) ** 2 + (xs - CLICK_1[0]) ** 2)
    by, bx = ys[far], xs[far]
    np.testing.assert_allclose(shown(by, bx), frame[by, bx], atol=20)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["annotator.png"] and img.std() > 10  # not blank
