"""ONNX export + the onnxruntime tracking loop (issue 26), on the random mini model.

One export (module fixture) serves every test: it is checked against PyTorch on export,
then tracked with the host loop and compared with PyTorch tracking per frame, for the
sam2, tsms and tsms_fast memories, with mask, click and box prompts on several objects.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference import onnx_memory
from inference.onnx_backend import OnnxVideoPredictor, read_manifest
from models import TrackingSession, build_model
from models.memory_pruning import SimilarityHistory, select_frames_to_prune
from models.memory_spec import MemorySpec
from models.onnx_export import RealRoPEAttention, real_rope_copy, resize_matrix
from tests.conftest import make_two_object_video
from utils.bootstrap import REPO_ROOT
from utils.errors import UserError

NUM_FRAMES = 10  # > num_maskmem: the MS rule acts on the last frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_video") / "clip"
    return folder, make_two_object_video(folder, num_frames=NUM_FRAMES)


@pytest.fixture(scope="module")
def export(tmp_path_factory, mini_checkpoint):
    from models.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "mini"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # far faster than 2 on shared cores (see conftest's one_torch_thread)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            manifest = export_onnx(checkpoint=mini_checkpoint, model_cfg="mini", out=out)
    finally:
        torch.set_num_threads(threads)
    return out, manifest


# ---------------------------------------------------------------------- pieces equal to PyTorch
def test_real_valued_rope_equals_sam2s_complex_rope():
    torch.manual_seed(0)
    model = build_model(config="mini", memory="tsms")
    hw, cm = 64, 32
    attention = real_rope_copy(model.memory_attention, hw)
    swapped = [m for m in attention.modules() if isinstance(m, RealRoPEAttention)]
    assert len(swapped) == 4  # self- and cross-attention of both layers
    originals = [m for m in model.memory_attention.modules() if type(m).__name__ == "RoPEAttention"]
    q = torch.randn(1, hw, 64)
    for n_frames, n_ptr in ((1, 4), (5, 12), (3, 0)):
        k = torch.randn(1, n_frames * hw + n_ptr, cm)
        for real, complex_ in ((swapped[0], originals[0]), (swapped[1], originals[1])):
            kk = q if real.rope_k_repeat is False else k
            with torch.no_grad():
                want = complex_(q, kk, kk, num_k_exclude_rope=n_ptr if complex_.rope_k_repeat else 0)
                got = real(q, kk, kk, num_k_exclude_rope=n_ptr if real.rope_k_repeat else 0)
            assert (got - want).abs().max() <= 1e-6
    # the model used for tracking is untouched
    assert not any(isinstance(m, RealRoPEAttention) for m in model.modules())


def test_numpy_resizes_and_bf16_equal_torch():
    torch.manual_seed(0)
    for n_in, n_out, aa in ((96, 128, True), (854, 128, True), (128, 32, True), (32, 96, False), (32, 854, False)):
        assert np.abs(onnx_memory.resize_matrix(n_in, n_out, aa) - resize_matrix(n_in, n_out, aa).numpy()).max() < 1e-6
    x = torch.randn(1, 1, 32, 32) * 10
    got = onnx_memory.resize(x.numpy(), (96, 128))
    want = F.interpolate(x, size=(96, 128), mode="bilinear", align_corners=False).numpy()
    assert np.abs(got - want).max() < 1e-4  # float32 rounding on logits up to ~40
    for side, k in ((8, 2), (7, 2), (9, 4)):  # TSMS pooling, divisible or not
        x = torch.randn(side * side, 2, 5)
        want = F.avg_pool2d(x.reshape(side, side, 2, 5).permute(2, 3, 0, 1), k, ceil_mode=True)
        want = want.flatten(2).permute(2, 0, 1).numpy()
        assert np.abs(onnx_memory.avg_pool_tokens(x.numpy(), side, k) - want).max() < 1e-6
    y = torch.randn(4096) * 100
    assert np.array_equal(onnx_memory.round_to_bf16(y.numpy()), y.to(torch.bfloat16).float().numpy())


def _memories(n, hw=16, c=8, seed=0):
    """n memory frames [n, HW, 1, C]; frames 2 and n-3 are near copies of 0 and n-1."""
    rng = np.random.default_rng(seed)
    frames = rng.standard_normal((n, hw, 1, c)).astype(np.float32)
    frames[2] = frames[0] + 0.05 * rng.standard_normal((hw, 1, c))
    frames[n - 3] = frames[n - 1] + 0.1 * rng.standard_normal((hw, 1, c))
    return frames


@pytest.mark.parametrize("preset", ["tsms", "tsms_fast", "surgsam2"])
@pytest.mark.parametrize("similarity", ["cosine_spatial", "cosine"])
def test_numpy_ms_rule_equals_torch(preset, similarity):
    spec = MemorySpec.preset(preset).replace(similarity=similarity)
    kwargs = {k: v for k, v in spec.module_kwargs().items() if k in
              ("memory_bank_size", "prune_frames", "use_mem_split", "similarity", "pruning_threshold")}
    decisions = 0
    for n in range(1, 10):
        for seed in range(3):
            frames = _memories(max(n, 4), seed=seed)[:n] if n >= 4 else np.random.default_rng(seed).standard_normal((n, 16, 1, 8)).astype(np.float32)
            want = select_frames_to_prune(torch.from_numpy(frames), **kwargs)
            got = onnx_memory.select_frames_to_prune(frames, **kwargs)
            assert got == want, (n, seed)
            decisions += bool(want)
            for threshold in (0.5, 0.95):
                kw = dict(kwargs, pruning_threshold=threshold)
                assert onnx_memory.select_frames_to_prune(frames, **kw) == select_frames_to_prune(torch.from_numpy(frames), **kw)
    assert decisions > 5  # the rule acted (planted near-copies are dropped)
    # the dynamic threshold: the same histories give the same decisions, call after call
    kw = dict(kwargs, pruning_threshold="auto")
    ours, theirs = onnx_memory.SimilarityHistory(), SimilarityHistory()
    for seed in range(12):
        frames = _memories(7, seed=seed)
        assert onnx_memory.select_frames_to_prune(frames, history=ours, **kw) == \
            select_frames_to_prune(torch.from_numpy(frames), history=theirs, **kw)
    assert ours.scores.keys() == theirs.scores.keys() and sum(map(len, ours.scores.values())) >= 8


# ---------------------------------------------------------------------- the export
def test_export_writes_checked_graphs_and_manifest(export, mini_checkpoint):
    out, manifest = export
    assert read_manifest(out) == manifest == json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"image_encoder", "mask_prompt", "sam_heads_multi", "sam_heads_single",
                                       "memory_attention", "memory_encoder", "obj_ptr_tpos"}
    for name, graph in manifest["graphs"].items():
        assert (out / graph["file"]).is_file()
        assert graph["max_abs_error"] is not None and graph["max_abs_error"] < 1e-4, name
    assert manifest["graphs"]["memory_attention"]["dynamic_axes"]["memory"] == {"0": "memory_tokens", "1": "batch"}
    shapes = manifest["graphs"]["memory_attention"]["shapes"]
    assert shapes["memory"] == ["memory_tokens", "batch", 32] and shapes["pix_feat_with_mem"][1:] == [64, 8, 8]
    assert manifest["graphs"]["image_encoder"]["shapes"]["image"] == [1, 3, 128, 128]
    assert manifest["settings"]["image_size"] == 128 and manifest["settings"]["num_maskmem"] == 7
    assert manifest["memory"]["name"] == "tsms"  # an official file + a config file: our default memory
    assert len(manifest["checkpoint"]["sha256"]) == 64 and manifest["versions"]["onnxruntime"]


def _track(predictor, video, masks, tracker="torch", correct=False):
    """Mask prompt (object 1, frame 0), a click (object 2, frame 0), a box (object 3, frame 2);
    with ``correct``, then a correction click on tracked frame 6 and tracking from there
    backwards and forwards. Returns the prompt results, {(pass, frame): result}, tokens."""
    source = video
    if tracker == "torch":
        from inference.video_sources import ImageFolderSource
        source = ImageFolderSource(video)
    with TrackingSession(predictor, source) as session:
        prompts = [session.add_mask(0, 1, masks[1][0]), session.add_points(0, 2, [[100, 65]], [1]),
                   session.add_box(2, 3, [60, 20, 110, 60])]
        frames = {(0, r.frame_idx): r for r in session.propagate()}
        if correct:
            prompts.append(session.add_points(6, 1, [[70, 45], [20, 80]], [1, 0]))
            frames.update({(1, r.frame_idx): r for r in session.propagate(direction="reverse", start_frame=6, max_frames=3)})
            frames.update({(2, r.frame_idx): r for r in session.propagate(start_frame=6)})
        return prompts, frames, session.attended_tokens_per_frame()


def _iou(a, b):
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


@pytest.mark.parametrize("preset", ["sam2", "tsms", "tsms_fast", "tsms_pool"])
def test_onnxruntime_tracks_like_pytorch(export, clip, mini_checkpoint, preset, one_torch_thread):
    out, _ = export
    video, masks = clip
    spec = MemorySpec.preset(preset)
    correct = preset == "tsms"  # corrections (clicks on a tracked frame) and reverse tracking, once
    torch_predictor = build_model(config="mini", checkpoint=str(mini_checkpoint), memory=preset, predictor=True)
    prompts_t, frames_t, tokens_t = _track(torch_predictor, video, masks, correct=correct)
    prompts_o, frames_o, tokens_o = _track(OnnxVideoPredictor(out, memory=spec.as_dict()), video, masks, "onnx", correct)
    for a, b in zip(prompts_t, prompts_o):
        assert a.obj_ids == b.obj_ids and np.array_equal(a.masks(), b.masks())
    assert sorted(frames_t) == sorted(frames_o)
    assert len(frames_t) == NUM_FRAMES + (4 + 4 if correct else 0)  # reverse 6..3, forward 6..9
    ious, area, worst = [], 0, 0.0
    for key in frames_t:
        a, b = frames_t[key].masks(), frames_o[key].masks()
        assert frames_t[key].obj_ids == frames_o[key].obj_ids == [1, 2, 3]
        ious += [_iou(a[k], b[k]) for k in range(3)]
        area += int(a.sum())
        worst = max(worst, float((frames_t[key].mask_logits - frames_o[key].mask_logits).abs().max()))
    assert area > 1000 and min(ious) >= 0.99
    # ~1e-6 here; a host loop that skipped sam2's bf16 storage of memory features is off by ~1e-5
    assert worst < 5e-6
    assert tokens_t == tokens_o  # the same memory kept, frame by frame
    if preset != "sam2":
        full = 7 * 64
        assert min(tokens_o.values()) < max(tokens_o.values()) and any(t < full for t in list(tokens_o.values())[6:])


def test_removing_an_object_tracks_the_others_like_pytorch(export, clip, mini_checkpoint, one_torch_thread):
    from inference.video_sources import ImageFolderSource

    out, _ = export
    video, masks = clip
    results = {}
    for name, predictor, source in (
            ("torch", build_model(config="mini", checkpoint=str(mini_checkpoint), memory="tsms", predictor=True),
             ImageFolderSource(video)),
            ("onnx", OnnxVideoPredictor(out, memory=MemorySpec.preset("tsms").as_dict()), video)):
        with TrackingSession(predictor, source) as session:
            session.add_mask(0, 1, masks[1][0])
            session.add_mask(0, 2, masks[2][0])
            list(session.propagate(max_frames=3))
            session.remove_object(1)
            results[name] = [(r.obj_ids, r.masks()) for r in session.propagate(max_frames=6)]
    assert len(results["torch"]) == len(results["onnx"]) == 7
    for (ids_t, m_t), (ids_o, m_o) in zip(results["torch"], results["onnx"]):
        assert ids_t == ids_o == [2] and _iou(m_t[0], m_o[0]) >= 0.99


def test_live_stream_on_onnxruntime_equals_offline(export, tmp_path):
    """A live source (frames arrive one by one, the end comes as EndOfStream) gives the
    offline masks, and stops cleanly at its end."""
    from PIL import Image

    from data.mask_io import read_label_png
    from inference.predict import segment_video
    from inference.prompts import Prompt
    from inference.video_sources import StreamSource, open_video_source

    out, _ = export
    n = 18  # >= 16 frames: sam2 then reads the same object-pointer window as for a stream
    video = tmp_path / "src" / "clip"
    masks = make_two_object_video(video, num_frames=n)
    predictor = OnnxVideoPredictor(out)
    frames = (np.array(Image.open(p).convert("RGB")) for p in sorted(video.glob("*.jpg")))
    prompt = Prompt(obj_id=1, frame_idx=0, mask=masks[1][0])
    live = segment_video(predictor, StreamSource(frames, name="live"), [prompt], tmp_path / "live")
    offline = segment_video(predictor, open_video_source(video), [prompt], tmp_path / "off")
    assert live.live and live.frames == offline.frames == n
    for t in range(n):
        a = read_label_png(tmp_path / "live" / "live" / f"{t:05d}.png")
        assert np.array_equal(a, read_label_png(tmp_path / "off" / "clip" / f"{t:05d}.png")) and (t > 0 or a.any())


def test_runtime_needs_no_torch(export, clip):
    """The runtime imports and tracks with torch unimportable (as on a deployment box)."""
    out, _ = export
    video, masks = clip
    np.save(out.parent / "prompt.npy", masks[1][0])
    code = f"""
