"""The annotator as an annotator uses it for an afternoon (issue 23), in a real headless
Chromium (tests/browser.py) driving the page against a live server: typing while tracking,
delete and undo, double-clicks, the export state across a restart, crossing instruments,
boxes past the edge, live progress, the selected object, the `+` key, fps and the favicon.

With ``TSMS_DOCS_SCREENSHOTS=docs/`` the crossing test writes the screenshots of
docs/annotate.md there (only then)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from inference.annotator import open_annotator
from tests.annotator_helpers import BOX_2, CLICK_1, PredictorCache, serving
from tests.browser import canvas_xy, find_browser, launch

SHOTS = os.environ.get("TSMS_DOCS_SCREENSHOTS")


@pytest.fixture(scope="module")
def predictors(mini_checkpoint):
    return PredictorCache(mini_checkpoint)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    find_browser()
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture()
def annotator(two_object_video, predictors, tmp_path):
    """``open(out="out", video=...)`` -> a state (closed at the end of the test)."""
    opened = []

    def _open(out="out", video=None):
        state = open_annotator(video or two_object_video[0], predictors, tmp_path / out)
        opened.append(state)
        return state
    yield _open
    for state in opened:
        with contextlib.suppress(Exception):
            state.close()




@contextlib.contextmanager
def page_on(browser, url):
    page = browser.new_page(viewport={"width": 1000, "height": 620})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=30000)
    try:
        yield page
    finally:
        page.close()
    assert not errors, errors


def slow_tracking(state, seconds_per_frame):
    """Tracking as slow as a long video's, so the page can be watched while it runs."""
    propagate = state.session.propagate

    class Slow:
        def __init__(self, frames):
            self.frames = frames

        def __iter__(self):
            for result in self.frames:
                time.sleep(seconds_per_frame)
                yield result

        def close(self):
            self.frames.close()

    state.session.propagate = lambda *a, **k: Slow(propagate(*a, **k))


def two_objects(state, track=True):
    state.add_object(), state.add_object()
    state.add_point(1, 0, *CLICK_1), state.add_box(2, 0, BOX_2)
    if track:
        state.start_tracking(), state.wait()
        assert state.job.error is None


def wait_status(page, text, timeout=30000):
    page.wait_for_function(f"() => document.getElementById('status').textContent.includes({text!r})", timeout=timeout)


def wait_label(page, text):
    page.wait_for_function(f"() => document.getElementById('frame-label').textContent === {text!r}", timeout=10000)


def prompts_done(page, n):
    page.wait_for_function(f"() => window.annotator.latencies.length >= {n}", timeout=30000)


