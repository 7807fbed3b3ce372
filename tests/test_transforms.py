"""Clip-consistent transforms: same parameters on every frame, binary aligned masks."""

import numpy as np
import pytest
import torch

from data.transforms import ClipTransforms


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clip(num_frames=4, size=64, seed=0):
    """Identical frames: textured image and two rectangle masks painted into the image."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=(3, size, size), dtype=np.uint8)
    masks = np.zeros((2, size, size), bool)
    masks[0, 10:30, 12:40] = True
    masks[1, 34:58, 16:44] = True
    image[0][masks[0]] = 255  # object 1 is bright red
    image[1][masks[1]] = 255  # object 2 is bright green
    frames = torch.from_numpy(image)[None].repeat(num_frames, 1, 1, 1)
    return frames, torch.from_numpy(masks)[None].repeat(num_frames, 1, 1, 1)


def test_identical_frames_give_identical_outputs_and_binary_masks():
    frames, masks = _clip()
    transform = ClipTransforms(resolution=48, hflip_prob=0.5, degrees=30, shear=15, brightness=0.4,
                               contrast=0.4, saturation=0.4, hue=0.1, grayscale_prob=0.5)
    for seed in range(6):
        out_frames, out_masks = transform(frames, masks, np.random.default_rng(seed))
        assert out_frames.shape == (4, 3, 48, 48) and out_frames.dtype == torch.float32
        assert out_masks.shape == (4, 2, 48, 48) and out_masks.dtype == torch.bool
        for t in range(1, 4):
            assert torch.equal(out_frames[t], out_frames[0])
            assert torch.equal(out_masks[t], out_masks[0])
        assert out_masks.any()


def test_masks_stay_aligned_with_the_image():
    frames, masks = _clip()
    exact = ClipTransforms(resolution=40, hflip_prob=0.5, degrees=40, shear=20, brightness=0, contrast=0,
                           saturation=0, grayscale_prob=0, normalize=False, interpolation="nearest")
    smooth = ClipTransforms(resolution=40, hflip_prob=0.5, degrees=40, shear=20, brightness=0, contrast=0,
                            saturation=0, grayscale_prob=0, normalize=False, interpolation="bilinear")
    for seed in range(5):
        out_frames, out_masks = exact(frames, masks, np.random.default_rng(seed))
        assert torch.equal(out_frames[:, 0] > 0.99, out_masks[:, 0])  # nearest: pixel-exact
        assert torch.equal(out_frames[:, 1] > 0.99, out_masks[:, 1])
        out_frames, out_masks = smooth(frames, masks, np.random.default_rng(seed))
        for channel in range(2):
            painted = out_frames[:, channel] > 0.6
            iou = (painted & out_masks[:, channel]).sum() / (painted | out_masks[:, channel]).sum()
            assert iou > 0.8
            ys, xs = torch.nonzero(painted[0], as_tuple=True)
            my, mx = torch.nonzero(out_masks[0, channel], as_tuple=True)
            assert abs(ys.float().mean() - my.float().mean()) < 1.0
            assert abs(xs.float().mean() - mx.float().mean()) < 1.0


def test_flip_moves_image_and_masks_together():
    frames, masks = _clip(num_frames=2)
    flip = ClipTransforms(resolution=None, hflip_prob=1.0, degrees=0, shear=0, brightness=0, contrast=0,
                          saturation=0, grayscale_prob=0, normalize=False)
    out_frames, out_masks = flip(frames, masks, np.random.default_rng(0))
    assert torch.equal(out_masks, masks.flip(-1))
    assert torch.allclose(out_frames, frames.flip(-1).float() / 255)


def test_same_rng_same_output_and_global_rng_untouched():
    frames, masks = _clip()
    transform = ClipTransforms(resolution=32)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = transform(frames, masks, np.random.default_rng(7))
    b = transform(frames, masks, np.random.default_rng(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(torch.rand(1), expected_next)


def test_eval_transform_and_normalisation():
    frames, masks = _clip()
    transform = ClipTransforms(resolution=32, augment=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    out_frames, out_masks = transform(frames, masks, np.random.default_rng(0))
    assert out_frames.min() >= -1.0 and out_frames.max() <= 1.0
    again, _ = transform(frames, masks, np.random.default_rng(99))
    assert torch.equal(out_frames, again)  # no randomness without augmentation


def test_zero_objects_and_shape_errors():
    frames, _ = _clip()
    out_frames, out_masks = ClipTransforms(resolution=32)(frames, torch.zeros(4, 0, 64, 64, dtype=torch.bool),
                                                          np.random.default_rng(0))
    assert out_masks.shape == (4, 0, 32, 32)
    with pytest.raises(ValueError):
        ClipTransforms(resolution=32)(frames, torch.zeros(3, 1, 64, 64, dtype=torch.bool))
