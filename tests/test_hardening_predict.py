"""Issue 13: predict_video.py never deletes, replaces or misnames what it did not write.

A stand-in predictor (it repeats the prompt mask on every frame) keeps these tests fast;
the publishing, naming and summary code under test is the real one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from inference.outputs import MARKER, merge_summary
from inference.predict import VideoResult, run_videos, segment_video, write_summary
from inference.prompts import Prompt
from inference.video_sources import ImageFolderSource, list_video_dirs, open_video_source
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
HW = (32, 32)


class EchoPredictor:
    """Tracks by repeating each object's prompt mask; ``on_frame(f)`` is called before frame f.
    It has the parts of sam2's predictor interface that the tracking session uses."""

    reads_frame_sources = True
    add_all_frames_to_correct_as_cond = False
    device = torch.device("cpu")

    def __init__(self, on_frame=None):
        self.on_frame = on_frame
        self.memory_attention = torch.nn.Identity()

    def init_state(self, source, evict_outputs=True, **kwargs):
        return {"obj_ids": [], "masks": {}, "num_frames": len(source), "obj_idx_to_id": {}, "output_dict_per_obj": {}}

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        state["obj_ids"].append(obj_id)
        state["masks"][obj_id] = torch.as_tensor(mask).float() * 2 - 1
        ids = list(state["obj_ids"])
        return frame_idx, ids, torch.stack([state["masks"][i] for i in ids])[:, None]

    def propagate_in_video(self, state, start_frame_idx=0, max_frame_num_to_track=None, reverse=False):
        ids = list(state["obj_ids"])
        logits = torch.stack([state["masks"][i] for i in ids])[:, None]
        for f in range(start_frame_idx or 0, state["num_frames"]):
            if self.on_frame:
                self.on_frame(f)
            yield f, ids, logits


def _frames(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        Image.fromarray(np.full(HW + (3,), 40 * t, np.uint8)).save(folder / f"{t:05d}.jpg")
    return folder


def _mp4(path: Path, n: int = 3) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, HW[::-1])
    for t in range(n):
        writer.write(np.full(HW + (3,), 40 * t, np.uint8))
    writer.release()
    return path


def _prompt() -> list:
    mask = np.zeros(HW, bool)
    mask[4:12, 4:12] = True
    return [Prompt(obj_id=1, frame_idx=0, mask=mask)]


def _sentinel(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("years of work")
    return folder / "thesis.tex"


# --------------------------------------------------------------------------- derived names


@pytest.mark.parametrize("file_name", ["..mp4", "...mp4"])
def test_video_files_named_dot_dot_delete_nothing(tmp_path, file_name):
    out = tmp_path / "work" / "out"
    keep_out, keep_parent = _sentinel(out), _sentinel(out.parent)
    source = open_video_source(_mp4(tmp_path / file_name))
    # before: '..mp4' (name '.') rmtree'd --output_dir, '...mp4' (name '..') its parent
    with pytest.raises(UserError, match="not a plain name"):
        segment_video(EchoPredictor(), source, _prompt(), out)
    assert keep_out.is_file() and keep_parent.is_file()


def test_video_path_dot_is_named_after_the_real_folder(tmp_path, monkeypatch):
    frames = _frames(tmp_path / "case7")
    out = tmp_path / "out"
    keep = _sentinel(out)
    monkeypatch.chdir(frames)
    source = open_video_source(".")
    assert source.name == "case7"
    segment_video(EchoPredictor(), source, _prompt(), out)
    assert keep.is_file()  # before: the video was named '' and publishing replaced --output_dir
    assert sorted(p.name for p in (out / "case7").glob("*.png")) == ["00000.png", "00001.png", "00002.png"]


@pytest.mark.parametrize("name", ["per_object", "overlays"])
def test_dataset_videos_named_like_our_sub_folders_are_refused(tmp_path, name):
    out = tmp_path / "out"
    segment_video(EchoPredictor(), ImageFolderSource(_frames(tmp_path / "a")), _prompt(), out,
                  per_object=True, overlay=True)
    before = sorted(p.relative_to(out) for p in out.rglob("*") if "summary" not in p.name)
    # before: a video 'per_object' replaced per_object/ (every video's per-object masks)
    with pytest.raises(UserError, match="reserved for this tool's own outputs"):
        segment_video(EchoPredictor(), ImageFolderSource(_frames(tmp_path / name)), _prompt(), out)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if "summary" not in p.name) == before


# --------------------------------------------------------------------------- replace only ours


def test_a_folder_we_did_not_write_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    keep = _sentinel(out / "vid")
    with pytest.raises(UserError, match=f"was not written by predict_video.py \\(no {MARKER} marker\\)"):
        segment_video(EchoPredictor(), ImageFolderSource(_frames(tmp_path / "vid")), _prompt(), out)
    assert keep.is_file() and not list(out.glob(".tmp-*"))


def test_a_symlinked_video_folder_is_refused(tmp_path):
    elsewhere = _sentinel(tmp_path / "elsewhere")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "vid").symlink_to(elsewhere.parent)
    with pytest.raises(UserError):
        segment_video(EchoPredictor(), ImageFolderSource(_frames(tmp_path / "vid")), _prompt(), tmp_path / "out")
    assert elsewhere.is_file() and (tmp_path / "out" / "vid").is_symlink()


def test_our_own_earlier_output_is_replaced(tmp_path):
    out = tmp_path / "out"
    source = ImageFolderSource(_frames(tmp_path / "vid"))
    segment_video(EchoPredictor(), source, _prompt(), out, per_object=True, overlay=True)
    (out / "vid" / "stale.png").write_bytes(b"")
    segment_video(EchoPredictor(), source, _prompt(), out, per_object=True, overlay=True)
    assert (out / "vid" / MARKER).is_file() and not (out / "vid" / "stale.png").exists()
    assert len(list((out / "vid").glob("*.png"))) == 3 and (out / "overlays" / "vid.mp4").is_file()
    assert (out / "per_object" / MARKER).is_file() and (out / "overlays" / MARKER).is_file()