import sys
sys.modules["torch"] = None  # 'import torch' now raises ImportError
import numpy as np
from inference.onnx_backend import OnnxVideoPredictor
p = OnnxVideoPredictor({str(out)!r}, memory={{"name": "tsms_fast", "use_mem_split": False, "prune_frames": 5}})
s = p.init_state({str(video)!r})
p.add_new_mask(s, 0, 1, np.load({str(out.parent / "prompt.npy")!r}))
areas = [int((m[:, 0] > 0).sum()) for _, _, m in p.propagate_in_video(s, max_frame_num_to_track=4)]
assert not any(k == "torch" or k.startswith("torch.") for k, v in sys.modules.items() if v is not None)
print(areas)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    areas = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(areas) == 5 and areas[0] > 100


# ---------------------------------------------------------------------- bad input
def _cli(main, *args) -> int:
    from utils.cli import run_cli

    return run_cli(main, [str(a) for a in args])


def test_export_refuses_bad_input(tmp_path, mini_checkpoint, capsys, restore_logging):
    from inference.export_onnx import main

    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("not a checkpoint")
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep me")
    cases = [
        (["--checkpoint", not_ckpt, "--model_cfg", "mini", "--out", tmp_path / "a"], "not plain weights"),
        (["--checkpoint", mini_checkpoint, "--model_cfg", "mini", "--out", tmp_path / "b", "--size", "100"], "multiple of 64"),
        (["--checkpoint", mini_checkpoint, "--model_cfg", "mini", "--out", full], "refusing to write over it"),
    ]
    for args, message in cases:
        assert _cli(main, *args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("error:") and message in lines[-1], lines[-3:]
    assert (full / "mine.txt").read_text() == "keep me" and sorted(p.name for p in full.iterdir()) == ["mine.txt"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_loader_refuses_other_versions_and_damaged_files(export, tmp_path):
    import shutil

    out, manifest = export
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "manifest.json").write_text(json.dumps(dict(manifest, format_version=99)))
    with pytest.raises(UserError, match="format version 99"):
        OnnxVideoPredictor(copy)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with open(copy / "obj_ptr_tpos.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match="does not match its manifest"):
        OnnxVideoPredictor(copy)
    with pytest.raises(UserError, match="no manifest.json"):
        OnnxVideoPredictor(tmp_path)
    with pytest.raises(UserError, match="memory_bank_size 5 differs"):
        OnnxVideoPredictor(out, memory={"memory_bank_size": 5})


def test_predict_video_onnxruntime_backend(export, clip, tmp_path, capsys, restore_logging):
    from data.mask_io import read_label_png, write_label_png
    from inference.predict_video import main

    out, _ = export
    video, masks = clip
    prompt = tmp_path / "first.png"
    write_label_png(prompt, masks[1][0].astype(np.uint8) + 2 * masks[2][0].astype(np.uint8))
    results = tmp_path / "results"
    assert _cli(main, "--backend", "onnxruntime", "--onnx_dir", out, "--video_path", video, "--mask_path", prompt,
                "--memory", "tsms_fast", "--output_dir", results, "--quiet") == 0
    pngs = sorted((results / "clip").glob("*.png"))
    assert len(pngs) == NUM_FRAMES and set(np.unique(read_label_png(pngs[-1]))) <= {0, 1, 2}
    summary = json.loads((results / "summary.json").read_text())
    run = summary["runs"][-1] if "runs" in summary else summary
    assert "onnxruntime" in json.dumps(run) and "tsms_fast" in json.dumps(run)
    capsys.readouterr()
    assert _cli(main, "--backend", "onnxruntime", "--video_path", video, "--mask_path", prompt) == 2
    assert "needs --onnx_dir" in capsys.readouterr().err


@pytest.mark.slow
def test_speed_benchmark_runs_both_backends(tmp_path, restore_logging):
    from eval import benchmark_speed

    out = tmp_path / "speed"
    argv = ["--models", "mini", "--sizes", "128", "--frames", "10", "--repeats", "1", "--memories", "tsms",
            "--backends", "torch", "onnxruntime", "--threads", "1", "--out", str(out)]
    assert benchmark_speed.main(argv) == 0
    rows = {r["predictor"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert set(rows) == {"sam2 (Meta)", "ours (tsms, fp32)", "onnxruntime (tsms, fp32)"}
    onnx = rows["onnxruntime (tsms, fp32)"]
    assert onnx["time_vs_torch_same_memory"] > 0 and onnx["memory_tokens"] == rows["ours (tsms, fp32)"]["memory_tokens"]
    assert "time vs PyTorch" in out.with_suffix(".md").read_text()


def test_parity_report_on_a_vos_split(export, mini_checkpoint, tmp_path, one_torch_thread, restore_logging, capsys):
    """eval/onnx_parity.py, the script the lead runs on the trained checkpoint, on a tiny split."""
    from data.mask_io import write_label_png
    from eval.onnx_parity import main

    out, _ = export
    root = tmp_path / "split"
    gt = make_two_object_video(root / "JPEGImages" / "v1", num_frames=8, seed=3)
    (root / "Annotations" / "v1").mkdir(parents=True)
    for t in range(8):
        write_label_png(root / "Annotations" / "v1" / f"{t:05d}.png", (gt[1][t] + 2 * gt[2][t]).astype(np.uint8))
    report = tmp_path / "report"
    assert _cli(main, "--checkpoint", mini_checkpoint, "--model_cfg", "mini", "--dataset_dir", root, "--onnx_dir", out,
                "--memories", "sam2", "tsms_fast", "--out", report) == 0
    rows = json.loads((report / "onnx_parity.json").read_text())["rows"]
    assert [r["memory"] for r in rows] == ["sam2", "tsms_fast"]
    for r in rows:
        assert r["frames"] == 8 and r["min_iou"] >= 0.99 and abs(r["dice_torch"] - r["dice_onnx"]) < 1e-3
    assert "| tsms_fast | 1 | 8 |" in capsys.readouterr().out
    assert _cli(main, "--checkpoint", mini_checkpoint, "--model_cfg", "mini", "--dataset_dir", root, "--onnx_dir", out,
                "--out", report) == 2  # never over an earlier report
