"""A checkpoint is data, never code: configs read from files may name only allowlisted classes.

Each payload is a real one (the control test shows Hydra would run it); each refusal test
proves that nothing ran: its marker file must not exist.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from models import build_model
from models.config import resolve_model_config
from models.safe_config import MODEL_TARGETS, TRAINING_TARGETS, UnsafeConfigError, check_config
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]


class _ShellOnUnpickle:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def mini_parts():
    torch.manual_seed(0)
    state_dict = build_model(config="mini", memory="sam2").state_dict()
    config = OmegaConf.to_container(resolve_model_config("mini"), resolve=False)
    return state_dict, config


def _payloads(tmp: Path):
    """name -> (function that plants the payload into a config copy, marker it would create)."""
    marker = tmp / "ran.txt"
    system_file = tmp / "system_file"
    system_file.write_text("root:x:0:0")
    pickle_path = tmp / "evil.pkl"
    with open(pickle_path, "wb") as f:
        pickle.dump(_ShellOnUnpickle(marker), f)
    opener = {"_target_": "builtins.open", "_args_": [str(marker), "w"]}
    copier = {"_target_": "shutil.copyfile", "src": str(system_file), "dst": str(marker)}
    loader = {"_target_": "numpy.load", "file": str(pickle_path), "allow_pickle": True}

    def at(path, node):
        def plant(cfg):
            *parents, leaf = path.split(".")
            target = cfg
            for key in parents:
                target = target[key]
            target[leaf] = copy.deepcopy(node)
            return cfg
        return plant

    def top_and_reference(cfg):  # _target_ built by interpolation from a harmless-looking key
        cfg["model"]["memory_encoder"]["fuser"]["_target_"] = "${evil}"
        cfg["model"]["memory_encoder"]["fuser"]["_args_"] = [str(marker), "w"]
        cfg["evil"] = "builtins.open"
        return cfg

    def string_interpolation(cfg):
        cfg["model"]["memory_encoder"]["fuser"] = {"_target_": "builtins.${name}", "_args_": [str(marker), "w"]}
        cfg["name"] = "open"
        return cfg

    def decode_resolver(cfg):
        cfg["model"]["memory_encoder"]["fuser"] = (
            "${oc.decode:'{_target_: builtins.open, _args_: [" + str(marker) + ", w]}'}"
        )
        return cfg

    def inside_args(cfg):
        cfg["model"]["image_encoder"]["neck"]["_args_"] = [copy.deepcopy(opener)]
        return cfg

    return marker, {
        "builtins.open": at("model.image_encoder", opener),
        "shutil.copyfile": at("model.memory_encoder", copier),
        "numpy.load pickle": at("model.image_encoder", loader),
        "nested deep": at("model.memory_attention.layer.self_attention", opener),
        "partial": at("model.memory_encoder.fuser", {**opener, "_partial_": True}),
        "inside _args_": inside_args,
        "interpolated target": top_and_reference,
        "string interpolation": string_interpolation,
        "oc.decode resolver": decode_resolver,
        "non-string target": at("model.memory_encoder.fuser", {"_target_": ["builtins.open"]}),
    }


PAYLOADS = [
    "builtins.open", "shutil.copyfile", "numpy.load pickle", "nested deep", "partial", "inside _args_",
    "interpolated target", "string interpolation", "oc.decode resolver", "non-string target",
]


def _evil_checkpoint(tmp_path, mini_parts, name):
    state_dict, config = mini_parts
    marker, payloads = _payloads(tmp_path)
    cfg = payloads[name](copy.deepcopy(config))
    path = tmp_path / "evil.pt"
    torch.save({"format": "tsms-sam2", "format_version": 1, "model": state_dict, "config": cfg}, path)
    return path, marker, cfg


@pytest.mark.parametrize("name", ["builtins.open", "shutil.copyfile", "numpy.load pickle"])
def test_the_payloads_are_real(tmp_path, mini_parts, name):
    """Control: handed to Hydra unchecked, each payload runs (so the refusals below mean something)."""
    from hydra.utils import instantiate

    _, marker, cfg = _evil_checkpoint(tmp_path, mini_parts, name)
    node = cfg["model"]["image_encoder"] if name != "shutil.copyfile" else cfg["model"]["memory_encoder"]
    try:
        instantiate(OmegaConf.create(node))
    except Exception:
        pass  # numpy.load fails after unpickling: the command already ran
    assert marker.exists()


@pytest.mark.parametrize("name", PAYLOADS)
def test_evil_checkpoint_is_refused_before_anything_runs(tmp_path, mini_parts, name):
    path, marker, _ = _evil_checkpoint(tmp_path, mini_parts, name)
    with pytest.raises(UnsafeConfigError) as err:
        build_model(checkpoint=str(path), predictor=True)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    if name in ("builtins.open", "shutil.copyfile", "nested deep", "partial", "inside _args_", "interpolated target",
                "string interpolation"):
        target = "shutil.copyfile" if name == "shutil.copyfile" else "builtins.open"
        assert target in message
    assert not marker.exists()


def test_custom_resolver_is_never_called(tmp_path, mini_parts):
    """A resolver registered in the process (by any library) is still not reachable from a file."""
    state_dict, config = mini_parts
    marker = tmp_path / "resolver_ran"
    OmegaConf.register_new_resolver("test_touch", lambda p: Path(p).touch() or 8, replace=True)
    try:
        cfg = copy.deepcopy(config)
        cfg["model"]["fill_hole_area"] = "${test_touch:" + str(marker) + "}"
        path = tmp_path / "resolver.pt"
        torch.save({"model": state_dict, "config": cfg}, path)
        with pytest.raises(UnsafeConfigError, match="resolver 'test_touch'"):
            build_model(checkpoint=str(path), predictor=True)
        assert not marker.exists()
    finally:
        OmegaConf.clear_resolver("test_touch")


def test_model_yaml_from_user_is_checked(tmp_path, mini_parts):
    _, config = mini_parts
    marker, payloads = _payloads(tmp_path)
    path = tmp_path / "user_model.yaml"
    OmegaConf.save(OmegaConf.create(payloads["shutil.copyfile"](copy.deepcopy(config))), path)
    with pytest.raises(UnsafeConfigError, match="shutil.copyfile"):
        build_model(config=str(path))
    assert not marker.exists()


def test_override_cannot_name_a_callable(tmp_path):
    marker = tmp_path / "ran.txt"
    with pytest.raises(UnsafeConfigError, match="os.system"):
        build_model(config="mini", overrides=["++model.memory_encoder.fuser._target_=os.system",
                                             f"++model.memory_encoder.fuser._args_=['touch {marker}']"])
    assert not marker.exists()


def test_node_references_and_our_configs_pass(mini_parts):
    _, config = mini_parts
    cfg = copy.deepcopy(config)
    cfg["size"] = 128
    cfg["model"]["image_size"] = "${size}"
    check_config(cfg, source="x")
    for name in ("mini", "tiny", "small", "base_plus", "large", "sam2_tiny", "sam2_large"):
        check_config(resolve_model_config(name), source=name)  # every size sam2 ships is allowed


def test_training_config_with_a_payload_is_refused(tmp_path):
    from training.config import compose_train_config

    marker = tmp_path / "ran.txt"
    cfg = tmp_path / "evil_train.yaml"
    cfg.write_text((REPO / "configs" / "tsms_sam2_surg.yaml").read_text())
    for group in ("data", "experiment", "memory", "model", "model_size", "optim", "sampler", "trainer"):
        os.symlink(REPO / "configs" / group, tmp_path / group)
    with pytest.raises(UnsafeConfigError, match="subprocess.call"):
        compose_train_config(cfg, ["++optim.optimizer._target_=subprocess.call",
                                   f"++optim.optimizer._args_=[['touch','{marker}']]"])
    with pytest.raises(UnsafeConfigError, match="resolver 'oc.decode'"):
        compose_train_config(cfg, ["++name=${oc.decode:'[1]'}"])
    compose_train_config(cfg, ["++data_root=${oc.env:HOME}"])  # a plain lookup is fine in a training YAML
    assert not marker.exists()
    assert "torch.optim.AdamW" in TRAINING_TARGETS and "torch.optim.AdamW" not in MODEL_TARGETS


@pytest.mark.parametrize("cli", ["inference/predict_video.py", "inference/annotate.py"])
def test_cli_loading_an_evil_checkpoint_exits_2_with_one_line(tmp_path, mini_parts, two_object_video, cli):
    path, marker, _ = _evil_checkpoint(tmp_path, mini_parts, "numpy.load pickle")
    out = tmp_path / "out"
    args = [sys.executable, str(REPO / cli), "--video_path", str(two_object_video[0]), "--checkpoint", str(path),
            "--output_dir", str(out)]
    if cli.endswith("predict_video.py"):
        args += ["--quiet"]
    else:
        args += ["--port", "38411"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert lines and "numpy.load" in lines[-1] and str(path) in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_unsafe_config_error_is_a_user_error():
    assert issubclass(UnsafeConfigError, UserError)


def test_non_finite_weights_are_refused_by_every_loader(tmp_path, mini_parts):
    """In the one builder, so the annotator and training refuse them as predict_video.py does."""
    from models.checkpoint import CheckpointError

    state_dict, _ = mini_parts
    broken = dict(state_dict)
    name = "sam_mask_decoder.iou_prediction_head.layers.0.weight"
    broken[name] = broken[name].clone()
    broken[name][0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save({"model": broken}, path)
    with pytest.raises(CheckpointError, match=rf"nan.pt: weight {name} holds 1 non-finite"):
        build_model(config="mini", checkpoint=str(path), predictor=True)
    with pytest.raises(CheckpointError, match="non-finite"):
        build_model(config="mini", checkpoint=str(path), mode="train")
