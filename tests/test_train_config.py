"""Every training config composes and instantiates; parameter groups and the schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models import MemorySpec, TSMSMemoryAttention
from training.builders import build_dataset, build_loss, build_optimizer, build_sampler, build_train_model
from training.config import DEFAULT_CONFIG, compose_train_config, legacy_flag_overrides, parse_cli
from training.optim import CosineSchedule, build_param_groups, freeze_image_encoder
from utils.errors import UserError

CONFIGS = Path(DEFAULT_CONFIG).parent
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
GROUP_OPTIONS = [
    (group, p.stem)
    for group in ("model_size", "data", "sampler", "memory", "optim", "trainer")
    for p in sorted((CONFIGS / group).glob("*.yaml"))
]
# data_root layout each data option expects
DATA_DIRS = ["EndoVis2017/train", "EndoVis2017/valid", "EndoVis2018/train", "EndoVis2018/valid", "synthetic",
             "synthetic_val"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """One tiny synthetic VOS tree, linked under every name the data configs use."""
    from data.synthetic_video import write_synthetic_dataset

    base = tmp_path_factory.mktemp("data")
    source = base / "source"
    write_synthetic_dataset(source, num_videos=2, num_frames=10, seed=0, size=(64, 64), write_mp4=False, progress=False)
    root = base / "datasets"
    for name in DATA_DIRS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(source, target_is_directory=True)
    return root


def test_every_config_group_has_its_options():
    assert {"endovis17", "endovis18", "synthetic_tiny"} <= set(EXPERIMENTS)
    options = {(g, o) for g, o in GROUP_OPTIONS}
    for expected in [("data", "endovis17"), ("data", "endovis18"), ("data", "synthetic"), ("sampler", "uniform"),
                     ("sampler", "multiscale"), ("sampler", "motion_adaptive"), ("memory", "sam2"),
                     ("memory", "tsms"), ("model_size", "small"), ("model_size", "mini")]:
        assert expected in options


def test_paper_defaults():
    cfg = compose_train_config()
    assert (cfg.resolution, cfg.num_frames, cfg.max_num_objects, cfg.batch_size, cfg.epochs) == (512, 8, 3, 2, 30)
    assert cfg.base_lr == cfg.vision_lr == 5e-5 and cfg.model.config == "small"
    pg = cfg.optim.param_groups
    assert (pg.weight_decay, pg.layer_decay, cfg.optim.grad_clip.max_norm) == (0.1, 0.9, 0.1)
    assert cfg.optim.scheduler.final_lr_ratio == 0.1 and cfg.optim.amp.dtype == "bfloat16"
    assert dict(cfg.loss.weights) == {"mask": 20.0, "dice": 1.0, "iou": 1.0, "cls": 1.0}
    assert cfg.model.prompts.prob_point_input == 0.5 and cfg.model.prompts.prob_box_input == 0.5
    assert list(cfg.temporal_scales) == [1, 2] and cfg.memory_bank_size == 7 and cfg.pruning_threshold is None


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_compose(experiment):
    cfg = compose_train_config(overrides=[f"experiment={experiment}"])
    assert cfg.name and cfg.data.train.root and cfg.model.config


@pytest.mark.parametrize("group,option", GROUP_OPTIONS)
def test_group_options_compose_and_instantiate(group, option, data_root, tmp_path):
    """Each option on top of the tiny experiment: data, sampler, loss, optimizer and the model build."""
    overrides = ["experiment=synthetic_tiny", f"{group}={option}", f"data_root={data_root}", f"run_dir={tmp_path}",
                 "num_frames=4"]
    if group == "model_size" and option != "mini":
        overrides += ["model.checkpoint=null"]  # no official weights in CI; the architecture still builds
    if group == "memory" and not MemorySpec.preset(option).trains:
        with pytest.raises(UserError, match="is an inference-time rule"):  # training-free by its authors
            compose_train_config(overrides=overrides)
        return
    cfg = compose_train_config(overrides=overrides)
    dataset = build_dataset(cfg, "train", seed=0)
    clip = dataset[0]
    assert clip.frames.shape == (4, 3, cfg.resolution, cfg.resolution)
    assert build_dataset(cfg, "val", seed=0) is not None
    build_loss(cfg)
    if group == "model_size" and option in ("base_plus", "large"):
        return  # building them is covered by the slow test below
    model, model_cfg = build_train_model(cfg, torch.device("cpu"))
    optimizer, scheduler = build_optimizer(cfg, model, total_steps=10)
    assert optimizer.param_groups and scheduler.get_last_lr()
    expects_ms = cfg.memory._target_.endswith("TSMSMemoryAttention")
    assert isinstance(model.memory_attention, TSMSMemoryAttention) == expects_ms
    assert model.image_size == cfg.resolution and model_cfg.model._target_ == "sam2.modeling.sam2_base.SAM2Base"


@pytest.mark.slow
@pytest.mark.parametrize("size", ["base_plus", "large"])
def test_large_model_sizes_instantiate(size, tmp_path):
    cfg = compose_train_config(overrides=[f"model_size={size}", "model.checkpoint=null", f"run_dir={tmp_path}"])
    model, _ = build_train_model(cfg, torch.device("cpu"))
    optimizer, _ = build_optimizer(cfg, model, total_steps=10)
    assert model.image_size == 512 and len(optimizer.param_groups) > 4


def test_knobs_reach_the_model_and_sampler(tmp_path, data_root):
    cfg = compose_train_config(overrides=[
        "experiment=synthetic_tiny", f"data_root={data_root}", "memory_bank_size=5", "pruning_threshold=0.8",
        "temporal_scales=[1,3]", "scale_probs=[0.5,0.5]", "num_frames=3", "memory=surgsam2",
    ])
    sampler = build_sampler(cfg)
    assert sampler.num_frames == 3 and sampler.temporal_scales == [1, 3]
    model, model_cfg = build_train_model(cfg, torch.device("cpu"))
    mem = model.memory_attention
    assert model.num_maskmem == 5 and mem.memory_bank_size == 5 and mem.pruning_threshold == 0.8
    assert not mem.use_mem_split  # surgsam2's rule
    equal = build_sampler(compose_train_config(overrides=["temporal_scales=[1,2,4]", "scale_probs=null"]))
    assert equal.temporal_scales == [1, 2, 4] and equal.scale_probs == pytest.approx([1 / 3] * 3)
    uniform = build_sampler(compose_train_config(overrides=["sampler=uniform", "num_frames=5"]))
    assert type(uniform).__name__ == "UniformTemporalSampler" and uniform.num_frames == 5


def test_original_cli_flags_map_to_the_config():
    config, overrides, _ = parse_cli(["--config", "configs/tsms_sam2_surg.yaml", "--epochs", "100", "--batch_size", "8"])
    cfg = compose_train_config(config, overrides)
    assert (cfg.epochs, cfg.batch_size) == (100, 8)
    _, overrides, _ = parse_cli(["--lr", "1e-4", "memory=sam2", "--resume", "auto", "num_frames=4"])
    cfg = compose_train_config(DEFAULT_CONFIG, overrides)
    assert cfg.base_lr == cfg.vision_lr == 1e-4 and cfg.resume == "auto" and cfg.num_frames == 4
    assert cfg.memory._target_.endswith("memory_attention.MemoryAttention")
    assert legacy_flag_overrides(epochs=3, batch_size=None) == ["epochs=3"]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["memory=no_such_memory"], "no_such_memory"),
        (["experiment=nope"], "nope"),
        (["batch_size=0"], "batch_size must be an integer >= 1"),
        (["resolution=100"], "resolution must be a multiple of 32"),
        (["temporal_scales=[0,2]"], "temporal_scales"),
        (["temporal_scales=[1,2,4]"], "scale_probs"),
        (["pruning_threshold=2"], "pruning_threshold"),
        (["no_such_key=1"], "no_such_key"),
    ],
)
def test_bad_configs_are_one_line_user_errors(overrides, message):
    with pytest.raises(UserError, match=message) as err:
        compose_train_config(overrides=overrides)
    assert "\n" not in str(err.value)


def test_param_groups_layer_decay_and_no_weight_decay(tmp_path):
    cfg = compose_train_config(overrides=["experiment=synthetic_tiny", f"run_dir={tmp_path}"])
    model, _ = build_train_model(cfg, torch.device("cpu"))
    groups = build_param_groups(model, base_lr=1.0, vision_lr=0.5, weight_decay=0.1, layer_decay=0.9)
    lr_of = {n: g["lr"] for g in groups for n in g["param_names"]}
    wd_of = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    blocks = len(model.image_encoder.trunk.blocks)  # 5 for mini
    for i in range(blocks):
        assert lr_of[f"image_encoder.trunk.blocks.{i}.mlp.layers.0.weight"] == pytest.approx(0.5 * 0.9 ** (blocks - i))
    assert lr_of["image_encoder.trunk.patch_embed.proj.weight"] == pytest.approx(0.5 * 0.9 ** (blocks + 1))
    assert lr_of["image_encoder.trunk.pos_embed"] == 0.5  # positional embeddings are not decayed
    assert lr_of["image_encoder.neck.convs.0.conv.weight"] == 0.5
    assert lr_of["sam_mask_decoder.iou_token.weight"] == 1.0
    assert wd_of["sam_mask_decoder.iou_token.weight"] == 0.1
    assert wd_of["image_encoder.trunk.blocks.0.attn.qkv.bias"] == 0.0
    assert wd_of["image_encoder.trunk.blocks.0.norm1.weight"] == 0.0  # nn.LayerNorm
    assert wd_of["sam_mask_decoder.output_upscaling.1.weight"] == 0.0  # sam2's LayerNorm2d
    assert len(lr_of) == sum(1 for p in model.parameters() if p.requires_grad)
    freeze_image_encoder(model)
    frozen = build_param_groups(model, 1.0, 0.5)
    assert not any(n.startswith("image_encoder.") for g in frozen for n in g["param_names"])


def test_cosine_schedule_goes_down_to_a_tenth():
    s = CosineSchedule(total_steps=100, warmup_steps=0, final_lr_ratio=0.1)
    assert s(0) == 1.0 and s(100) == pytest.approx(0.1) and s(50) == pytest.approx(0.55)
    assert s(1000) == pytest.approx(0.1)
    w = CosineSchedule(total_steps=100, warmup_steps=10)
    assert w(0) == pytest.approx(0.1) and w(9) == pytest.approx(1.0) and w(10) == pytest.approx(1.0)
    assert all(s(i) >= s(i + 1) for i in range(100))
    assert math.isclose(s(25), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_composing_training_config_keeps_sam2_hydra_state():
    """sam2's builders need the Hydra state sam2 set up at import; we must not clobber it."""
    from hydra.core.global_hydra import GlobalHydra
    from sam2.build_sam import build_sam2

    from tests.conftest import MINI_OVERRIDES
    from training.config import compose_train_config

    assert GlobalHydra.instance().is_initialized()
    compose_train_config(overrides=["experiment=synthetic_tiny"])
    assert GlobalHydra.instance().is_initialized()
    build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu", hydra_overrides_extra=MINI_OVERRIDES)
