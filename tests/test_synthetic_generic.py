"""The generic synthetic domain (pretraining data) and the pretrain_generic recipe.

* ``--domain surgical`` (the default) writes the same bytes as before the option existed;
* ``--domain generic`` differs in appearance (colour, where objects are) and motion (camera);
* its masks are exact and its files deterministic;
* ``experiment=pretrain_generic`` is SAM2's recipe (uniform sampler, sam2 memory, mini), and
  a run killed after a periodic checkpoint continues with ``resume=auto`` exactly.
"""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data.mask_io import read_label_png
from data.synthetic import main as synthetic_main
from data.synthetic_generic import render_generic_video
from data.synthetic_video import render_video, write_synthetic_dataset
from utils.cli import run_cli
from utils.errors import UserError

pytestmark = pytest.mark.usefixtures("restore_logging")


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


# Written by the code before --domain existed (commit 87eafb8, this venv's cv2/numpy/Pillow):
# every JPEG, PNG and meta.json of two small sets. A change to the surgical output fails here.
BEFORE = {
    "basic": "a3f7d8c4459561815aeb0ea15f9bf6a84d77f0993d0db4b37063c18e887fca32",
    "mixed": "2dee729ab696242b811da486820a4125607858f26128e3bd05eb9937daab04e4",
}


@pytest.mark.parametrize("scenario", ["basic", "mixed"])
def test_default_domain_is_byte_identical_to_before(scenario, tmp_path):
    out = tmp_path / "s"
    num_videos = 3 if scenario == "basic" else 2
    write_synthetic_dataset(out, num_videos, 6, seed=5, speed="mixed", size=(48, 64), write_mp4=False,
                            progress=False, scenario=scenario)
    assert _tree_digest(out) == BEFORE[scenario]
    assert "domain" not in json.loads((out / "meta.json").read_text())


def _frames(domain: str, video: int, num_frames=6, size=64):
    rng = np.random.default_rng([3, video])
    if domain == "generic":
        _, camera, frames = render_generic_video(rng, num_frames, size, size, "slow" if video % 2 == 0 else "fast")
        return [(image, label) for image, label, _ in frames], camera
    _, frames = render_video(rng, num_frames, size, size, "slow" if video % 2 == 0 else "fast")
    return [(f.image, f.label) for f in frames], None


