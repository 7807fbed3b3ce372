"""VOS dataset: reading the layout, object selection, determinism, collation."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.collate import collate_clips
from data.mask_io import davis_palette, read_label_png, sort_frame_names, write_label_png, write_rgb
from data.samplers import MultiScaleTemporalSampler, UniformTemporalSampler
from data.transforms import ClipTransforms
from data.vos_dataset import VOSDataset
from data.vos_index import scan_vos_root
from utils.errors import UserError

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _label(t: int, ids) -> np.ndarray:
    label = np.zeros((SIZE, SIZE), np.uint8)
    for k, obj in enumerate(ids):
        x = (t + 4 * k) % (SIZE - 6)
        label[2 + 9 * k:8 + 9 * k, x:x + 6] = obj
    return label


def _write_video(root, name, num_frames, ids_at, ext="jpg", name_fn=lambda t: f"{t:05d}", skip_masks=()):
    (root / "JPEGImages" / name).mkdir(parents=True)
    (root / "Annotations" / name).mkdir(parents=True)
    for t in range(num_frames):
        label = _label(t, ids_at(t))
        rgb = np.stack([label * 40, np.full_like(label, 60), np.full_like(label, t)], axis=-1).astype(np.uint8)
        write_rgb(root / "JPEGImages" / name / f"{name_fn(t)}.{ext}", rgb)
        if t not in skip_masks:
            write_label_png(root / "Annotations" / name / f"{name_fn(t)}.png", label)


@pytest.fixture(scope="module")
def vos_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vos")
    # a: ids 1 and 5 always, id 2 from frame 3; png frames named 0..11 (not zero-padded)
    _write_video(root, "a", 12, lambda t: [1, 5] + ([2] if t >= 3 else []), ext="png", name_fn=str)
    # b: ids 1, 2, 3, 4 always; frame 4 has no annotation
    _write_video(root, "b", 11, lambda t: [1, 2, 3, 4], skip_masks={4})
    # c: no object on frames 0-5, id 7 afterwards
    _write_video(root, "c", 10, lambda t: [7] if t >= 6 else [])
    return root


def test_palette_roundtrip_and_numeric_sort(tmp_path):
    label = np.arange(64, dtype=np.uint8).reshape(8, 8)
    write_label_png(tmp_path / "x.png", label)
    assert np.array_equal(read_label_png(tmp_path / "x.png"), label)
    assert davis_palette()[1].tolist() == [128, 0, 0]
    assert sort_frame_names(["10.jpg", "2.jpg", "frame9.png", "frame10.png", "1.jpg"]) == [
        "1.jpg", "2.jpg", "10.jpg", "frame9.png", "frame10.png"]


def test_scan_vos_root(vos_root):
    videos = {v.name: v for v in scan_vos_root(vos_root)}
    assert sorted(videos) == ["a", "b", "c"]
    assert videos["a"].frame_ids == tuple(range(12))
    assert [p.split("/")[-1] for p in videos["a"].frame_paths[:3]] == ["0.png", "1.png", "2.png"]
    assert videos["a"].frame_paths[10].endswith("/10.png")
    assert videos["b"].num_frames == 10 and 4 not in videos["b"].frame_ids
    assert [v.name for v in scan_vos_root(vos_root, video_list=["c", "a"])] == ["a", "c"]
    list_file = vos_root / "list.txt"
    list_file.write_text("b\n")
    assert [v.name for v in scan_vos_root(vos_root, video_list=list_file)] == ["b"]
    with pytest.raises(UserError, match="zzz"):
        scan_vos_root(vos_root, video_list=["zzz"])
    with pytest.raises(UserError, match="missing directory"):
        scan_vos_root(vos_root / "nothing")


def test_clip_contents_match_annotations(vos_root):
    ds = VOSDataset(vos_root, UniformTemporalSampler(4), transforms=None, max_num_objects=3, seed=3)
    for index in range(len(ds)):
        clip = ds[index]
        video = ds.videos[index]
        assert clip.video_name == video.name
        assert clip.frames.shape == (4, 3, SIZE, SIZE) and clip.frames.dtype == torch.float32
        assert clip.masks.shape == (4, len(clip.object_ids), SIZE, SIZE) and clip.masks.dtype == torch.bool
        assert clip.frame_indices.dtype == torch.int64 and clip.object_ids.dtype == torch.int64
        positions = [video.frame_ids.index(int(f)) for f in clip.frame_indices]
        assert np.all(np.diff(positions) == 1)  # consecutive annotated frames (b lacks frame 4)
        for t, position in enumerate(positions):
            label = video.load_label(position)
            for n, obj in enumerate(clip.object_ids.tolist()):
                assert np.array_equal(clip.masks[t, n].numpy(), label == obj)
            # red channel of the frame encodes the label too (lossless png for video a)
            if video.name == "a":
                assert np.array_equal((clip.frames[t, 0] * 255).round().numpy(), label * 40.0)


def test_object_selection_rules(vos_root):
    ds = VOSDataset(vos_root, MultiScaleTemporalSampler(3, [1, 2], [0.5, 0.5]), max_num_objects=2,
                    multiplier=20, seed=0)
    assert len(ds) == 60
    seen = {"a": set(), "b": set(), "c": set()}
    for index in range(len(ds)):
        clip = ds[index]
        assert clip.num_objects <= 2
        assert clip.object_ids.tolist() == sorted(clip.object_ids.tolist())
        if clip.video_name != "c":  # c's first 6 frames are empty: retries may run out
            assert clip.num_objects >= 1
            assert clip.masks[0].flatten(1).any(1).all()  # every object visible on the first frame
        seen[clip.video_name].update(clip.object_ids.tolist())
    assert seen["a"] == {1, 2, 5} and seen["b"] == {1, 2, 3, 4} and seen["c"] == {7}

    only = VOSDataset(vos_root, UniformTemporalSampler(3), used_object_ids=[2, 7], video_list=["a"],
                      multiplier=10, seed=0)
    for index in range(len(only)):
        assert only[index].object_ids.tolist() == [2]


def test_clip_without_first_frame_objects_falls_back(vos_root):
    # video c: 4-frame clips starting before frame 6 never show id 7 on their first frame
    ds = VOSDataset(vos_root, UniformTemporalSampler(4), video_list=["c"], max_retries=0, multiplier=30)
    sizes = {ds[i].num_objects for i in range(len(ds))}
    assert sizes <= {0, 1} and 0 in sizes  # clip 0..3: nothing anywhere -> zero objects
    clip = next(ds[i] for i in range(len(ds)) if ds[i].frame_indices[0] in (3, 4, 5))
    assert clip.object_ids.tolist() == [7] and not clip.masks[0].any()  # visible later in the clip


def test_items_are_pure_functions_of_seed_epoch_index(vos_root):
    sampler = MultiScaleTemporalSampler(3, reverse_time_prob=0.5)
    make = lambda seed: VOSDataset(vos_root, sampler, ClipTransforms(resolution=16), seed=seed, multiplier=4)
    a, b = make(11), make(11)
    for index in (0, 5, 11):
        x, y = a[index], b[index]
        assert torch.equal(x.frames, y.frames) and torch.equal(x.masks, y.masks)
        assert torch.equal(x.frame_indices, y.frame_indices)
    runs = [[a.get_clip(i, epoch=e).frame_indices.tolist() for i in range(12)] for e in (0, 1)]
    assert runs[0] != runs[1]
    b.set_epoch(1)
    assert [b[i].frame_indices.tolist() for i in range(12)] == runs[1]
    with pytest.raises(IndexError):
        a[len(a)]


def test_collate_clips_layout(vos_root):
    ds = VOSDataset(vos_root, UniformTemporalSampler(3), ClipTransforms(resolution=16), max_num_objects=3, seed=1)
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_clips)
    batch = next(iter(loader))
    clips = [ds[i] for i in range(3)]
    total = sum(c.num_objects for c in clips)
    assert batch.images.shape == (3, 3, 3, 16, 16)
    assert batch.masks.shape == (3, total, 16, 16)
    assert batch.obj_to_frame_idx.shape == (3, total, 2)
    assert batch.object_ids.tolist() == [i for c in clips for i in c.object_ids.tolist()]
    assert batch.obj_batch_idx.tolist() == [b for b, c in enumerate(clips) for _ in range(c.num_objects)]
    assert batch.frame_indices.shape == (3, 3) and batch.video_names == ["a", "b", "c"]
    assert torch.equal(batch.obj_to_frame_idx[2, :, 0], torch.full((total,), 2, dtype=torch.int32))
    first = clips[0].num_objects
    assert torch.equal(batch.masks[:, first:first + clips[1].num_objects], clips[1].masks)
    assert torch.equal(batch.images[:, 1], clips[1].frames)
    assert batch.to("cpu").masks.shape == batch.masks.shape
    with pytest.raises(ValueError, match="differ in shape"):
        collate_clips([clips[0], VOSDataset(vos_root, UniformTemporalSampler(2), seed=1)[0]])
