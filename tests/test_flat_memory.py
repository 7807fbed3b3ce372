"""Flat memory on long videos: what a tracking session stores, and the process's peak RSS,
do not grow with the video's length; and the one documented exception to "identical to
keeping everything": a new prompt on a frame whose outputs were evicted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.video_sources import ImageFolderSource
from models import TrackingSession, build_tsms_sam2_video_predictor
from models.eviction import memory_reach, pointer_reach
from tests.conftest import make_two_object_video

REPO = Path(__file__).resolve().parents[1]
SHORT, LONG = 35, 70  # from frame ~31 on (2 x the 15-frame pointer reach) the window is steady


def _stored(session) -> dict:
    outs = [d["non_cond_frame_outputs"] for d in session.state["output_dict_per_obj"].values()]
    return {"entries": sum(len(o) for o in outs),
            "with_memory": sum(1 for o in outs for e in o.values() if e.get("maskmem_features") is not None)}


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flat") / "long"
    return folder, make_two_object_video(folder, num_frames=LONG)


@pytest.fixture(scope="module")
def predictor(mini_checkpoint):
    return build_tsms_sam2_video_predictor("mini", str(mini_checkpoint), memory="tsms")


def _session(predictor, folder, masks, evict):
    session = TrackingSession(predictor, ImageFolderSource(folder), evict_outputs=evict)
    session.add_mask(0, 1, masks[1][0])
    return session


def test_stored_outputs_do_not_grow_with_the_video(predictor, long_video):
    """After 35 and after 70 frames the evicting session stores the same outputs (sam2 stores
    one per tracked frame: tests/test_inference.py)."""
    folder, masks = long_video
    session, counts = _session(predictor, folder, masks, evict=True), {}
    for r in session.propagate():
        if r.frame_idx + 1 in (SHORT, LONG):
            counts[r.frame_idx + 1] = _stored(session)
    assert counts[SHORT] == counts[LONG], counts
    # with memory: the frames pinned next to the prompted one, and the newest in the window
    assert counts[LONG]["with_memory"] <= pointer_reach(predictor) + memory_reach(predictor) + 2 < SHORT, counts


def test_prompts_behind_the_tracking_front(predictor, long_video):
    """The documented exception (models/eviction.py, docs/usage.md): re-prompting the last tracked
    frame, and tracking on from it, is identical to keeping everything; a prompt further
    back finds evicted outputs (the frame's own, or its memory frames') and reads them as
    missing, so it differs, but it works, per object and batched (it crashed before)."""
    folder, masks = long_video
    sessions = {evict: _session(predictor, folder, masks, evict) for evict in (True, False)}
    for session in sessions.values():
        last = [r.frame_idx for r in session.propagate(max_frames=40)][-1]
    outputs = sessions[True].state["output_dict_per_obj"][0]["non_cond_frame_outputs"]
    reach = memory_reach(predictor)  # the last frame's memory frames are all still there
    assert 20 not in outputs and all(outputs[t].get("maskmem_features") is not None for t in range(last - reach, last))
    results = {}
    for evict, session in sessions.items():  # a click, added to the last frame's tracked mask
        prompt = session.add_points(last, 1, [[64.0, 48.0]], [1], clear=False).mask_logits
        after = [r.mask_logits for r in session.propagate(start_frame=last, max_frames=4)]
        results[evict] = [prompt, *after]
    assert len(results[True]) == 6, len(results[True])
    assert [float((a - b).abs().max()) for a, b in zip(results[True], results[False])] == [0.0] * 6

    far = {evict: session.add_points(20, 1, [[64.0, 48.0]], [1], clear=False).mask_logits
           for evict, session in sessions.items()}
    assert float((far[True] - far[False]).abs().max()) > 1e-3
    evicting = sessions[True]
    back = last - 3  # a few of its memory frames were evicted
    evicting.add_points(back, 1, [[64.0, 48.0]], [1], clear=False)
    for batch_objects in (False, True):
        tracked = list(predictor.propagate_in_video(evicting.state, start_frame_idx=back, max_frame_num_to_track=2,
                                                    batch_objects=batch_objects))
        assert [f for f, _, _ in tracked] == [back, back + 1, back + 2]


CHILD = """
import json, sys, warnings
sys.path.insert(0, {repo!r})
import torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
from inference.video_sources import ImageFolderSource
from models import TrackingSession, build_tsms_sam2_video_predictor
from models.frames import LazyFrameTensors
from utils.resources import current_rss_mb, peak_rss_mb
from data.mask_io import read_label_png
if {cache_all!r}:  # the bug this test must catch: every decoded frame kept
    LazyFrameTensors.__init__.__defaults__ = (10 ** 6,)
predictor = build_tsms_sam2_video_predictor("mini", None, memory="tsms")
rows = []
for folder in {folders!r}:
    session = TrackingSession(predictor, ImageFolderSource(folder))
    session.add_mask(0, 1, __import__("numpy").load(folder + "/mask.npy"))
    with torch.inference_mode():
        n = sum(1 for r in session.propagate() if r.masks() is not None)
    rows.append({{"frames": n, "rss_mb": current_rss_mb(), "peak_rss_mb": peak_rss_mb()}})  # session still open
    del session
print(json.dumps(rows))
"""


def _peak_rss(tmp_path, folders, cache_all=False):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), folders=[str(f) for f in folders], cache_all=cache_all))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cache_all", [False, True])
def test_peak_rss_does_not_grow_with_the_video(tmp_path, cache_all):
    """One fresh process tracks a 20-frame then an 80-frame 240p video: the longer one adds
    (almost) nothing to the RSS, at the end of tracking or at its peak. Keeping every decoded frame (the bug, ``cache_all``)
    would add 60 x 0.2 MB of model-ready frames."""
    folders = []
    for n in (20, 80):
        folder = tmp_path / f"v{n}"
        masks = make_two_object_video(folder, num_frames=n, hw=(240, 320), seed=1)
        np.save(folder / "mask.npy", masks[1][0])
        folders.append(folder)
    short, long = _peak_rss(tmp_path, folders, cache_all)
    assert (short["frames"], long["frames"]) == (20, 80)
    growth = {k: long[k] - short[k] for k in ("rss_mb", "peak_rss_mb")}
    if cache_all:
        assert growth["rss_mb"] > 8, growth
    else:
        assert growth["rss_mb"] < 4 and growth["peak_rss_mb"] < 4, growth
