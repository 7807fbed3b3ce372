"""configs/data/*.yaml and configs/sampler/*.yaml instantiate into working objects."""

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from data.mask_io import write_label_png, write_rgb
from data.motion_sampler import MotionAdaptiveTemporalSampler
from data.samplers import MultiScaleTemporalSampler, UniformTemporalSampler
from data.transforms import ClipTransforms
from data.vos_dataset import VOSDataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SAMPLERS = {
    "uniform": UniformTemporalSampler,
    "multiscale": MultiScaleTemporalSampler,
    "motion_adaptive": MotionAdaptiveTemporalSampler,
}
DATASETS = ["endovis17", "endovis18", "synthetic"]
KNOBS = {"resolution": 32, "num_frames": 3, "max_num_objects": 2, "temporal_scales": [1, 2],
         "scale_probs": [0.9, 0.1], "seed": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Every root the data configs point at, each holding one tiny 6-frame video."""
    base = tmp_path_factory.mktemp("datasets")
    for sub in ("EndoVis2017/train", "EndoVis2017/valid", "EndoVis2018/train", "EndoVis2018/valid",
                "synthetic", "synthetic_val"):
        for kind in ("JPEGImages", "Annotations"):
            (base / sub / kind / "v").mkdir(parents=True)
        for t in range(6):
            label = np.zeros((24, 24), np.uint8)
            label[4:12, t:t + 8] = 1
            label[14:20, 2:10] = 3
            write_rgb(base / sub / "JPEGImages" / "v" / f"{t:05d}.jpg", np.dstack([label * 50] * 3))
            write_label_png(base / sub / "Annotations" / "v" / f"{t:05d}.png", label)
    return base


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_configs_instantiate(name):
    cfg = OmegaConf.merge(OmegaConf.create(KNOBS), {"sampler": OmegaConf.load(CONFIGS / "sampler" / f"{name}.yaml")})
    sampler = instantiate(cfg.sampler)
    assert isinstance(sampler, SAMPLERS[name])
    assert sampler.num_frames == 3
    if name == "multiscale":
        assert sampler.temporal_scales == [1, 2] and sampler.scale_probs == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize("name", DATASETS)
def test_data_configs_instantiate(name, data_root):
    cfg = OmegaConf.merge(OmegaConf.create(dict(KNOBS, data_root=str(data_root))),
                          OmegaConf.load(CONFIGS / "data" / f"{name}.yaml"),
                          {"sampler": OmegaConf.load(CONFIGS / "sampler" / "multiscale.yaml")})
    for split, transform_key in (("train", "train"), ("val", "val")):
        transforms = instantiate(cfg.transforms[transform_key])
        assert isinstance(transforms, ClipTransforms) and transforms.augment == (split == "train")
        dataset = instantiate(cfg.data[split], sampler=instantiate(cfg.sampler), transforms=transforms,
                              seed=0, _convert_="all")
        assert isinstance(dataset, VOSDataset)
        clip = dataset[0]
        assert clip.frames.shape == (3, 3, 32, 32)
        assert clip.object_ids.tolist() == [1, 3]


def test_main_config_composes_with_every_data_and_sampler_option(data_root):
    hydra = pytest.importorskip("hydra")
    from training.config import hydra_config_dir

    with hydra_config_dir(CONFIGS):
        for name in DATASETS:
            for sampler_name in SAMPLERS:
                cfg = hydra.compose("tsms_sam2_surg", overrides=[
                    f"data={name}", f"sampler={sampler_name}", f"data_root={data_root}", "num_frames=3",
                    "resolution=32"])
                sampler = instantiate(cfg.sampler)
                assert isinstance(sampler, SAMPLERS[sampler_name])
                dataset = instantiate(cfg.data.train, sampler=sampler, transforms=instantiate(cfg.transforms.train),
                                      seed=0, _convert_="all")
                assert Path(dataset.root).is_dir()
