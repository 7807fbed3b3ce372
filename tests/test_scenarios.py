"""Synthetic scenarios (data/synthetic_scenarios.py): determinism, and events checked against the masks."""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.synthetic import main as synthetic_main
from data.synthetic_video import render_scenario_video, write_synthetic_dataset
from utils.cli import run_cli

pytestmark = pytest.mark.usefixtures("restore_logging")


def _digests(root: Path):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _render(scenario, seed, num_frames=48, size=(64, 80)):
    plan, frames = render_scenario_video(np.random.default_rng([seed, 0]), num_frames, *size, scenario)
    return plan, list(frames)


def _visible(frames, obj):
    return np.array([(f.label == obj).any() for f in frames])


def _touched_borders(mask):
    return {k for k, edge in enumerate((mask[0], mask[:, -1], mask[-1], mask[:, 0])) if edge.any()}


def test_mixed_is_deterministic_per_seed(tmp_path):
    kwargs = dict(size=(48, 64), write_mp4=False, progress=False, scenario="mixed")
    write_synthetic_dataset(tmp_path / "a", 5, 24, seed=4, **kwargs)
    write_synthetic_dataset(tmp_path / "b", 5, 24, seed=4, **kwargs)
    write_synthetic_dataset(tmp_path / "c", 5, 24, seed=5, **kwargs)
    a, b, c = (_digests(tmp_path / k) for k in "abc")
    assert a == b  # frames, masks, ImageSets and meta.json, byte for byte
    assert a["JPEGImages/video_0000/00000.jpg"] != c["JPEGImages/video_0000/00000.jpg"]
    meta_a, meta_c = (json.loads((tmp_path / k / "meta.json").read_text()) for k in "ac")
    assert [v["events"] for v in meta_a["videos"].values()] != [v["events"] for v in meta_c["videos"].values()]
    videos = meta_a["videos"]
    assert [v["scenario"] for v in videos.values()] == ["occlusion", "crossing", "jumps", "long", "appearance"]
    assert [v["num_frames"] for v in videos.values()] == [40, 24, 24, 200, 24]  # raised to each minimum
    assert all(v["events"] for v in videos.values())
    assert (tmp_path / "a" / "ImageSets" / "long.txt").read_text() == "video_0003\n"
    assert len(list((tmp_path / "a" / "Annotations" / "video_0003").iterdir())) == 200


@pytest.mark.parametrize("seed", range(6))
def test_occlusion_mask_is_empty_exactly_in_the_window_and_back_elsewhere(seed):
    plan, frames = _render("occlusion", seed, num_frames=60)
    occluded, reappear = plan.events
    assert occluded["type"] == "occluded" and reappear["type"] == "reappear"
    obj, start, end = occluded["obj_id"], occluded["start"], occluded["end"]
    assert 10 <= end - start + 1 <= 40 and reappear["frame"] == end + 1 and reappear["obj_id"] == obj
    visible = _visible(frames, obj)
    expected = np.ones(len(frames), bool)
    expected[start:end + 1] = False
    assert np.array_equal(visible, expected)  # empty exactly during the window, visible everywhere else
    before, after = frames[start - 1].label == obj, frames[end + 1].label == obj
    assert _touched_borders(before) != _touched_borders(after)  # it comes back through another border


