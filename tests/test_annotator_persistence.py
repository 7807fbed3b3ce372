"""The annotator never loses work: exports under a kill, foreign files, tracked masks across
a restart, the folder lock, full and read-only disks, damaged session files, strict API input."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from data.mask_io import read_label_png
from inference.annotator import create_app, open_annotator, publish, session_file, tracked
from inference.annotator.session_file import SESSION_NAME, encode_rle
from tests.annotator_helpers import BOX_2, CLICK_1, PredictorCache, api_client
from utils.errors import UserError, UserErrors

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictors(mini_checkpoint):
    return PredictorCache(mini_checkpoint)


@pytest.fixture()
def opened(two_object_video, predictors, tmp_path):
    """open(out=tmp/out) -> a state; every state opened is closed at the end."""
    states = []

    def _open(out=None, **kw):
        state = open_annotator(two_object_video[0], predictors, out or tmp_path / "out", **kw)
        states.append(state)
        return state

    yield _open
    for state in states:
        state.close()


def _two_objects(state):
    state.add_object("left grasper"), state.add_object()
    state.add_point(1, 0, *CLICK_1)
    state.add_box(2, 0, BOX_2)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _export_files(out: Path) -> dict:
    """Every published export file -> its digest (masks, COCO, overlay)."""
    files = {p: _digest(p) for p in sorted((out / "clip").glob("*.png"))}
    for p in (out / "coco" / "clip.json", out / "overlays" / "clip.mp4"):
        if p.exists():
            files[p] = _digest(p)
    return files


def _assert_consistent(out: Path, has_object_2: bool) -> None:
    """The masks, the COCO file and the overlay are of one export: COCO matches the PNGs,
    the manifest matches the COCO file and the overlay."""
    from pycocotools import mask as mask_utils

    coco = json.loads((out / "coco" / "clip.json").read_text())
    labels = read_label_png(out / "clip" / "00000.png")
    assert len(list((out / "clip").glob("*.png"))) == 14
    assert bool((labels == 2).any()) == has_object_2
    for ann in (a for a in coco["annotations"] if a["image_id"] == 1):
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), labels == ann["track_id"])
    assert {a["track_id"] for a in coco["annotations"]} == ({1, 2} if has_object_2 else {1})
    manifest = json.loads((out / "clip" / publish.MANIFEST).read_text())
    assert manifest["coco"]["sha256"] == _digest(out / "coco" / "clip.json")
    assert manifest["overlay"]["sha256"] == _digest(out / "overlays" / "clip.mp4")
    assert not [p for p in out.iterdir() if p.name.startswith(".clip.export-")]


# ---------------------------------------------------------------------------------------- 1. export under a kill
class _Killed(BaseException):
    """Stands for SIGKILL: no except/cleanup of the export code runs (it catches Exception)."""


KILL_STEPS = ["staged", "committed", "coco published", "overlay published", "old masks moved aside",
              "masks published", "staging retired"]


@pytest.mark.parametrize("step", KILL_STEPS)
def test_an_interrupted_export_is_finished_or_the_last_one_kept(opened, tmp_path, step, monkeypatch, caplog):
    out = tmp_path / "out"
    state = opened(out)
    _two_objects(state)
    state.store.set_labels(5, state.store.labels(0))  # a second frame with masks
    api_client(create_app(state)).post("/api/export")
    first = _export_files(out)
    state.delete_object(2)  # the next export differs in masks, COCO and overlay

    def kill(name):
        if name == step:
            raise _Killed(name)

    monkeypatch.setattr(publish, "STEP_HOOK", kill)
    with pytest.raises(_Killed):
        from inference.annotator.export import export
        export(state)
    monkeypatch.setattr(publish, "STEP_HOOK", None)
    with caplog.at_level(logging.WARNING):
        said = publish.recover(out, "clip")  # what the next start does
    committed = KILL_STEPS.index(step) >= KILL_STEPS.index("committed")
    if committed:
        assert said and ("finished publishing" in said[0] or "was published whole" in said[0])
        _assert_consistent(out, has_object_2=False)
        assert all(_digest(p) != d for p, d in first.items() if p.suffix in (".json", ".mp4") or p.name == "00000.png")
    else:
        assert said and "kept" in said[0]
        assert _export_files(out) == first  # byte for byte the earlier export
        _assert_consistent(out, has_object_2=True)
    assert said[0] in caplog.text


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from inference.annotator import open_annotator
    from inference.annotator.export import export
    from tests.annotator_helpers import PredictorCache

    video, ckpt, out, where = sys.argv[1:5]
    state = open_annotator(video, PredictorCache(ckpt), out)
    state.delete_object(2)
    if where == "masks":  # the moment the new masks folder is moved into place
        real = os.replace
        def replace(src, dst):
            if Path(dst) == Path(out) / "clip":
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        os.replace = replace
    else:  # the overlay video was just written
        import inference.writers as writers
        close = writers.OverlayWriter.close
        def close_then_die(self):
            close(self)
            os.kill(os.getpid(), signal.SIGKILL)
        writers.OverlayWriter.close = close_then_die
    export(state)
    print("not killed")
""")


