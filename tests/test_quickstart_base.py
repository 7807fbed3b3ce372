"""The quickstart fine-tunes from a pretrained base when there is one; --from_scratch keeps the old path."""

from __future__ import annotations


import pytest
import torch

import quickstart
from data.synthetic_video import write_synthetic_dataset
from models import read_checkpoint
from training.config import compose_train_config
from training.trainer import train
from utils.errors import UserError

pytestmark = pytest.mark.usefixtures("restore_logging", "one_torch_thread")

TINY = ["data.train.multiplier=1", "epochs=1", "num_frames=3", "max_num_objects=1", "num_workers=0",
        "trainer.progress=false", "trainer.val_every=0", "trainer.max_steps=1"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("qs_base") / "data"
    write_synthetic_dataset(root / "train", 2, 6, seed=0, size=(128, 128), write_mp4=False, progress=False)
    write_synthetic_dataset(root / "generic", 2, 6, seed=0, size=(128, 128), write_mp4=False, progress=False,
                            domain="generic")
    return root


@pytest.fixture(scope="module")
def tiny_base(data_root, tmp_path_factory):
    """A 1-step pretrain_generic run: a random-ish base in our format (SAM2's memory)."""
    run = tmp_path_factory.mktemp("qs_base") / "pretrain"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose_train_config(overrides=["experiment=pretrain_generic", f"data.train.root={data_root}/generic",
                                              f"run_dir={run}", *TINY]))
    finally:
        torch.set_num_threads(previous)
    return run / "checkpoints" / "last.pt"


def _overrides(argv, data_root):
    return quickstart.training_overrides(quickstart.parse_args(argv), data_root)


def test_base_auto_explicit_and_from_scratch(tiny_base, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(quickstart, "BASE_CHECKPOINT", tmp_path / "missing.pt")
    assert not any(o.startswith("model.checkpoint=") for o in _overrides([], data_root))  # no base: from scratch
    monkeypatch.setattr(quickstart, "BASE_CHECKPOINT", tiny_base)
    assert f"model.checkpoint={tiny_base.resolve()}" in _overrides([], data_root)  # the default takes it
    assert not any(o.startswith("model.checkpoint=") for o in _overrides(["--from_scratch"], data_root))
    assert f"model.checkpoint={tiny_base.resolve()}" in _overrides(["--base", str(tiny_base)], data_root)
    with pytest.raises(UserError, match="--base: file not found"):
        _overrides(["--base", str(tmp_path / "nope.pt")], data_root)
    with pytest.raises(UserError, match="--base cannot be combined with --from_scratch"):
        _overrides(["--base", str(tiny_base), "--from_scratch"], data_root)


def test_quickstart_training_starts_from_the_base(tiny_base, data_root, tmp_path, monkeypatch):
    """The quickstart's overrides load the base (SAM2 memory) into the TSMS model strictly:
    the weights before step 1 are the base's; from scratch they are not."""
    monkeypatch.setattr(quickstart, "BASE_CHECKPOINT", tiny_base)
    base = read_checkpoint(tiny_base)["model"]
    for argv, name in (([], "from_base"), (["--from_scratch"], "scratch")):
        run = tmp_path / name
        overrides = _overrides(argv, data_root) + [f"run_dir={run}", "data.val.root=null", *TINY]
        train(compose_train_config(overrides=overrides))
        initial = read_checkpoint(run / "checkpoints" / "init.pt")
        assert initial["config"]["model"]["memory_attention"]["_target_"].endswith("TSMSMemoryAttention")
        same = all(torch.equal(initial["model"][k], base[k]) for k in base)
        assert same == (name == "from_base")