@pytest.mark.parametrize("seed", range(4))
def test_crossing_tools_look_alike_and_meet_at_the_event_frame(seed):
    plan, frames = _render("crossing", seed, num_frames=40)
    (event,) = plan.events
    assert event["type"] == "crossing" and event["obj_ids"] == [1, 2]
    assert plan.tracks[0].look == plan.tracks[1].look
    frame = event["frame"]
    overlap = [int((f.full_masks[0] & f.full_masks[1]).sum()) for f in frames]
    assert overlap[frame] > 0 and overlap[frame] >= max(overlap[0], overlap[-1])
    one = cv2.dilate((frames[frame].label == 1).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (one & (frames[frame].label == 2)).any()  # the visible masks touch
    tips = [tr.tips for tr in plan.tracks]
    gaps = np.hypot(*(tips[0] - tips[1]).T)
    assert gaps.argmin() == frame and gaps[0] > 5 * gaps[frame] + 1


def _centroid_steps(frames):
    steps = []
    for prev, cur in zip(frames, frames[1:]):
        moves = []
        for obj in range(1, len(cur.full_masks) + 1):
            a, b = np.argwhere(prev.label == obj), np.argwhere(cur.label == obj)
            if len(a) and len(b):
                moves.append(np.hypot(*(a.mean(0) - b.mean(0))))
        steps.append(np.mean(moves) if moves else np.nan)
    return np.array([np.nan] + steps)  # steps[t]: motion from t - 1 to t


def test_jumps_move_more_at_dropped_frames_and_jerks():
    at_events, elsewhere = [], []
    for seed in range(6):
        plan, frames = _render("jumps", seed, num_frames=60, size=(96, 96))
        steps = _centroid_steps(frames)
        event_frames = {e["frame"] for e in plan.events}
        assert event_frames and {e["type"] for e in plan.events} <= {"dropped_frames", "camera_jerk"}
        for t in range(1, len(frames)):
            (at_events if t in event_frames else elsewhere).append(steps[t])
        for e in plan.events:
            if e["type"] == "dropped_frames":
                assert plan.background_times[e["frame"]] - plan.background_times[e["frame"] - 1] == e["skipped"] + 1
    assert np.nanmean(at_events) > 1.5 * np.nanmean(elsewhere)


def test_long_has_static_phases_and_bursts():
    plan, frames = _render("long", 1, num_frames=200, size=(64, 64))
    assert len(frames) == 200
    steps = _centroid_steps(frames)
    kinds = {k: [steps[t] for e in plan.events if e["type"] == k for t in range(e["start"] + 1, e["end"] + 1)]
             for k in ("static", "burst")}
    assert kinds["static"] and kinds["burst"]
    assert np.nanmean(kinds["static"]) < 0.2 and np.nanmean(kinds["burst"]) > 5 * np.nanmean(kinds["static"])


@pytest.mark.parametrize("seed", range(3))
def test_sustained_alternates_slow_and_fast_to_the_end_without_static_phases(seed):
    plan, frames = _render("sustained", seed, num_frames=96, size=(96, 96))
    assert len(frames) == 96 and {e["type"] for e in plan.events} == {"burst"}
    bursts = sorted((e["start"], e["end"]) for e in plan.events)
    assert bursts[-1][1] >= 96 - 21  # the last slow phase is at most 20 frames: fast motion to the end
    assert all(b[0] - a[1] - 1 <= 20 for a, b in zip(bursts, bursts[1:]))  # no long calm
    steps = _centroid_steps(frames)
    fast = np.zeros(96, bool)
    for start, end in bursts:
        fast[start + 1:end + 1] = True
    fast[0] = False
    slow = ~fast
    slow[0] = False
    assert np.nanmedian(steps[fast]) > 3 * np.nanmedian(steps[slow])
    assert np.nanmedian(steps[slow]) > 0.2  # slow, not static (the `long` scenario's static phases move < 0.2)


@pytest.mark.parametrize("seed", range(3))
def test_distractor_look_alike_stands_where_the_hidden_target_was(seed):
    plan, frames = _render("distractor", seed, num_frames=72, size=(96, 96))
    occluded = next(e for e in plan.events if e["type"] == "occluded")
    assert occluded["obj_id"] == 2 and 20 <= occluded["end"] - occluded["start"] + 1 <= 40
    assert plan.tracks[0].look == plan.tracks[1].look
    start, end = occluded["start"], occluded["end"]
    visible = _visible(frames, 2)
    assert not visible[start:end + 1].any() and visible[:start].all() and visible[end + 1:].all()
    assert _visible(frames, 1).all()  # the look-alike stays in view
    place = np.array(next(e for e in plan.events if e["type"] == "distractor")["target_place_px"])
    # the place is the target's tip before it left (on its mask in some earlier frame) ...
    x, y = np.round(place).astype(int)
    assert any(f.label[y - 2:y + 3, x - 2:x + 3].__eq__(2).any() for f in frames[:start])
    # ... and halfway through the window the look-alike's tip is there
    middle = (start + end) // 2
    assert np.hypot(*(plan.tracks[0].tips[middle] - place)) < 2.0
    assert (frames[middle].label[y - 2:y + 3, x - 2:x + 3] == 1).any()


def test_appearance_effects_show_in_the_pixels_not_the_masks():
    plan, frames = _render("appearance", 3, num_frames=60, size=(96, 96))
    images = np.stack([f.image for f in frames]).astype(np.float32)
    brightness = images.mean(axis=(1, 2, 3))
    saturation = (images.max(-1) - images.min(-1)).mean(axis=(1, 2))
    sharpness = np.array([cv2.Laplacian(cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var() for f in frames])
    affected = np.zeros(60, bool)
    for e in plan.events:
        affected[e.get("start", e.get("frame")):e.get("end", e.get("frame")) + 1] = True
    clean = ~affected
    for e in plan.events:
        if e["type"] == "flash":
            assert brightness[e["frame"]] > np.median(brightness[clean]) + 30
        elif e["type"] == "smoke":
            middle = (e["start"] + e["end"]) // 2
            assert saturation[middle] < 0.8 * np.median(saturation[clean])
        elif e["type"] == "blur" and not any(o["type"] != "blur" and o.get("start", o.get("frame")) <= e["end"]
                                             and o.get("end", o.get("frame")) >= e["start"] for o in plan.events):
            assert sharpness[e["start"]:e["end"] + 1].max() < 0.7 * np.median(sharpness[clean])
    # the masks are those of the same video rendered without any effect
    _, plain_frames = _render_without_effects(3)
    assert all(np.array_equal(a.label, b.label) for a, b in zip(frames, plain_frames))


def _render_without_effects(seed):
    plan, frames = render_scenario_video(np.random.default_rng([seed, 0]), 60, 96, 96, "appearance")
    plan.effects.clear()  # the generator is lazy: frames are drawn after this
    return plan, list(frames)


def test_cli_scenario_flag_and_errors(tmp_path, capsys):
    out = tmp_path / "occ"
    assert synthetic_main(["--out", str(out), "--num_videos", "2", "--num_frames", "10", "--scenario", "occlusion",
                           "--size", "48", "48", "--no_mp4", "--log_level", "WARNING"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["scenario"] == "occlusion" and meta["videos"]["video_0001"]["num_frames"] == 40
    assert (out / "ImageSets" / "occlusion.txt").read_text() == "video_0000\nvideo_0001\n"
    assert run_cli(synthetic_main, ["--out", str(tmp_path / "x"), "--num_videos", "1", "--num_frames", "2",
                                    "--scenario", "smoke"]) == 2
    assert "--scenario" in capsys.readouterr().err


# ---------------------------------------------------------------- evaluation per scenario / event window
def _square(rows, cols, size=8):
    mask = np.zeros((size, size), np.uint8)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = 1
    return mask


@pytest.fixture()
def scored_dataset(tmp_path):
    """Hand-made GT and predictions with known Dice, and a meta.json at the dataset root.

    video_a (occlusion, obj 1): frames 0-3 right, 4 a false positive while occluded (Dice 0),
    5-6 right (both empty), 7 missed at the re-appearance (0), 8-9 right.
    video_b (crossing, objs 1, 2): obj 1 right; obj 2 predicted on 2 of its 4 pixels (Dice 2/3).
    """
    from data.mask_io import write_label_png

    root, pred = tmp_path / "set", tmp_path / "pred"
    a_gt = [_square((0, 2), (0, 2)) * (t not in (4, 5, 6)) for t in range(10)]
    a_pred = [_square((0, 2), (0, 2)) * (t not in (5, 6, 7)) for t in range(10)]
    b_gt = [_square((0, 2), (0, 2)) + 2 * _square((4, 6), (4, 6)) for _ in range(4)]
    b_pred = [_square((0, 2), (0, 2)) + 2 * _square((4, 5), (4, 6)) for _ in range(4)]
    for video, gts, preds in (("video_a", a_gt, a_pred), ("video_b", b_gt, b_pred)):
        for t, (g, p) in enumerate(zip(gts, preds)):
            for folder, mask in ((root / "Annotations" / video, g), (pred / video, p)):
                folder.mkdir(parents=True, exist_ok=True)
                write_label_png(folder / f"{t:05d}.png", mask.astype(np.uint8))
    meta = {"generator": "tsms-sam2-synthetic", "videos": {
        "video_a": {"scenario": "occlusion", "events": [{"type": "occluded", "obj_id": 1, "start": 4, "end": 6},
                                                        {"type": "reappear", "obj_id": 1, "frame": 7}]},
        "video_b": {"scenario": "crossing", "events": [{"type": "crossing", "obj_ids": [1, 2], "frame": 1}]}}}
    (root / "meta.json").write_text(json.dumps(meta))
    return root, pred


def _evaluate(root, pred, **kwargs):
    from eval.evaluation import EvaluationConfig, evaluate_predictions

    return evaluate_predictions(EvaluationConfig(pred_dir=pred, gt_dir=root / "Annotations", workers=1,
                                                 progress=False, **kwargs)).scenarios


def test_dice_per_scenario_and_event_window(scored_dataset):
    report = _evaluate(*scored_dataset, event_window=2)
    assert report["meta"].endswith("set/meta.json")  # found above Annotations/
    occlusion, crossing = report["per_scenario"]["occlusion"], report["per_scenario"]["crossing"]
    assert occlusion["dice_across_objects"]["mean"] == pytest.approx(0.8)
    assert crossing["n_objects"] == 2 and crossing["dice_across_objects"]["mean"] == pytest.approx(5 / 6)
    events = report["per_event"]
    assert events["reappear"]["dice"]["mean"] == pytest.approx(0.5)  # frames 7 (missed) and 8
    assert events["reappear"]["window"] == "[frame, frame + 2)"
    assert events["occluded"]["dice"]["mean"] == pytest.approx(2 / 3) and events["occluded"]["window"] == "[start, end]"
    assert events["crossing"]["dice"] == pytest.approx({"mean": 5 / 6, "std": 1 / 6, "n": 2})
    wide = _evaluate(*scored_dataset, event_window=3)["per_event"]["reappear"]["dice"]["mean"]
    assert wide == pytest.approx(2 / 3)  # frames 7-9


def test_event_windows_follow_frame_numbers_when_frames_are_skipped(scored_dataset):
    report = _evaluate(*scored_dataset, event_window=2, skip_first=True)
    assert report["per_scenario"]["occlusion"]["dice_across_objects"]["mean"] == pytest.approx(7 / 9)
    assert report["per_event"]["reappear"]["dice"]["mean"] == pytest.approx(0.5)  # still frames 7 and 8


def test_evaluate_cli_reports_scenarios(scored_dataset, tmp_path, capsys):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "eval" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("evaluate_cli", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root, pred = scored_dataset
    out = tmp_path / "eval.json"
    argv = ["--pred_dir", str(pred), "--gt_dir", str(root / "Annotations"), "--workers", "1", "--no_progress",
            "--event_window", "2", "--out", str(out), "--log_level", "WARNING"]
    assert run_cli(module.main, argv) == 0
    text = capsys.readouterr().out
    assert "Dice per scenario" in text and "reappear" in text and "50.00" in text
    saved = json.loads(out.read_text())["scenarios"]
    assert saved["per_event"]["reappear"]["dice"]["mean"] == pytest.approx(0.5)
    assert run_cli(module.main, [*argv[:6], "--meta", str(tmp_path / "none.json")]) == 2
    assert "--meta file not found" in capsys.readouterr().err
    assert run_cli(module.main, [*argv[:6], "--event_window", "0"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"videos": {"video_a": {"scenario": "occlusion", "events": [{"type": "reappear"}]}}}))
    assert run_cli(module.main, [*argv[:6], "--meta", str(bad)]) == 2
    assert "malformed event" in capsys.readouterr().err
    (root / "meta.json").write_text(json.dumps({"videos": {"video_a": {"scenario": "basic", "events": []}}}))
    assert _evaluate(root, pred) is None  # a basic-only dataset adds nothing by itself