@pytest.mark.parametrize("where", ["masks", "overlay"])
def test_sigkill_during_export(opened, two_object_video, mini_checkpoint, tmp_path, where, caplog):
    """A real SIGKILL of an annotator exporting: the next start finishes the export (killed
    while publishing) or keeps the earlier one (killed while building), never a mix."""
    out = tmp_path / "out"
    state = opened(out)
    _two_objects(state)
    api_client(create_app(state)).post("/api/export")
    first = _export_files(out)
    state.close()
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(two_object_video[0]), str(mini_checkpoint), str(out), where],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    with caplog.at_level(logging.WARNING):
        again = opened(out)
    if where == "masks":
        assert "finished publishing the export of clip" in caplog.text
        _assert_consistent(out, has_object_2=False)
    else:
        assert "removed an unfinished export of clip" in caplog.text and "is kept" in caplog.text
        assert _export_files(out) == first
        _assert_consistent(out, has_object_2=True)
    assert sorted(again.objects) == [1]


# ---------------------------------------------------------------------------------------- 2. foreign files
@pytest.mark.parametrize("theirs", ["coco/clip.json", "overlays/clip.mp4"])
def test_export_never_replaces_the_users_coco_or_overlay(opened, tmp_path, theirs):
    out = tmp_path / "out"
    state = opened(out)
    client = api_client(create_app(state))
    _two_objects(state)
    (out / theirs).parent.mkdir(parents=True)
    (out / theirs).write_bytes(b"the user's own file")
    r = client.post("/api/export")
    assert r.status_code == 409 and "not written by the annotator" in r.json()["error"] and theirs in r.json()["error"]
    assert (out / theirs).read_bytes() == b"the user's own file"
    assert not (out / "clip").exists() and not state.exported
    (out / theirs).unlink()
    assert client.post("/api/export").status_code == 200
    (out / theirs).write_bytes(b"edited by the user after the export")  # ours no more
    r = client.post("/api/export")
    assert r.status_code == 409 and "\n" not in r.json()["error"]
    assert (out / theirs).read_bytes() == b"edited by the user after the export"