def canvas_rgb(page):
    """The canvas pixels (video resolution) as an [H, W, 3] array."""
    data = page.evaluate("""() => { const c = document.getElementById('canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
    h, w = page.evaluate("() => [document.getElementById('canvas').height, document.getElementById('canvas').width]")
    return np.array(data, np.uint8).reshape(h, w, 4)[..., :3]


def shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name))


# ------------------------------------------------------------------ work is never lost
def test_typing_a_name_while_tracking_ends_keeps_every_key(annotator, browser):
    state = annotator()
    state.add_object()
    state.add_point(1, 0, *CLICK_1)
    slow_tracking(state, 0.12)
    with serving(state) as url, page_on(browser, url) as page:
        page.click("#track-forward")
        while state.job is None or not state.job.done:
            time.sleep(0.02)
        job = state.job
        name = page.locator("#objects li[data-id='1'] input")
        name.click()
        name.press("Control+a")
        name.type("Frazier tz", delay=40)  # 't' tracks and 'z' undoes if they escape the field
        wait_status(page, "tracked 14 frames")  # the list was refreshed under the typing
        name.type(" suction tz", delay=40)
        assert page.evaluate("() => document.activeElement.title") == "name"
        name.press("Enter")
        page.wait_for_function("() => !document.querySelector('#objects input[data-editing]')", timeout=10000)
    assert state.objects[1].name == "Frazier tz suction tz"
    assert state.job is job and len(state.history) == 1  # no new track, nothing undone


def test_delete_then_undo_brings_the_object_back(annotator, browser):
    state = annotator()
    two_objects(state)
    masks = [state.store.labels(t) for t in range(14)]
    with serving(state) as url, page_on(browser, url) as page:
        page.click("#objects li[data-id='2'] button")
        page.wait_for_selector("#objects li[data-id='2']", state="detached")
        assert 2 not in state.objects and not any((state.store.labels(t) == 2).any() for t in range(14))
        page.keyboard.press("z")
        page.wait_for_selector("#objects li[data-id='2']")
    assert state.prompts[(2, 0)].box == BOX_2 and (1, 0) in state.prompts
    for t in range(14):
        np.testing.assert_array_equal(state.store.labels(t), masks[t])  # its masks, as they were
    assert state.objects[2].name == "object 2" and 2 not in state.dirty


def test_double_click_is_one_point(annotator, browser):
    state = annotator()
    with serving(state) as url, page_on(browser, url) as page:
        page.mouse.dblclick(*canvas_xy(page, *CLICK_1))
        prompts_done(page, 1)
        page.wait_for_timeout(600)  # any further click would have been sent by now
        assert page.evaluate("() => window.annotator.latencies.length") == 1
    assert state.prompts[(1, 0)].points == [[pytest.approx(CLICK_1[0], abs=1), pytest.approx(CLICK_1[1], abs=1)]]


def test_export_state_is_shown_and_work_survives_a_restart(annotator, browser):
    state = annotator()
    two_objects(state)
    with serving(state) as url, page_on(browser, url) as page:
        assert page.text_content("#export-state") == "not exported yet"
        page.click("#export")
        wait_status(page, "exported to")
        page.wait_for_function("() => document.getElementById('export-state').textContent === '\u2713 exported'")
        page.keyboard.press("End")
        wait_label(page, "13 / 13")
        page.mouse.click(*canvas_xy(page, 60, 20))  # work after the export
        prompts_done(page, 1)
        page.wait_for_function("() => document.getElementById('export-state').textContent === 'changes not exported'")
    masks = [state.store.labels(t) for t in range(14)]
    state.close()
    again = annotator()  # a restart on the same folder
    for t in range(14):
        np.testing.assert_array_equal(again.store.labels(t), masks[t])
    with serving(again) as url, page_on(browser, url) as page:
        assert page.text_content("#export-state") == "changes not exported"
        page.click("#export")
        page.wait_for_function("() => document.getElementById('export-state').textContent === '\u2713 exported'")


# ------------------------------------------------------------------ crossing instruments
def test_crossing_click_claims_the_pixel_and_retrack_fixes_both(annotator, browser):
    state = annotator()
    two_objects(state)
    frame = 8
    labels = state.store.labels(frame)
    ys, xs = np.nonzero(labels == 2)
    y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])  # object 2 holds it
    before = {t: state.store.labels(t) for t in range(14)}
    with serving(state) as url, page_on(browser, url) as page:
        for _ in range(frame):
            page.keyboard.press("ArrowRight")
        wait_label(page, f"{frame} / 13")
        page.keyboard.press("1")
        page.wait_for_selector("#objects li.active[data-id='1']")
        page.wait_for_timeout(300)
        shot(page, "annotate-crossing-1-before.png")
        page.mouse.click(*canvas_xy(page, x, y))
        prompts_done(page, 1)
        assert state.store.labels(frame)[y, x] == 1  # the click wins that region on that frame
        page.wait_for_function("() => document.querySelectorAll('#objects .retrack').length === 2")  # both re-track
        assert state.dirty == {1: frame, 2: frame}
        shot(page, "annotate-crossing-2-claimed.png")
        page.click("#track-forward")
        wait_status(page, f"tracked {14 - frame} frames")
        shot(page, "annotate-crossing-3-retracked.png")
    assert state.job.obj_ids == [1, 2] and state.dirty == {}
    assert state.store.labels(frame)[y, x] == 1  # re-tracking keeps the claim on the clicked frame
    moved = [t for t in range(frame + 1, 14) if ((before[t] == 2) & (state.store.labels(t) == 1)).any()]
    assert moved, "re-tracking changed nothing after the clicked frame"  # object 1 took over from object 2 there
    assert all((before[t] == state.store.labels(t)).all() for t in range(frame))  # frames before: untouched


def test_box_dragged_past_the_edge_is_clamped(annotator, browser):
    state = annotator()
    with serving(state) as url, page_on(browser, url) as page:
        rect = page.locator("#canvas").bounding_box()
        page.mouse.move(*canvas_xy(page, 100, 60))
        page.mouse.down()
        page.mouse.move(rect["x"] + rect["width"] + 40, rect["y"] + rect["height"] + 40, steps=6)  # off the canvas
        page.mouse.up()  # released outside the canvas
        prompts_done(page, 1)
        plain = canvas_rgb(page)
        page.mouse.move(*canvas_xy(page, 30, 20), steps=4)  # no phantom box follows the pointer
        page.wait_for_timeout(150)
        np.testing.assert_array_equal(canvas_rgb(page), plain)
    assert state.prompts[(1, 0)].box == [pytest.approx(100, abs=1), pytest.approx(60, abs=1), 128.0, 96.0]


# ------------------------------------------------------------------ the page tells what is going on
def test_tracking_progress_is_live_and_the_view_stays_put(annotator, browser):
    state = annotator()
    state.add_object()
    state.add_point(1, 0, *CLICK_1)
    slow_tracking(state, 0.2)
    with serving(state) as url, page_on(browser, url) as page:
        page.keyboard.press("End")
        wait_label(page, "13 / 13")
        page.click("#track-forward")
        wait_status(page, "tracking:")
        page.keyboard.press("Home")  # the user goes back while it runs
        statuses, timelines, labels = set(), set(), set()
        waited = None
        while state.job.running:
            statuses.add(page.text_content("#status"))
            timelines.add(page.evaluate("() => document.querySelector('#timelines canvas').toDataURL()"))
            labels.add(page.text_content("#frame-label"))
            if waited is None and state.job.done > 3:  # a click while tracking: told to wait, at once
                t0 = time.perf_counter()
                page.mouse.click(*canvas_xy(page, 60, 40))
                wait_status(page, "wait for it")
                waited = time.perf_counter() - t0
            page.wait_for_timeout(150)
        wait_status(page, "tracked 14 frames")
        assert page.text_content("#frame-label") == "0 / 13"  # not moved to the last tracked frame
    running = {s for s in statuses if s.startswith("tracking:")}
    assert len(running) >= 2, statuses  # the status moved during the track
    assert len(timelines) >= 3, len(timelines)  # so did the confidence timeline
    assert labels == {"0 / 13"}, labels  # Home stayed home
    assert waited is not None and waited < 1.0, waited
    assert state.prompts.keys() == {(1, 0)}  # the click during tracking did nothing


def test_selected_object_is_outlined(annotator, browser):
    from scipy.ndimage import binary_erosion

    state = annotator()
    two_objects(state, track=False)
    labels = state.store.labels(0)

    def inner_border(obj_id):
        mine = labels == obj_id
        ring = mine & ~binary_erosion(mine, iterations=1)
        yy, xx = np.nonzero(ring)
        far = np.hypot(xx - CLICK_1[0], yy - CLICK_1[1]) > 6  # not under the click dot or the box line
        far &= (np.abs(xx - BOX_2[0]) > 2) & (np.abs(xx - BOX_2[2]) > 2) & (np.abs(yy - BOX_2[1]) > 2) & (np.abs(yy - BOX_2[3]) > 2)
        return yy[far], xx[far]

    white = np.array([255, 255, 255])
    with serving(state) as url, page_on(browser, url) as page:
        page.keyboard.press("1")
        page.wait_for_selector("#objects li.active[data-id='1']")
        page.wait_for_timeout(400)
        img = canvas_rgb(page)
        y1, x1 = inner_border(1)
        y2, x2 = inner_border(2)
        assert len(y1) and len(y2)
        assert (img[y1, x1] == white).all(axis=1).mean() > 0.95  # the selected one: a white outline
        assert (img[y2, x2] == white).all(axis=1).mean() < 0.05  # the other: its own colour
        page.keyboard.press("2")
        page.wait_for_selector("#objects li.active[data-id='2']")
        page.wait_for_timeout(400)
        img = canvas_rgb(page)
        assert (img[y2, x2] == white).all(axis=1).mean() > 0.95
        assert (img[y1, x1] == white).all(axis=1).mean() < 0.05
        width = page.evaluate("() => getComputedStyle(document.querySelector('#objects li.active')).borderTopWidth")
        assert float(width.rstrip("px")) >= 2


def test_plus_key_fps_and_favicon(annotator, browser, two_object_video, tmp_path):
    state = annotator()
    with serving(state) as url, page_on(browser, url) as page:
        page.keyboard.press("+")
        page.wait_for_selector("#objects li.active[data-id='1']", timeout=5000)
        page.keyboard.press("+")
        page.wait_for_selector("#objects li.active[data-id='2']", timeout=5000)
        assert page.evaluate("() => fetch('/favicon.ico').then((r) => r.status)") == 204
        assert "30 fps (a default" in page.text_content("#title")
    assert sorted(state.objects) == [1, 2]
    folder = tmp_path / "clip"
    shutil.copytree(two_object_video[0], folder)
    (folder / "meta.json").write_text(json.dumps({"fps": 12.5}))
    other = annotator("out2", video=folder)
    with serving(other) as url, page_on(browser, url) as page:
        assert page.text_content("#title") == "clip (14 frames, 12.5 fps)"
        info = page.evaluate("() => fetch('/api/info').then((r) => r.json())")
        assert (info["fps"], info["fps_source"]) == (12.5, "meta.json")
