"""The annotator's HTTP API with FastAPI's test client (no browser): every endpoint, bad input."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from PIL import Image

from data.mask_io import read_label_png
from eval import EvaluationConfig, evaluate_predictions
from inference.annotator import create_app, open_annotator
from inference.annotator.session_file import SESSION_NAME
from tests.annotator_helpers import BOX_2, CLICK_1, PredictorCache, api_client, prompts_json, write_ground_truth


@pytest.fixture(scope="module")
def predictors(mini_checkpoint):
    return PredictorCache(mini_checkpoint)


@pytest.fixture()
def annotator(two_object_video, predictors, tmp_path):
    video_dir, _ = two_object_video
    state = open_annotator(video_dir, predictors, tmp_path / "out")
    yield state, api_client(create_app(state))
    state.close()


def _prompt_two_objects(client):
    assert client.post("/api/objects", json={"name": "left grasper", "type": "Prograsp Forceps"}).json()["id"] == 1
    assert client.post("/api/objects", json={}).json()["id"] == 2
    r1 = client.post("/api/prompt/point", json={"obj_id": 1, "frame": 0, "x": CLICK_1[0], "y": CLICK_1[1]})
    r2 = client.post("/api/prompt/box", json={"obj_id": 2, "frame": 0, "box": BOX_2})
    assert r1.status_code == r2.status_code == 200
    return r1.json(), r2.json()


def _track(state, client, **body):
    assert client.post("/api/track", json=body).status_code == 202
    job = state.wait()
    assert not job.running and job.error is None
    return client.get("/api/track").json()


def test_prompt_track_export_matches_predict_video(annotator, two_object_video, mini_checkpoint, tmp_path, restore_logging):
    """Same prompts -> the exported PNGs are predict_video.py's, byte for byte in labels, and
    evaluate.py gives the same Dice."""
    state, client = annotator
    video_dir, gt_masks = two_object_video
    r1, r2 = _prompt_two_objects(client)
    assert r1["area"] > 0 and r2["area"] > 0  # a mask at once, before any tracking
    job = _track(state, client, direction="forward")
    assert (job["done"], job["total"], job["obj_ids"]) == (14, 14, [1, 2])
    paths = client.post("/api/export").json()

    from inference.predict_video import main as predict_main
    pred_dir = tmp_path / "pred"
    assert predict_main(["--video_path", str(video_dir), "--checkpoint", str(mini_checkpoint), "--model_cfg", "mini",
                         "--memory", "tsms", "--prompts", str(prompts_json(tmp_path / "p.json")),
                         "--output_dir", str(pred_dir), "--quiet"]) == 0
    for t in range(14):
        ours = read_label_png(state.output_dir / "clip" / f"{t:05d}.png")
        np.testing.assert_array_equal(ours, read_label_png(pred_dir / "clip" / f"{t:05d}.png"))
    gt = write_ground_truth(tmp_path / "gt", "clip", gt_masks)
    dice = [evaluate_predictions(EvaluationConfig(d, gt, workers=1, progress=False)).across_objects["dice"].mean
            for d in (state.output_dir, pred_dir)]
    exported = [read_label_png(state.output_dir / "clip" / f"{t:05d}.png") for t in range(14)]  # Dice by hand:
    by_hand = np.mean([np.mean([2 * ((lab == o) & gt_masks[o][t]).sum() / max((lab == o).sum() + gt_masks[o][t].sum(), 1)
                                for t, lab in enumerate(exported)]) for o in (1, 2)])
    assert dice[0] == pytest.approx(dice[1], abs=1e-12) and dice[0] == pytest.approx(by_hand, abs=1e-9)

    coco = json.loads(open(paths["coco"]).read())
    assert len(coco["images"]) == 14 and {a["name"] for a in coco["annotations"]} <= {"left grasper", "object 2"}
    assert {"Prograsp Forceps", "object"} >= {c["name"] for c in coco["categories"]}
    from pycocotools import mask as mask_utils
    first = next(a for a in coco["annotations"] if a["image_id"] == 1 and a["track_id"] == 1)
    rle = dict(first["segmentation"], counts=first["segmentation"]["counts"].encode())
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), read_label_png(state.output_dir / "clip" / "00000.png") == 1)
    import cv2
    cap = cv2.VideoCapture(paths["overlay"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 14
    cap.release()


def test_correcting_one_object_retracks_only_it(annotator):
    state, client = annotator
    _prompt_two_objects(client)
    _track(state, client)
    before = {t: state.store.labels(t) for t in range(14)}
    scores_1 = dict(state.store.scores[1])
    calls = []
    update = state.store.update
    state.store.update = lambda frame, ids, *a, **k: (calls.append(list(ids)), update(frame, ids, *a, **k))
    assert client.post("/api/prompt/point", json={"obj_id": 2, "frame": 8, "x": 76, "y": 57}).status_code == 200
    job = _track(state, client)
    assert job["obj_ids"] == [2] and job["done"] == 6  # frames 8..13 only
    assert all(ids == [2] for ids in calls)  # object 1 was never recomputed
    for t in range(14):
        after = state.store.labels(t)
        np.testing.assert_array_equal(after == 1, before[t] == 1)
        if t < 8:
            np.testing.assert_array_equal(after, before[t])
    assert state.store.scores[1] == scores_1
    assert state.dirty == {}


def test_repeated_clicks_reuse_the_frame_features(annotator):
    state, client = annotator
    client.post("/api/objects", json={})
    model = state.session.predictor
    calls = []
    original = model.forward_image
    model.forward_image = lambda img: (calls.append(1), original(img))[1]
    try:
        for x in (60, 62, 64):
            assert client.post("/api/prompt/point", json={"obj_id": 1, "frame": 5, "x": x, "y": 40}).status_code == 200
        client.post("/api/prompt/point", json={"obj_id": 1, "frame": 5, "x": 10, "y": 10, "positive": False})
    finally:
        del model.forward_image
    assert len(calls) == 1  # the image encoder ran once; later clicks only ran the decoder


def test_undo_delete_and_timeline(annotator):
    state, client = annotator
    _prompt_two_objects(client)
    assert client.post("/api/prompt/point", json={"obj_id": 1, "frame": 0, "x": 25, "y": 32, "positive": False}).status_code == 200
    assert client.get("/api/prompts/0").json()[0]["labels"] == [1, 0]
    assert client.post("/api/undo").json() == {"obj_id": 1, "frame": 0, "undone": "point"}
    assert client.get("/api/prompts/0").json()[0]["labels"] == [1]
    _track(state, client)
    timeline = client.get("/api/timeline").json()
    probs = timeline["objects"]["1"]["prob"]
    assert len(probs) == 14 and all(0.0 <= p <= 1.0 for p in probs)
    assert timeline["objects"]["1"]["flagged"] == [f for f, p in enumerate(probs) if p < 0.5]
    iou = timeline["objects"]["1"]["iou"]  # from the mask decoder: the prompt (frame 0), then each tracked frame
    assert len(iou) == 14 and all(v is not None and np.isfinite(v) for v in iou) and len(set(iou)) > 1
    assert client.delete("/api/objects/2").json() == {"deleted": 2}
    assert all(not (state.store.labels(t) == 2).any() for t in range(14))
    assert [o["id"] for o in client.get("/api/info").json()["objects"]] == [1]
    assert client.post("/api/undo").json() == {"obj_id": 2, "frame": None, "undone": "delete"}  # it comes back
    assert [o["id"] for o in client.get("/api/info").json()["objects"]] == [1, 2]
    assert all((state.store.labels(t) == 2).any() for t in range(14)) and (2, 0) in state.prompts
    assert 2 in state.session.obj_ids and 2 not in state.dirty  # its tracked masks are back: no re-track needed
    assert client.post("/api/undo").json()["undone"] == "box"  # then object 2's box
    assert client.post("/api/undo").json()["undone"] == "point"  # object 1's click
    assert client.post("/api/undo").status_code == 409  # nothing left
    assert state.session.obj_ids == []


def test_cancel_stops_tracking(annotator):
    state, client = annotator
    _prompt_two_objects(client)
    update = state.store.update

    def update_then_cancel(*a, **k):
        update(*a, **k)
        client.post("/api/track/cancel")

    state.store.update = update_then_cancel
    job = _track(state, client)
    assert job["cancelled"] and job["done"] == 1
    assert state.dirty == {1: 0, 2: 0}  # not tracked through: the next Track does them again
    assert client.post("/api/track/cancel").status_code == 409


def test_editing_objects_while_tracking(annotator):
    """Names and new objects do not wait for tracking; prompts are refused until it ends."""
    import threading

    state, client = annotator
    _prompt_two_objects(client)
    release = threading.Event()
    update = state.store.update

    def slow_update(*a, **k):
        release.wait(10)
        update(*a, **k)

    state.store.update = slow_update
    assert client.post("/api/track", json={}).status_code == 202
    try:
        assert client.patch("/api/objects/1", json={"name": "renamed"}).json()["name"] == "renamed"
        assert client.post("/api/objects", json={}).json()["id"] == 3
        r = client.post("/api/prompt/point", json={"obj_id": 1, "frame": 0, "x": 5, "y": 5})
        assert r.status_code == 409 and "tracking is running" in r.json()["error"]
        assert client.post("/api/export").status_code == 409
    finally:
        release.set()
    assert state.wait().done == 14


def test_preset_switch_keeps_prompts(annotator):
    state, client = annotator
    _prompt_two_objects(client)
    _track(state, client)
    assert client.post("/api/preset", json={"preset": "sam2"}).json() == {"preset": "sam2"}
    assert state.session.predictor.memory_spec.module == "sam2" and set(state.dirty) == {1, 2}
    assert _track(state, client)["obj_ids"] == [1, 2]
    assert client.post("/api/preset", json={"preset": "bogus"}).status_code == 400


def test_resume_and_load_masks(annotator, two_object_video, predictors, tmp_path):
    state, client = annotator
    _prompt_two_objects(client)
    _track(state, client)
    client.post("/api/export")
    exported = {t: state.store.labels(t) for t in range(14)}
    state.close()
    (state.output_dir / ".clip.export-999").mkdir()  # left by a killed export
    (state.output_dir / ".clip.export-999" / "00000.png").write_bytes(b"partial")
    mine = state.output_dir / ".notes"
    mine.write_text("the user's")
    again = open_annotator(two_object_video[0], predictors, state.output_dir)
    assert not (state.output_dir / ".clip.export-999").exists() and mine.read_text() == "the user's"
    assert [o.name for o in again.objects.values()] == ["left grasper", "object 2"]
    assert sorted(again.prompts) == [(1, 0), (2, 0)] and again.session.obj_ids == [1, 2]
    for t in range(14):
        np.testing.assert_array_equal(again.store.labels(t), exported[t])
    # masks from elsewhere (e.g. predict_video.py) open as objects; a click corrects from them
    other = open_annotator(two_object_video[0], predictors, tmp_path / "fix", masks_dir=state.output_dir / "clip")
    assert sorted(other.objects) == [1, 2] and other.prompts == {}
    frame = next(t for t in (7, *range(14)) if (exported[t] == 1).any())  # frame 0 at least: it was prompted
    other.add_point(1, frame, 60, 40)
    np.testing.assert_array_equal(other.prompts[(1, frame)].mask, exported[frame] == 1)
    again.close(), other.close()


def test_resume_refuses_another_videos_session(annotator, tmp_path, predictors):
    from tests.conftest import make_two_object_video
    from utils.errors import UserError

    state, client = annotator
    client.post("/api/objects", json={})
    state.close()  # (an open annotator holds its folder: see test_annotator_persistence)
    make_two_object_video(tmp_path / "other", num_frames=5)
    with pytest.raises(UserError, match="belongs to video 'clip'"):
        open_annotator(tmp_path / "other", predictors, state.output_dir)


@pytest.mark.parametrize("name", ["coco", "overlays", "annotator_session.json"])
def test_videos_named_like_the_annotators_own_entries_are_refused(tmp_path, name):
    """A video folder named like one of our output entries would have its masks written over
    them (``coco/``, ``overlays/``): refused before anything is built, removed or written."""
    from tests.conftest import make_two_object_video
    from utils.errors import UserError

    make_two_object_video(tmp_path / name, num_frames=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "coco").mkdir()
    (out / "coco" / f".{name}.json.x.tmp").write_text("keep")  # a name the stale-file clean-up would match

    def no_model(preset):
        raise AssertionError("no predictor may be built for a refused video")

    with pytest.raises(UserError, match="reserved"):
        open_annotator(tmp_path / name, no_model, out)
    assert [p.name for p in out.rglob("*")] == ["coco", f".{name}.json.x.tmp"]


def test_export_never_replaces_foreign_masks(annotator):
    state, client = annotator
    (state.output_dir / "clip").mkdir()
    (state.output_dir / "clip" / "00000.png").write_bytes(b"theirs")
    _prompt_two_objects(client)
    r = client.post("/api/export")
    assert r.status_code == 409 and "not written by the annotator" in r.json()["error"]
    assert (state.output_dir / "clip" / "00000.png").read_bytes() == b"theirs"


BAD_REQUESTS = [
    ("get", "/api/frame/14", None, 404, "outside the video"),
    ("get", "/api/frame/-1", None, 404, "outside the video"),
    ("get", "/api/overlay/99", None, 404, "outside the video"),
    ("get", "/api/prompts/abc", None, 422, "frame"),
    ("get", "/api/frame/..%2F..%2Fetc%2Fpasswd", None, None, None),
    ("get", "/static/..%2Fserver.py", None, 404, None),
    ("get", "/static/../state.py", None, 404, None),
    ("get", "/static/%2e%2e/%2e%2e/README.md", None, 404, None),
    ("get", "/api/../../etc/passwd", None, 404, None),
    ("post", "/api/prompt/point", {"obj_id": 1, "frame": 0, "x": 500, "y": 10}, 422, "outside the 128x96 frame"),
    ("post", "/api/prompt/point", {"obj_id": 1, "frame": 0, "x": -1, "y": 10}, 422, "outside"),
    ("post", "/api/prompt/point", {"obj_id": 1, "frame": 20, "x": 5, "y": 10}, 404, "outside the video"),
    ("post", "/api/prompt/point", {"obj_id": 9, "frame": 0, "x": 5, "y": 10}, 404, "unknown object 9"),
    ("post", "/api/prompt/point", {"obj_id": 1, "frame": 0}, 422, "x"),
    ("post", "/api/prompt/box", {"obj_id": 1, "frame": 0, "box": [10, 10, 10, 40]}, 422, "no area"),
    ("post", "/api/prompt/box", {"obj_id": 1, "frame": 0, "box": [1, 2, 3]}, 422, "box"),
    ("patch", "/api/objects/1", {"type": "Chainsaw"}, 422, "unknown instrument type"),
    ("patch", "/api/objects/7", {"name": "x"}, 404, "unknown object 7"),
    ("delete", "/api/objects/7", None, 404, "unknown object 7"),
    ("post", "/api/track", {"direction": "sideways"}, 422, "direction"),
    ("post", "/api/track", {"obj_ids": [7]}, 404, "unknown object 7"),
    ("post", "/api/track/cancel", None, 409, "no tracking"),
    ("post", "/api/preset", {"preset": "../../x"}, 400, "unknown memory preset"),
]


def test_bad_requests_get_one_line_errors_and_change_nothing(annotator):
    state, client = annotator
    client.post("/api/objects", json={"name": "../../etc/passwd"})
    client.post("/api/prompt/point", json={"obj_id": 1, "frame": 0, "x": CLICK_1[0], "y": CLICK_1[1]})
    before = (json.dumps(client.get("/api/info").json(), sort_keys=True), state.store.labels(0).copy())
    for method, path, body, status, message in BAD_REQUESTS:
        r = getattr(client, method)(path, **({"json": body} if body is not None else {}))
        assert 400 <= r.status_code < 500, (path, r.status_code)
        if status is not None:
            assert r.status_code == status, (path, body, r.json())
        error = r.json()["error"]
        assert "\n" not in error and (message is None or message in error), (path, error)
    assert client.post("/api/prompt/point", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    after = (json.dumps(client.get("/api/info").json(), sort_keys=True), state.store.labels(0))
    assert after[0] == before[0]
    np.testing.assert_array_equal(after[1], before[1])
    # the name is data, never a path: export writes only the usual files under output_dir
    client.post("/api/export")
    written = sorted(str(p.relative_to(state.output_dir)) for p in state.output_dir.rglob("*") if p.is_file())
    log = [w for w in written if w.startswith(".annotator/tracked-") and w.endswith(".jsonl")]
    assert len(log) == 1  # the tracked masks (test_annotator_persistence)
    assert written == sorted([SESSION_NAME, ".tsms.lock", log[0], "coco/clip.json", "overlays/clip.mp4",
                              "clip/.annotator_export.json"] + [f"clip/{t:05d}.png" for t in range(14)])
    assert client.get("/api/frame/3").headers["content-type"] == "image/jpeg"
    assert Image.open(__import__("io").BytesIO(client.get("/api/overlay/0").content)).mode == "RGBA"


def test_page_and_static_files(annotator):
    _, client = annotator
    page = client.get("/")
    assert page.status_code == 200 and "static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").status_code == 200


def test_token_required_when_exposed(annotator):
    state, _ = annotator
    token = "s3cret-" + "x" * 32
    client = api_client(create_app(state, token=token))
    for path in ("/", "/api/info", "/api/frame/0", "/static/app.js"):
        r = client.get(path)
        assert r.status_code == 403 and "token" in r.json()["error"]
    assert client.get("/api/info?token=wrong").status_code == 403
    assert client.get("/api/frame/0", headers={"X-Token": token}).status_code == 200
    assert client.get(f"/api/info?token={token}").status_code == 200
    assert client.get("/api/frame/0").status_code == 200  # the cookie that answer set
    assert api_client(create_app(state)).get("/api/info").status_code == 200  # local: no token


def test_cli_errors_are_one_line(two_object_video, mini_checkpoint, tmp_path, capsys, restore_logging):
    from inference.annotate import main
    from utils.cli import run_cli

    video = str(two_object_video[0])
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"not a checkpoint")
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    free_port = str(free.getsockname()[1])
    free.close()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    cases = [
        (["--video_path", str(tmp_path / "missing.mp4"), "--model_cfg", "mini", "--port", free_port], "video not found"),
        (["--video_path", video, "--checkpoint", str(bad_ckpt), "--port", free_port], "bad.pt"),
        (["--video_path", video, "--checkpoint", str(mini_checkpoint), "--model_cfg", "mini", "--port", str(port)], "port in use"),
        (["--video_path", video], "--checkpoint"),
    ]
    try:
        for argv, message in cases:
            assert run_cli(main, argv + ["--output_dir", str(tmp_path / "o")]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("error: ") and "\n" not in err and message in err, err
    finally:
        busy.close()


def test_mp4_video_is_browsed_lazily(two_object_video, predictors, tmp_path):
    import cv2

    video_dir, _ = two_object_video
    writer = cv2.VideoWriter(str(tmp_path / "case.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    for t in range(14):
        writer.write(cv2.imread(str(video_dir / f"{t:05d}.jpg")))
    writer.release()
    state = open_annotator(tmp_path / "case.mp4", predictors, tmp_path / "out")
    client = api_client(create_app(state))
    info = client.get("/api/info").json()
    assert (info["video"], info["num_frames"], info["width"], info["height"]) == ("case", 14, 128, 96)
    frame = cv2.imdecode(np.frombuffer(client.get("/api/frame/9").content, np.uint8), cv2.IMREAD_COLOR)
    expected = cv2.imread(str(video_dir / "00009.jpg"))
    assert frame.shape == (96, 128, 3) and np.abs(frame.astype(int) - expected).mean() < 12  # mp4 + JPEG losses
    assert len(state.session.state["images"]._cache) <= 2
    state.close()


def test_exposed_host_gets_a_token():
    from inference.annotate import parse_args

    args = parse_args(["--video_path", "v.mp4", "--model_cfg", "mini", "--host", "0.0.0.0"])
    assert args.token and len(args.token) >= 32
    assert parse_args(["--video_path", "v.mp4", "--model_cfg", "mini"]).token is None


def test_correction_after_tracking_past_the_memory_window(predictors, tmp_path):
    """A click on frame 20 after tracking 30 frames (outputs evicted behind the memory
    window) is a correction like any other; it crashed in sam2 on the stripped frames."""
    from tests.conftest import make_two_object_video

    make_two_object_video(tmp_path / "clip", num_frames=30)
    state = open_annotator(tmp_path / "clip", predictors, tmp_path / "out")
    try:
        client = api_client(create_app(state))
        _prompt_two_objects(client)
        _track(state, client)
        r = client.post("/api/prompt/point", json={"obj_id": 1, "frame": 20, "x": 60.0, "y": 50.0})
        assert r.status_code == 200, r.text
        job = _track(state, client)
        assert 1 in job["obj_ids"] and job["done"] == 10 and all(state.store.has(t) for t in range(30))
    finally:
        state.close()