# ---------------------------------------------------------------------------------------- 3. the session
def test_tracked_masks_and_timeline_survive_a_restart(opened, tmp_path):
    out = tmp_path / "out"
    state = opened(out)
    client = api_client(create_app(state))
    _two_objects(state)
    state.start_tracking(), state.wait()
    client.post("/api/export")
    exported = {t: read_label_png(out / "clip" / f"{t:05d}.png") for t in range(14)}
    state.add_point(2, 8, 76, 57)
    state.start_tracking(), state.wait()  # tracked after the export: only on disk as tracked masks
    shown = {t: state.store.labels(t) for t in range(14)}
    assert any((shown[t] != exported[t]).any() for t in range(8, 14))
    timeline = client.get("/api/timeline").json()
    ys, xs = np.nonzero(shown[10] != 2)  # not on object 2: that click would claim it and re-track both (issue 23)
    state.add_point(1, 10, float(xs[len(xs) // 2]), float(ys[len(ys) // 2]))  # a click not tracked yet
    at_10 = state.store.labels(10)
    state.close()

    again = opened(out)
    for t in range(14):
        np.testing.assert_array_equal(again.store.labels(t), at_10 if t == 10 else shown[t])
    assert again.dirty == {1: 10}  # marked for re-tracking, nothing else
    info = api_client(create_app(again)).get("/api/info").json()
    assert info["dirty"] == {"1": 10}
    back = api_client(create_app(again)).get("/api/timeline").json()
    assert back["objects"]["2"] == timeline["objects"]["2"]
    assert back["objects"]["1"]["prob"][:10] == timeline["objects"]["1"]["prob"][:10]
    assert all(p is not None for p in back["objects"]["2"]["prob"])
    job = again.start_tracking()
    assert again.wait().error is None and job.obj_ids == [1] and job.total == 4
    assert again.dirty == {}


def test_a_kill_while_tracking_keeps_the_frames_tracked_so_far(opened, tmp_path, monkeypatch):
    from inference.annotator import state as state_module

    out = tmp_path / "out"
    state = opened(out)
    _two_objects(state)
    monkeypatch.setattr(state_module, "SAVE_EVERY_S", 0.0)  # save after every frame
    update = state.store.update

    def die_at_frame_7(frame, *a, **k):
        if frame == 7:  # the thread stops here and nothing after it is saved, as with a kill
            raise RuntimeError("killed")
        update(frame, *a, **k)

    state.store.update = die_at_frame_7
    state.start_tracking()
    state.wait()
    tracked_0_6 = {t: state.store.labels(t) for t in range(7)}
    state.resources.close()  # as a kill: the lock goes, nothing more is saved
    again = opened(out)
    for t in range(7):
        np.testing.assert_array_equal(again.store.labels(t), tracked_0_6[t])
    assert all(not again.store.has(t) for t in range(7, 14))
    assert again.dirty == {1: 0, 2: 0}  # the job did not finish: both are re-tracked


def test_log_lines_the_session_never_saw_are_dropped(opened, tmp_path):
    """A kill between writing a mask and saving the session: the mask of the lost click is
    not shown; a half-written last line is ignored."""
    out = tmp_path / "out"
    state = opened(out)
    _two_objects(state)
    before = state.store.labels(3)
    log_path = state.store.journal.path
    state.close()
    seq = json.loads((out / SESSION_NAME).read_text())["tracked"]["seq"]
    from inference.annotator.store import _encode
    with open(log_path, "ab") as fh:
        fh.write(tracked._record(seq + 1, 3, (_encode(np.full((96, 128), 1, np.uint8)), {}, {})))
        fh.write(b'{"seq": 99, "frame": 3, "png": "iVBO')
    again = opened(out)
    np.testing.assert_array_equal(again.store.labels(3), before)
    assert not (again.store.labels(0) == 0).all()


# ---------------------------------------------------------------------------------------- 4. the lock
def test_a_second_annotator_on_the_folder_is_refused(opened, two_object_video, tmp_path):
    out = tmp_path / "out"
    first = opened(out)
    with pytest.raises(UserError, match=rf"in use by .*\(pid {os.getpid()}\b"):
        opened(out)
    first.close()
    opened(out).close()  # free again
    # another process holds it
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from utils.io import hold_lock\n"
                               f"with hold_lock({str(out)!r}, 'test'):\n print('held', flush=True); time.sleep(60)"],
                              cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"in use by .*\(pid {holder.pid}\b") as err:
            opened(out)
        assert "\n" not in str(err.value)
    finally:
        holder.kill(), holder.wait()
    # a lock file left by a dead process is taken over
    (out / ".tsms.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
    assert opened(out).objects == {}


# ---------------------------------------------------------------------------------------- 5. full disk, read-only
def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_changes_are_refused_and_rolled_back(opened, tmp_path, monkeypatch):
    out = tmp_path / "out"
    state = opened(out)
    client = api_client(create_app(state))
    _two_objects(state)
    client.post("/api/export")
    session_before, exported = (out / SESSION_NAME).read_bytes(), _export_files(out)
    info_before, labels_before = client.get("/api/info").json(), state.store.labels(0)
    logs = {p.name: p.stat().st_size for p in (out / ".annotator").glob("*")}  # the tracked masks

    def points_in_tracker():
        idx = state.session.state["obj_id_to_idx"][1]
        return state.session.state["point_inputs_per_obj"][idx][0]["point_coords"].shape[1]

    clicks = points_in_tracker()
    # the mask write fails, then (with masks written) the session write fails
    for target, name in ((tracked.TrackedLog, "append"), (session_file, "atomic_write")):
        with monkeypatch.context() as m:
            m.setattr(target, name, _enospc)
            r = client.post("/api/prompt/point", json={"obj_id": 1, "frame": 0, "x": 30, "y": 35})
            assert r.status_code == 507, r.text
            assert str(out) in r.json()["error"] and "No space left" in r.json()["error"]
            if name == "atomic_write":  # a rename writes only the session
                r = client.patch("/api/objects/1", json={"name": "renamed"})
                assert r.status_code == 507 and "No space left" in r.json()["error"]
            r = client.delete("/api/objects/2")
            assert r.status_code == 507
        assert dict(client.get("/api/info").json(), version=0) == dict(info_before, version=0)  # (a change counter)
        np.testing.assert_array_equal(state.store.labels(0), labels_before)
        assert points_in_tracker() == clicks and 2 in state.session.obj_ids
        assert (out / SESSION_NAME).read_bytes() == session_before
        assert {p.name: p.stat().st_size for p in (out / ".annotator").glob("*")} == logs
    from inference.annotator import export as export_module
    with monkeypatch.context() as m:
        m.setattr(export_module, "write_label_png", _enospc)
        r = client.post("/api/export")
        assert r.status_code == 507 and str(out) in r.json()["error"] and "No space left" in r.json()["error"]
    assert _export_files(out) == exported and not list(out.glob(".clip.export-*"))
    # still serving, and the same click now works as if nothing had happened
    r = client.post("/api/prompt/point", json={"obj_id": 1, "frame": 0, "x": 30, "y": 35})
    assert r.status_code == 200 and points_in_tracker() == clicks + 1
    state.close()
    again = opened(out)
    assert again.prompts[(1, 0)].points == [list(CLICK_1), [30.0, 35.0]]


def test_a_full_disk_while_tracking_stops_it_with_one_line_and_keeps_what_was_saved(opened, tmp_path, monkeypatch):
    out = tmp_path / "out"
    state = opened(out)
    client = api_client(create_app(state))
    _two_objects(state)
    append, calls = tracked.TrackedLog.append, []

    def fill_up(self, frame, frame_state):
        calls.append(frame)
        if frame >= 6:
            _enospc()
        return append(self, frame, frame_state)

    monkeypatch.setattr(tracked.TrackedLog, "append", fill_up)
    assert client.post("/api/track", json={}).status_code == 202
    job = state.wait()
    error = client.get("/api/track").json()["error"]
    assert job.done == 6 and str(out) in error and "No space left" in error and "\n" not in error
    assert [t for t in range(14) if state.store.has(t)] == list(range(6)) and state.dirty == {1: 0, 2: 0}
    saved = json.loads((out / SESSION_NAME).read_text())
    assert saved["tracked"]["seq"] == state.store.journal.seq and saved["dirty"] == {"1": 0, "2": 0}
    monkeypatch.setattr(tracked.TrackedLog, "append", append)
    assert client.patch("/api/objects/1", json={"name": "still serving"}).status_code == 200
    shown = {t: state.store.labels(t) for t in range(6)}
    state.close()
    again = opened(out)
    assert [t for t in range(14) if again.store.has(t)] == list(range(6)) and again.dirty == {1: 0, 2: 0}
    for t in range(6):
        np.testing.assert_array_equal(again.store.labels(t), shown[t])


def test_a_rename_that_cannot_be_saved_while_tracking_loses_no_tracked_mask(opened, tmp_path, monkeypatch):
    import threading

    out = tmp_path / "out"
    state = opened(out)
    client = api_client(create_app(state))
    _two_objects(state)
    release, update = threading.Event(), state.store.update

    def slow_update(frame, *a, **k):
        update(frame, *a, **k)
        if frame == 3:
            release.wait(20)

    state.store.update = slow_update
    real_write = session_file.atomic_write

    def full_for_the_rename(*a, **k):  # tracking goes on while the rename fails
        if threading.current_thread().name == "annotator-track":
            return real_write(*a, **k)
        release.set()
        for _ in range(2000):
            if state.store.has(9):
                break
            threading.Event().wait(0.01)
        _enospc()

    assert client.post("/api/track", json={}).status_code == 202
    try:
        with monkeypatch.context() as m:
            m.setattr(session_file, "atomic_write", full_for_the_rename)
            r = client.patch("/api/objects/1", json={"name": "renamed"})
        assert r.status_code == 507 and state.objects[1].name == "left grasper"
    finally:
        release.set()
    assert state.wait().error is None and all(state.store.has(t) for t in range(14))
    shown = {t: state.store.labels(t) for t in range(14)}
    state.close()
    again = opened(out)
    for t in range(14):
        np.testing.assert_array_equal(again.store.labels(t), shown[t])
    assert again.objects[1].name == "left grasper" and again.dirty == {}


@pytest.mark.parametrize("cause", [errno.EROFS, errno.ENOSPC])
def test_starting_on_a_read_only_or_full_folder_is_one_line(two_object_video, mini_checkpoint, tmp_path, capsys,
                                                            monkeypatch, restore_logging, cause):
    """As root, chmod stops nothing: the failure is injected where the first writes happen."""
    from inference.annotate import main
    from utils.cli import run_cli

    out = tmp_path / "out"
    out.mkdir()
    real_open = os.open

    def failing_open(path, *a, **k):
        if str(path).startswith(str(out)):
            raise OSError(cause, os.strerror(cause), str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", failing_open)  # the lock file and every temp file
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["--video_path", str(two_object_video[0]), "--checkpoint", str(mini_checkpoint), "--model_cfg", "mini",
            "--output_dir", str(out), "--port", str(port)]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(out) in err and os.strerror(cause) in err, err


# ---------------------------------------------------------------------------------------- 6. session files
def _no_model(preset):
    raise AssertionError("a refused session builds no model")


def _session(**changes) -> dict:
    data = {"version": 2, "tool": "tsms-sam2 annotator", "video": "clip", "num_frames": 14, "size": [96, 128],
            "preset": "tsms", "threshold": 0.5, "exported": False,
            "objects": [{"id": 1, "name": "a", "type": ""}, {"id": 2, "name": "b", "type": ""}],
            "loaded_ids": [], "prompts": [{"obj_id": 1, "frame": 0, "points": [[20.0, 30.0, 1]]}],
            "history": [[1, 0, "point"]], "dirty": {"1": 0}, "tracked": None}
    data.update(changes)
    return data


def _refused(two_object_video, out: Path, content) -> list:
    out.mkdir(parents=True, exist_ok=True)
    path = out / SESSION_NAME
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(UserErrors) as err:
        open_annotator(two_object_video[0], _no_model, out)
    if before is not None:
        assert path.read_bytes() == before  # the user's file is never rewritten before it loads
    assert all("\n" not in line for line in err.value.lines)
    return err.value.lines


BAD_SESSIONS = [
    ([], ["top level: expected a JSON object, got a list"]),
    (_session(objects=[{"id": 1, "name": "a"}, {"id": 300, "name": "a"}]), ["objects[1].id: 300 is not an object id"]),
    (_session(objects=[{"id": 300, "name": "a"}], prompts=[{"obj_id": 300, "frame": 0, "points": [[1, 1, 1]]}],
              history=[[300, 0, "point"]], dirty={"300": 0}), ["objects[0].id: 300 is not an object id"]),
    (_session(objects=[{"id": 0, "name": "a"}, {"id": 1, "name": "a"}]), ["objects[0].id: 0 is not"]),
    (_session(objects=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]), ["objects[1].id: 1 is used twice"]),
    (_session(prompts=[{"obj_id": 1, "frame": 99, "points": [[1, 1, 1]]}], history=[]), ["prompts[0].frame: 99"]),
    (_session(threshold="abc"), ["threshold: 'abc' is not a probability"]),
    (_session(threshold=7), ["threshold: 7 is not a probability"]),
    (_session(preset="bogus"), ["preset: 'bogus' is not one of"]),
    (_session(prompts=[{"obj_id": 9, "frame": 0, "points": [[1, 1, 1]]}], history=[]), ["prompts[0].obj_id: 9"]),
    (_session(prompts=[{"obj_id": 1, "frame": 0, "points": [[1e9, -1e9, 1]]}]), ["prompts[0].points[0]"]),
    (_session(prompts=[{"obj_id": 1, "frame": 0, "points": [], "mask_rle": encode_rle(np.ones((64, 64), bool))}],
              history=[]), ["prompts[0].mask_rle: is a 64x64 mask; the video is 128x96"]),
    (_session(prompts=[{"obj_id": 1, "frame": 0, "points": [], "mask_rle": {"size": [96, 128], "counts": "zz~~{{"}}],
              history=[]), ["prompts[0].mask_rle: is not valid RLE"]),
    (_session(history=[[1, 0, "point"], [1, 0, "point"], [2, 3, "box"]]),
     ["history[1]: undoes a point", "history[2]: undoes a box"]),
    (_session(threshold="abc", preset="bogus", objects=[{"id": 300, "name": "a"}, {"id": 1, "name": 5}],
              prompts=[{"obj_id": 1, "frame": 99, "points": [[1e9, -1e9, 1]]}], history=[]),
     ["preset", "threshold", "objects[0].id", "objects[1].name", "prompts[0].frame", "prompts[0].points[0]"]),
]


@pytest.mark.parametrize("content, expected", BAD_SESSIONS)
def test_damaged_session_files_are_named_line_by_line(two_object_video, tmp_path, content, expected):
    lines = _refused(two_object_video, tmp_path / "out", content)
    assert len(lines) == len(expected), lines
    for line, field in zip(lines, expected):
        assert str(tmp_path / "out" / SESSION_NAME) in line and field in line, (line, field)


def test_a_folder_or_a_planted_link_instead_of_our_files(two_object_video, tmp_path):
    (tmp_path / "a" / SESSION_NAME).mkdir(parents=True)
    assert "is a folder" in _refused(two_object_video, tmp_path / "a", None)[0]
    out = tmp_path / "b"
    out.mkdir()
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "data.txt").write_text("keep")
    (out / ".clip.export-5").symlink_to(tmp_path / "precious")
    with pytest.raises(UserError, match="symbolic link|a link"):
        open_annotator(two_object_video[0], _no_model, out)
    assert (tmp_path / "precious" / "data.txt").read_text() == "keep" and (out / ".clip.export-5").is_symlink()


def test_the_cli_prints_every_session_problem_and_exits_2(two_object_video, mini_checkpoint, tmp_path, capsys,
                                                          restore_logging):
    from inference.annotate import main
    from utils.cli import run_cli

    out = tmp_path / "out"
    out.mkdir()
    (out / SESSION_NAME).write_text(json.dumps(_session(threshold="abc", preset="bogus")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run_cli(main, ["--video_path", str(two_object_video[0]), "--checkpoint", str(mini_checkpoint),
                          "--model_cfg", "mini", "--output_dir", str(out), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err), err
    assert "preset" in err[0] and "threshold" in err[1]


# ---------------------------------------------------------------------------------------- 7. the API
def test_api_refuses_loose_types_and_a_broken_history(opened):
    state = opened()
    client = api_client(create_app(state))
    _two_objects(state)
    before = json.dumps(client.get("/api/info").json(), sort_keys=True)
    for body in ({"obj_id": 1, "frame": True, "x": 5, "y": 5}, {"obj_id": 1, "frame": "3", "x": 5, "y": 5},
                 {"obj_id": True, "frame": 0, "x": 5, "y": 5}, {"obj_id": 1, "frame": 0, "x": "5", "y": 5}):
        r = client.post("/api/prompt/point", json=body)
        assert r.status_code == 422 and "\n" not in r.json()["error"], (body, r.text)
    r = client.post("/api/prompt/box", json={"obj_id": 1, "frame": "0", "box": [1, 1, 20, 20]})
    assert r.status_code == 422
    state.history.append((2, 5, "point"))  # a history entry with no prompt behind it
    r = client.post("/api/undo")
    assert r.status_code == 409 and "does not match" in r.json()["error"]
    assert state.history[-1] == (2, 5, "point")
    state.history.pop()
    assert json.dumps(client.get("/api/info").json(), sort_keys=True) == before