def test_a_user_overlays_folder_is_not_written_into(tmp_path):
    out = tmp_path / "out"
    keep = _sentinel(out / "overlays")
    with pytest.raises(UserError, match="overlays exists and was not written"):
        segment_video(EchoPredictor(), ImageFolderSource(_frames(tmp_path / "vid")), _prompt(), out, overlay=True)
    assert keep.is_file() and sorted(p.name for p in (out / "overlays").iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("make", ["file", "under_file"])
def test_unusable_output_dir_is_one_line(tmp_path, make):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if make == "file" else tmp_path / "f" / "out"
    with pytest.raises(UserError, match="is a file"):
        segment_video(EchoPredictor(), ImageFolderSource(_frames(tmp_path / "vid")), _prompt(), out)


# --------------------------------------------------------------------------- staging and faults


def test_staging_of_a_killed_run_is_cleaned_and_hidden_folders_are_not_videos(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    stale = out / f".tmp-vid-{dead.pid}"
    (stale / "masks").mkdir(parents=True)
    segment_video(EchoPredictor(), ImageFolderSource(_frames(tmp_path / "vid")), _prompt(), out)
    assert not stale.exists()
    images = tmp_path / "JPEGImages"
    _frames(images / "b")
    _frames(images / "a10")
    _frames(images / "a9")
    (images / ".vid.x1y2.tmp").mkdir()  # left by a killed prepare run
    assert [p.name for p in list_video_dirs(images)] == ["a9", "a10", "b"]


SIGTERM_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
from test_hardening_predict import EchoPredictor, _prompt
from inference.predict import segment_video
from inference.video_sources import ImageFolderSource
def on_frame(f):
    if f == 1:
        os.kill(os.getpid(), signal.SIGTERM)
try:
    segment_video(EchoPredictor(on_frame), ImageFolderSource({frames!r}), _prompt(), {out!r})
except KeyboardInterrupt:
    sys.exit(143)
"""


def test_sigterm_removes_the_staging_folder(tmp_path):
    frames, out = _frames(tmp_path / "vid"), tmp_path / "out"
    script = SIGTERM_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), frames=str(frames), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stderr[-2000:]  # before: killed by the signal (-15), staging left
    assert out.is_dir() and not list(out.glob(".tmp-*")) and not (out / "vid").exists()


# --------------------------------------------------------------------------- summaries


def _result(name: str) -> VideoResult:
    return VideoResult(video=name, frames=3, frames_tracked=3, objects=[1], prompt_frames={0: [1]}, seconds=1.0, fps=3.0)


def test_two_runs_into_one_folder_leave_a_summary_of_both(tmp_path):
    write_summary(tmp_path, [_result("a")], {"checkpoint": "one.pt"})
    write_summary(tmp_path, [_result("b")], {"checkpoint": "two.pt"})
    summary = json.loads((tmp_path / "summary.json").read_text())
    # before: the second run's summary described only video b
    assert [v["video"] for v in summary["videos"]] == ["a", "b"] and summary["frames"] == 6
    assert [r["checkpoint"] for r in summary["runs"]] == ["one.pt", "two.pt"]


def test_concurrent_summary_updates_lose_no_video(tmp_path):
    def run(k):
        for i in range(5):
            merge_summary(tmp_path, {"run": k}, [{"video": f"{k}-{i}", "frames": 1}])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["videos"]) == 20 and len(summary["runs"]) == 20


def test_a_summary_json_we_did_not_write_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("my notes")
    jobs = [("vid", lambda: (ImageFolderSource(_frames(tmp_path / "vid")), _prompt()))]
    with pytest.raises(UserError, match="summary.json exists and is not a summary"):
        run_videos(EchoPredictor(), jobs, out, {})
    assert (out / "summary.json").read_text() == "my notes" and not (out / "vid").exists()


def _jobs(tmp_path, failing: BaseException):
    def fail():
        raise failing

    return [("a", lambda: (ImageFolderSource(_frames(tmp_path / "a")), _prompt())), ("b", fail),
            ("c", lambda: (ImageFolderSource(_frames(tmp_path / "c")), _prompt()))]


def test_ctrl_c_mid_dataset_still_writes_the_summary(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_videos(EchoPredictor(), _jobs(tmp_path, KeyboardInterrupt()), tmp_path / "out", {"memory": "tsms"})
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [v["video"] for v in summary["videos"]] == ["a"]
    assert summary["interrupted"] is True and summary["interrupted_during"] == "b"


def test_a_bad_video_mid_dataset_is_named_and_the_others_complete(tmp_path):
    with pytest.raises(UserError, match="1 of 3 video\\(s\\) failed: b \\(frame 2 is corrupt\\)"):
        run_videos(EchoPredictor(), _jobs(tmp_path, UserError("frame 2 is corrupt")), tmp_path / "out", {})
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [v["video"] for v in summary["videos"]] == ["a", "c"]
    assert summary["failed"] == [{"video": "b", "error": "frame 2 is corrupt"}]
    assert summary["interrupted"] is False


def test_reserved_dataset_video_names_fail_before_the_first_video(tmp_path):
    jobs = [("a", lambda: (ImageFolderSource(_frames(tmp_path / "a")), _prompt())), ("overlays", None)]
    with pytest.raises(UserError, match="'overlays' is reserved"):
        run_videos(EchoPredictor(), jobs, tmp_path / "out", {})
    assert not (tmp_path / "out" / "a").exists()