def test_generic_differs_in_appearance_and_motion():
    stats = {}
    for domain in ("surgical", "generic"):
        red, border, hues, pans = [], [], [], []
        for video in range(8):
            frames, camera = _frames(domain, video)
            for image, label in frames:
                mean = image.reshape(-1, 3).mean(axis=0)
                red.append(mean[0] - max(mean[1], mean[2]) > 25)  # reddish tissue
                for obj in np.unique(label[label > 0]):
                    mask = label == obj
                    border.append(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
            hsv = cv2.cvtColor(frames[0][0], cv2.COLOR_RGB2HSV)
            hue = hsv[..., 0].astype(int)
            hues.append(np.median(np.minimum(hue, 180 - hue)))  # OpenCV hue 0..179: distance from red
            if camera is not None:
                pans.append(np.abs(camera[-1] - camera[0]).max())
        stats[domain] = (np.mean(red), np.mean(border), max(hues), pans)
    # surgical: red frames, instruments entering from a border, red hues, a still camera
    assert stats["surgical"][0] == 1.0 and stats["surgical"][1] > 0.95 and stats["surgical"][2] <= 15, stats
    # generic: mostly not red, objects mostly inside the frame, hues all over, a moving camera
    assert stats["generic"][0] < 0.4, stats["generic"]
    assert stats["generic"][1] < 0.5, stats["generic"]
    assert stats["generic"][2] > 45, stats["generic"]
    assert sum(p > 1.0 for p in stats["generic"][3]) >= 3, stats["generic"][3]


def test_generic_masks_are_exact_and_objects_vary():
    shapes, scales = set(), []
    for video in range(6):
        rng = np.random.default_rng([11, video])
        objects, _, frames = render_generic_video(rng, 12, 64, 80, "fast")
        shapes.update(o.shape for o in objects)
        scales.append(max(o.scales.max() / o.scales.min() for o in objects))
        for t, (image, label, full) in enumerate(frames):
            assert image.shape == (64, 80, 3) and image.dtype == np.uint8
            # each object's visible pixels = its silhouette minus the objects drawn over it
            for k in range(len(objects)):
                visible = full[k] & ~full[k + 1:].any(axis=0)
                assert np.array_equal(label == k + 1, visible)
            if t == 0:
                assert all(full[k].sum() > 20 for k in range(len(objects)))  # all in view at the start
    assert len(shapes) >= 3
    assert max(scales) > 1.3  # objects grow and shrink


def test_generic_dataset_is_deterministic_and_recorded(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        write_synthetic_dataset(out, 2, 5, seed=4, size=(48, 48), write_mp4=False, progress=False, domain="generic")
    assert _tree_digest(a) == _tree_digest(b)
    surgical = tmp_path / "s"
    write_synthetic_dataset(surgical, 2, 5, seed=4, size=(48, 48), write_mp4=False, progress=False)
    assert (a / "JPEGImages/video_0000/00000.jpg").read_bytes() != \
        (surgical / "JPEGImages/video_0000/00000.jpg").read_bytes()
    meta = json.loads((a / "meta.json").read_text())
    assert meta["domain"] == "generic" and meta["videos"]["video_0001"]["speed"] == "fast"
    obj = meta["videos"]["video_0000"]["objects"]["1"]
    assert obj["shape"] in ("ellipse", "rectangle", "polygon", "star") and obj["speed_px"] > 0
    assert read_label_png(a / "Prompts/video_0000/00000.png").max() >= 1


def test_cli_domain(tmp_path, capsys):
    out = tmp_path / "g"
    assert synthetic_main(["--out", str(out), "--num_videos", "1", "--num_frames", "3", "--size", "32", "32",
                           "--domain", "generic", "--no_mp4", "--log_level", "WARNING"]) == 0
    assert json.loads((out / "meta.json").read_text())["domain"] == "generic"
    capsys.readouterr()
    code = run_cli(synthetic_main, ["--out", str(tmp_path / "x"), "--num_videos", "1", "--num_frames", "40",
                                    "--domain", "generic", "--scenario", "occlusion", "--size", "32", "32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--domain generic has no scenarios" in err[0]
    with pytest.raises(UserError, match="--domain must be one of"):
        write_synthetic_dataset(tmp_path / "y", 1, 2, size=(32, 32), progress=False, domain="natural")


# ----------------------------------------------------------------- the recipe


@pytest.fixture(scope="module")
def generic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("generic") / "train"
    write_synthetic_dataset(root, 4, 8, seed=0, size=(128, 128), write_mp4=False, progress=False, domain="generic")
    return root


def _tiny(root: Path, run_dir: Path, *extra: str):
    """experiment=pretrain_generic shrunk for tests: 3-frame clips, 1 object, 4 steps."""
    return ["experiment=pretrain_generic", f"data.train.root={root}", "data.train.multiplier=1", f"run_dir={run_dir}",
            "epochs=1", "num_frames=3", "max_num_objects=1", "num_workers=0", "trainer.progress=false",
            "trainer.val_every=0", *extra]


def test_pretrain_generic_is_sam2s_recipe():
    from training.config import compose_train_config

    cfg = compose_train_config(overrides=["experiment=pretrain_generic"])
    assert cfg.name == "pretrain_generic" and cfg.model.config == "mini" and cfg.resolution == 128
    assert cfg.sampler._target_ == "data.samplers.UniformTemporalSampler"
    assert cfg.memory.name == "sam2" and cfg.memory._target_ == "sam2.modeling.memory_attention.MemoryAttention"
    assert cfg.data.train.root == "datasets/pretrain_generic/train" and cfg.run_dir == "runs/pretrain_generic"
    assert cfg.trainer.checkpoint_every_steps == 100


def test_pretrain_generic_killed_run_resumes_exactly(generic_root, tmp_path, monkeypatch, one_torch_thread):
    """A run killed after its periodic step-2 checkpoint, resumed with resume=auto, ends where a
    straight 4-step run ends, bit for bit."""
    from models import read_checkpoint
    from training.config import compose_train_config
    from training.trainer import Trainer, train

    straight = train(compose_train_config(overrides=_tiny(generic_root, tmp_path / "straight")))
    assert straight.state.step == 4
    run = tmp_path / "killed"
    step = Trainer._step

    def dies_at_step_3(self, batch):
        if self.state.step == 2:
            raise KeyboardInterrupt  # the process is killed: nothing after the step-2 checkpoint is saved
        return step(self, batch)

    monkeypatch.setattr(Trainer, "_step", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(compose_train_config(overrides=_tiny(generic_root, run, "trainer.checkpoint_every_steps=2")))
    assert read_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["step"] == 2
    monkeypatch.setattr(Trainer, "_step", step)
    resumed = train(compose_train_config(overrides=_tiny(generic_root, run, "trainer.checkpoint_every_steps=2",
                                                         "resume=auto")))
    assert [h["step"] for h in resumed.history] == [3, 4]
    assert [h["loss_total"] for h in resumed.history] == [h["loss_total"] for h in straight.history[2:]]
    a = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    b = read_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
