"""Building every SAM2 size, config overrides, memory presets and checkpoint IO."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from sam2.modeling.memory_attention import MemoryAttention

from models import (
    CheckpointError,
    TSMSMemoryAttention,
    build_model,
    build_tsms_sam2_video_predictor,
    read_checkpoint,
    resolve_model_config,
    save_checkpoint,
)
from models.config import SAM2_SIZE_ALIASES
from tests.conftest import MINI_OVERRIDES
from tests.test_parity import assert_outputs_equal, run_scenario
from utils.errors import UserError


@pytest.mark.parametrize("alias", sorted(SAM2_SIZE_ALIASES))
def test_every_size_config_resolves(alias):
    cfg = resolve_model_config(alias)
    assert cfg.model.image_encoder.trunk._target_.endswith("Hiera")


@pytest.mark.parametrize(
    "name,embed_dim,blocks",
    [("tiny", 96, 12), ("small", 96, 16), ("base_plus", 112, 24), ("sam2_tiny", 96, 12)],
)
def test_build_sam2_sizes(name, embed_dim, blocks):
    model = build_model(config=name)
    assert model.image_encoder.trunk.patch_embed.proj.out_channels == embed_dim
    assert len(model.image_encoder.trunk.blocks) == blocks
    assert isinstance(model.memory_attention, TSMSMemoryAttention)


def test_sam2_package_config_names_and_paths_resolve():
    a = resolve_model_config("configs/sam2.1/sam2.1_hiera_s.yaml")
    b = resolve_model_config("sam2.1_hiera_s")
    c = resolve_model_config("small")
    assert a == b == c


def test_mini_config_equals_sam2_tiny_with_overrides():
    """Keeps MINI_OVERRIDES (used to build the mini model with sam2's own builder) in sync."""
    ours = resolve_model_config("mini")
    theirs = resolve_model_config("tiny", MINI_OVERRIDES)
    assert OmegaConf.to_container(ours) == OmegaConf.to_container(theirs)


def test_mini_model_is_small_and_fast():
    model = build_model(config="mini")
    assert sum(p.numel() for p in model.parameters()) < 3e6
    assert model.image_size == 128
    with torch.no_grad():
        out = model.forward_image(torch.randn(1, 3, 128, 128))
    assert out["vision_features"].shape == (1, 64, 8, 8)


def test_overrides_follow_hydra_semantics():
    cfg = resolve_model_config("mini", ["model.image_size=256", "++model.new_key=1e-6", "~model.compile_image_encoder"])
    assert cfg.model.image_size == 256 and cfg.model.new_key == pytest.approx(1e-6)
    assert "compile_image_encoder" not in cfg.model
    with pytest.raises(UserError, match="no such key"):
        resolve_model_config("mini", ["model.imagesize=256"])
    with pytest.raises(UserError, match="already exists"):
        resolve_model_config("mini", ["+model.image_size=256"])
    with pytest.raises(UserError, match="model config not found"):
        resolve_model_config("no_such_model")


def test_memory_presets_and_options():
    model = build_model(config="mini", memory="tsms", memory_overrides={"pruning_threshold": 0.8, "memory_bank_size": 5})
    cfg, mem = model.tsms_config, model.tsms_config.model.memory_attention
    assert (cfg.model.num_maskmem, mem.memory_bank_size, mem.pruning_threshold) == (5, 5, 0.8)
    assert model.memory_spec.describe() == "tsms (memory_bank_size=5, pruning_threshold=0.8)"
    model = build_model(config="mini", memory="surgsam2")
    assert isinstance(model.memory_attention, TSMSMemoryAttention) and not model.memory_attention.use_mem_split
    stock = build_model(config="mini", memory="sam2")
    assert type(stock.memory_attention) is MemoryAttention and stock.memory_spec.name == "sam2"
    # the bank size follows num_maskmem when it is overridden later
    model = build_model(config="mini", memory="tsms", overrides=["model.num_maskmem=9"])
    assert model.tsms_config.model.memory_attention.memory_bank_size == 9 and model.memory_spec.memory_bank_size == 9
    with pytest.raises(UserError, match="unknown memory"):
        build_model(config="mini", memory="tsms_turbo")
    with pytest.raises(UserError, match="need a TSMS memory"):
        build_model(config="mini", memory="sam2", memory_overrides={"prune_frames": 4})
    with pytest.raises(UserError, match="unknown memory option"):
        build_model(config="mini", memory="tsms", memory_overrides={"prune": 4})
    with pytest.raises(UserError, match="unknown similarity"):
        build_model(config="mini", memory="tsms", memory_overrides={"similarity": "l1"})


# ---------------------------------------------------------------- checkpoints
def test_official_checkpoint_loads_strictly(mini_checkpoint):
    model = build_model(config="mini", checkpoint=str(mini_checkpoint), memory="tsms")
    sd = torch.load(mini_checkpoint, weights_only=True)["model"]
    assert model.state_dict().keys() == sd.keys()
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


def test_wrong_size_checkpoint_names_the_mismatch(mini_checkpoint):
    with pytest.raises(CheckpointError) as err:
        build_model(config="tiny", checkpoint=str(mini_checkpoint))
    msg = str(err.value)
    assert "Hiera embed_dim=32, 5 blocks" in msg and "SAM2.1 tiny (Hiera embed_dim=96, 12 blocks)" in msg
    assert "shape mismatches" in msg and "\n" not in msg


def test_official_checkpoint_without_config_is_refused(mini_checkpoint):
    with pytest.raises(CheckpointError, match="needs a config|need a config"):
        build_tsms_sam2_video_predictor(None, str(mini_checkpoint))


@pytest.mark.parametrize("kind", ["text", "dict", "no_sam2", "pickle", "missing"])
def test_bad_checkpoint_files(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    if kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "dict":
        torch.save({"state": 1}, path)
    elif kind == "no_sam2":
        torch.save({"model": {"fc.weight": torch.zeros(2)}}, path)
    elif kind == "pickle":  # arbitrary objects are refused by weights_only loading
        path.write_bytes(pickle.dumps({"model": np.dtype("float32")}, protocol=2))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)


def test_our_checkpoint_round_trip(mini_checkpoint, two_object_video, tmp_path):
    video_dir, masks = two_object_video
    options = {"pruning_threshold": 0.2, "similarity": "cosine"}
    model = build_tsms_sam2_video_predictor("mini", str(mini_checkpoint), memory="tsms", memory_options=options)
    before, _ = run_scenario(model, video_dir, masks, "forward")
    path = save_checkpoint(tmp_path / "tsms.pt", model, model.tsms_config, epoch=3)
    assert not list(tmp_path.glob("*.tmp"))
    ckpt = read_checkpoint(path)
    assert ckpt["format"] == "tsms-sam2" and ckpt["epoch"] == 3
    rebuilt = build_tsms_sam2_video_predictor(ckpt_path=str(path), memory=None)
    mem = rebuilt.memory_attention
    assert isinstance(mem, TSMSMemoryAttention) and (mem.pruning_threshold, mem.similarity) == (0.2, "cosine")
    after, _ = run_scenario(rebuilt, video_dir, masks, "forward")
    assert_outputs_equal(before, after)


def test_failed_save_leaves_no_file(tmp_path):
    model = build_model(config="mini")
    with pytest.raises(Exception):
        save_checkpoint(tmp_path / "bad.pt", model, model.tsms_config, bad=lambda: None)
    assert list(tmp_path.iterdir()) == []
