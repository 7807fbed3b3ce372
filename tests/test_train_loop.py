"""The trainer on tiny synthetic data (CPU, mini model): overfitting, exact resume, DDP, NaN stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data import ClipTransforms, UniformTemporalSampler, VOSDataset, collate_clips
from models import build_model, read_checkpoint
from training.config import compose_train_config
from training.losses import SAM2VideoLoss
from training.model import TRAIN_MODEL_TARGET
from training.optim import build_param_groups
from training.prompts import PromptConfig
from training.trainer import TrainingDivergedError, train

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """4 synthetic videos of 8 frames at 128 px (VOS layout)."""
    from data.synthetic_video import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic") / "synthetic"
    write_synthetic_dataset(root, num_videos=4, num_frames=8, seed=0, size=(128, 128), write_mp4=False, progress=False)
    return root


def tiny_overrides(root: Path, run_dir: Path, *extra: str):
    """The synthetic_tiny experiment shrunk for tests: 3-frame clips, 1 object, 1 clip per step."""
    return [
        "experiment=synthetic_tiny",
        f"data.train.root={root}",
        f"data.val.root={root}",
        "data.train.multiplier=1",
        f"run_dir={run_dir}",
        "epochs=1",
        "batch_size=1",
        "num_frames=3",
        "max_num_objects=1",
        "num_workers=0",
        "trainer.progress=false",
        "trainer.val_every=0",
        "model.prompts.num_correction_clicks=1",
        *extra,
    ]


def _state_dict(path):
    return read_checkpoint(path)["model"]


def test_overfit_one_clip(synthetic_root):
    """30 steps on one fixed clip lower the total loss by at least 50%."""
    dataset = VOSDataset(synthetic_root, UniformTemporalSampler(4), ClipTransforms(128, augment=False), max_num_objects=1)
    batch = collate_clips([dataset.get_clip(0, epoch=0)])
    torch.manual_seed(0)
    model = build_model(config="mini", mode="train", memory="tsms", model_target=TRAIN_MODEL_TARGET)
    prompts = PromptConfig(prob_point_input=0.0)  # mask prompt on frame 0, track the rest
    optimizer = torch.optim.AdamW(build_param_groups(model, 2e-3, 2e-3, weight_decay=0.01, layer_decay=1.0))
    loss_fn, history = SAM2VideoLoss(), []
    for step in range(31):
        torch.manual_seed(step)
        loss = loss_fn(model(batch, torch.Generator().manual_seed(0), prompts), batch.masks)["loss_total"]
        history.append(loss.item())
        if step < 30:
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    assert history[30] <= 0.5 * history[0], history
    assert min(history[25:]) < history[5], history  # still improving after the first drop


def test_resume_is_bit_identical(synthetic_root, tmp_path):
    """4 steps straight == 2 steps, stop, resume=auto, 2 more steps (parameters and optimizer)."""
    straight = train(compose_train_config(overrides=tiny_overrides(synthetic_root, tmp_path / "straight")))
    assert straight.state.step == 4 and straight.state.epoch == 1
    run = tmp_path / "resumed"
    first = train(compose_train_config(overrides=tiny_overrides(synthetic_root, run, "trainer.max_steps=2")))
    assert (first.state.step, first.state.epoch, first.state.batch_in_epoch) == (2, 0, 2)
    second = train(compose_train_config(overrides=tiny_overrides(synthetic_root, run, "resume=auto")))
    assert second.state.step == 4 and [h["step"] for h in second.history] == [3, 4]
    assert [h["loss_total"] for h in second.history] == [h["loss_total"] for h in straight.history[2:]]
    a = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = read_checkpoint(run / "checkpoints" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
    assert a["train_state"] == b["train_state"]


def test_checkpoint_embeds_a_config_the_predictor_rebuilds_from(synthetic_root, tmp_path):
    from models import build_tsms_sam2_video_predictor

    summary = train(compose_train_config(overrides=tiny_overrides(synthetic_root, tmp_path, "trainer.max_steps=1")))
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["format"] == "tsms-sam2" and ckpt["config"]["model"]["_target_"] == "sam2.modeling.sam2_base.SAM2Base"
    assert ckpt["train_config"]["name"] == "synthetic_tiny" and ckpt["train_state"]["step"] == 1
    predictor = build_tsms_sam2_video_predictor(ckpt_path=str(tmp_path / "checkpoints" / "last.pt"), memory=None)
    trained = summary.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in predictor.state_dict().items())
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "git_sha.txt").read_text().strip()


def test_nan_loss_stops_with_the_step_and_writes_nothing(synthetic_root, tmp_path, monkeypatch):
    original = SAM2VideoLoss.total
    calls = []

    def poisoned(self, losses):
        calls.append(1)
        total = original(self, losses)
        return total * float("nan") if len(calls) == 3 else total

    monkeypatch.setattr(SAM2VideoLoss, "total", poisoned)
    cfg = compose_train_config(overrides=tiny_overrides(synthetic_root, tmp_path, "trainer.checkpoint_every_steps=1"))
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 2 \(epoch 0") as err:
        train(cfg)
    assert "\n" not in str(err.value) and "no checkpoint was written" in str(err.value)
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["train_state"]["step"] == 2  # the last good one
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


DDP_WORKER = """
import os, sys
sys.path.insert(0, {repo!r})
import torch
from training.config import compose_train_config
from training.trainer import train
summary = train(compose_train_config(overrides={overrides!r}))
torch.save(summary.model.state_dict(), os.path.join({out!r}, "rank%s.pt" % os.environ["RANK"]))
"""


def test_ddp_two_gloo_processes_end_identical(synthetic_root, tmp_path):
    """torchrun with 2 CPU processes (gloo): 2 steps, and both ranks hold the same parameters."""
    overrides = tiny_overrides(synthetic_root, tmp_path / "run", "trainer.max_steps=2")
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER.format(repo=str(REPO), overrides=overrides, out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    saved = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["train_state"]["step"] == 2  # 4 clips / (2 ranks x batch 1) = 2 steps
    assert all(torch.equal(saved["model"][k], rank0[k]) for k in rank0)
