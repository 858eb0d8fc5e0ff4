import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from emo_lightning.data import (
    FaceIdentity,
    SyntheticDataModule,
    SyntheticTalkingFaces,
    head_motion,
    make_clip,
    measure_mouth_open,
    mouth_masks,
    render_face,
    render_faces,
    synth_speech,
)
from emo_lightning.data.synthetic import POSE_LIMITS

POSES = [(0.0, 0.0, 0.0), (20.0, -10.0, 8.0), (-30.0, 20.0, -15.0), (30.0, -20.0, 15.0)]


def make_identity(seed: int) -> FaceIdentity:
    """make_clip draws the identity first from its generator."""
    return FaceIdentity.sample(np.random.default_rng(seed))


@pytest.mark.parametrize("resolution", [32, 64])
def test_measured_mouth_opening_matches_rendered(resolution: int) -> None:
    rng = np.random.default_rng(0)
    for identity, pose in zip([FaceIdentity.sample(rng) for _ in range(6)], itertools.cycle(POSES)):
        for opening in np.linspace(0, 1, 11):
            frame = render_face(identity, opening, pose, resolution)
            assert measure_mouth_open(frame, identity, pose) == pytest.approx(opening, abs=0.04)


def test_mouth_is_large_and_dark() -> None:
    identity = FaceIdentity.sample(np.random.default_rng(1))
    closed, opened = (render_face(identity, m).astype(int) for m in (0.0, 1.0))
    darker = (closed - opened).sum(-1) > 150
    rows = np.flatnonzero(darker.any(1))
    face_height = 2 * identity.face_axes[1] * 32 / 2
    assert 0.18 * face_height <= len(rows) <= 0.3 * face_height


@pytest.mark.parametrize("resolution", [32, 64])
def test_lip_mask_covers_every_pixel_the_mouth_changes(resolution: int) -> None:
    rng = np.random.default_rng(4)
    for identity, pose in zip([FaceIdentity.sample(rng) for _ in range(4)], POSES, strict=True):
        closed, opened = (render_face(identity, m, pose, resolution).astype(int) for m in (0.0, 1.0))
        mask = mouth_masks(identity, np.array([pose]), resolution)[0]
        changed = np.abs(closed - opened).sum(-1) > 0
        assert changed.any() and mask[changed].all()
        assert mask.mean() < 3 * changed.mean()  # the mouth region, not the face


def test_face_stays_inside_the_frame() -> None:
    rng = np.random.default_rng(2)
    extremes = np.array(list(itertools.product(*[(-lim, lim) for lim in POSE_LIMITS])))
    for _ in range(5):
        identity = FaceIdentity.sample(rng)
        frames = render_faces(identity, np.ones(len(extremes)), extremes, 32)
        border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], 1)
        assert (border == identity.background).all()


def test_yaw_moves_the_face_features() -> None:
    identity = FaceIdentity.sample(np.random.default_rng(3))
    left, right = (render_face(identity, 1.0, (yaw, 0, 0)) for yaw in (-30, 30))
    assert not np.array_equal(left, right)
    assert np.array_equal(left, render_face(identity, 1.0, (-30, 0, 0)))


def test_speech_lengths_and_loudness_range() -> None:
    wave, loudness = synth_speech(np.random.default_rng(0), 2.0, sample_rate=16000, fps=25)
    assert wave.dtype == np.float32 and wave.shape == (32000,)
    assert loudness.shape == (50,) and loudness.min() >= 0 and loudness.max() <= 1
    assert loudness.max() > 0.5 and loudness.min() < 0.1  # syllables and pauses
    assert np.abs(wave).max() < 1


def test_loudness_drives_mouth_opening() -> None:
    clip = make_clip(0, 100)
    loudness, mouth = clip["loudness"], clip["mouth_open"]
    assert np.corrcoef(loudness, mouth)[0, 1] > 0.9
    shuffled = np.random.default_rng(0).permutation(loudness)
    assert abs(np.corrcoef(shuffled, mouth)[0, 1]) < 0.5
    lagged = [np.corrcoef(loudness[: -lag or None], mouth[lag:])[0, 1] for lag in range(3)]
    assert np.argmax(lagged) == 0  # the mouth does not trail the audio
    identity = make_identity(0)
    measured = [measure_mouth_open(f, identity, p) for f, p in zip(clip["frames"], clip["pose"], strict=True)]
    assert np.abs(np.array(measured) - mouth).max() < 0.05


def test_clip_contents() -> None:
    clip = make_clip(np.random.default_rng(5), 10, resolution=32, fps=25, sample_rate=16000)
    assert clip["frames"].shape == (10, 32, 32, 3) and clip["frames"].dtype == np.uint8
    assert clip["audio"].shape == (6400,)
    for key in ("loudness", "mouth_open", "speed"):
        assert clip[key].shape == (10,)
    assert clip["pose"].shape == (10, 3) and clip["boxes"].shape == (10, 4)
    assert clip["speed"][0] == clip["speed"][1]
    mask = clip["mask"]
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0} and mask.mean() < 0.9
    for x0, y0, x1, y1 in clip["boxes"]:
        assert (mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] == 1).all()
    # the box really holds the head: outside the mask only background is drawn
    assert (clip["frames"][:, mask == 0] == make_identity(5).background).all()


def test_head_speed_is_nonnegative_and_varies_across_clips() -> None:
    rng = np.random.default_rng(0)
    speeds = [head_motion(rng, 25)[1] for _ in range(20)]
    assert all((s >= 0).all() for s in speeds)
    means = np.array([s.mean() for s in speeds])
    assert means.max() > 3 * means.min()
    pose, speed = head_motion(np.random.default_rng(1), 25)
    assert (np.abs(pose) <= np.array(POSE_LIMITS)).all()
    euler_step = np.linalg.norm(np.diff(pose, axis=0), axis=1)
    assert np.allclose(speed[1:], euler_step, rtol=0.3, atol=0.05)  # degrees per frame


def test_stage1_item() -> None:
    item = SyntheticTalkingFaces(4, stage=1, resolution=32)[0]
    assert set(item) == {"reference", "frames", "mask", "lip_mask", "sample_id"}
    assert item["reference"].shape == (3, 32, 32) and item["frames"].shape == (3, 1, 32, 32)
    assert item["mask"].shape == (1, 32, 32) and item["lip_mask"].shape == (1, 1, 32, 32)
    for key, value in item.items():
        assert key == "sample_id" or (value.dtype == torch.float32 and value.min() >= -1 and value.max() <= 1)
    assert not torch.equal(item["reference"], item["frames"][:, 0])


@pytest.mark.parametrize("stage", [2, 3])
def test_video_item(stage: int) -> None:
    dataset = SyntheticTalkingFaces(4, stage=stage, resolution=32, num_frames=8, motion_frames=4, fps=25)
    item = dataset[1]
    expected = {
        "reference": (3, 32, 32),
        "motion": (3, 4, 32, 32),
        "frames": (3, 8, 32, 32),
        "audio": (8 * 16000 // 25,),
        "mask": (1, 32, 32),
        "lip_mask": (1, 8, 32, 32),
        "speed": (8,),
        "mouth_open": (8,),
        "loudness": (8,),
        "pose": (8, 3),
        "sample_id": (),
    }
    assert {key: tuple(value.shape) for key, value in item.items()} == expected
    assert item["sample_id"] == 1 and item["sample_id"].dtype == torch.int64
    assert all(value.dtype == torch.float32 for key, value in item.items() if key != "sample_id")
    for key in ("reference", "motion", "frames"):
        assert item[key].min() >= -1 and item[key].max() <= 1
    assert (item["speed"] >= 0).all()

    identity, clip = dataset.clip(1)
    target = ((item["frames"].permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy()
    assert np.array_equal(target, clip["frames"][4:])
    assert np.array_equal(item["audio"].numpy(), clip["audio"][4 * 640 : 12 * 640])
    reference = ((item["reference"].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    assert measure_mouth_open(reference, identity, tuple(clip["pose"][0])) < 0.02


def test_audio_length_with_fractional_samples_per_frame() -> None:
    item = SyntheticTalkingFaces(1, num_frames=7, motion_frames=3, fps=30.0, sample_rate=16000)[0]
    assert item["audio"].shape == (round(7 * 16000 / 30),)


def test_items_are_deterministic() -> None:
    a, b = SyntheticTalkingFaces(8, seed=3), SyntheticTalkingFaces(8, seed=3)
    first, again, other = a[2], b[2], a[3]
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["frames"], other["frames"])
    assert not torch.equal(first["audio"], other["audio"])
    assert not torch.equal(first["frames"], SyntheticTalkingFaces(8, seed=4)[2]["frames"])


def test_splits_hold_out_identities_and_audio() -> None:
    train, val = (SyntheticTalkingFaces(16, split=split) for split in ("train", "val"))
    train_clips, val_clips = ([ds.clip(i) for i in range(16)] for ds in (train, val))
    assert not {identity for identity, _ in train_clips} & {identity for identity, _ in val_clips}
    train_audio = {clip["audio"].tobytes() for _, clip in train_clips}
    assert not train_audio & {clip["audio"].tobytes() for _, clip in val_clips}


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        SyntheticTalkingFaces(1, stage=4)
    with pytest.raises(ValueError):
        SyntheticTalkingFaces(1, split="holdout")
    with pytest.raises(IndexError):
        SyntheticTalkingFaces(1)[1]


def test_dataloader_collates() -> None:
    batch = next(iter(DataLoader(SyntheticTalkingFaces(4, num_frames=6, motion_frames=2), batch_size=2)))
    assert batch["frames"].shape == (2, 3, 6, 32, 32)
    assert batch["motion"].shape == (2, 3, 2, 32, 32)
    assert batch["audio"].shape == (2, 6 * 640)


def test_datamodule() -> None:
    dm = SyntheticDataModule(batch_size=2, train_samples=6, val_samples=4, num_frames=4, motion_frames=2)
    assert dm.hparams.batch_size == 2
    dm.setup("fit")
    train, val, test = dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()
    assert len(train.dataset) == 6 and len(val.dataset) == 4
    assert train.dataset.split == "train" and val.dataset.split == test.dataset.split == "val"
    batch = next(iter(val))
    assert batch["frames"].shape == (2, 3, 4, 32, 32) and batch["reference"].shape == (2, 3, 32, 32)
    assert torch.equal(next(iter(val))["frames"], batch["frames"])  # validation is not shuffled
    stage1 = SyntheticDataModule(stage=1, batch_size=2, train_samples=4)
    stage1.setup("fit")
    assert next(iter(stage1.train_dataloader()))["frames"].shape == (2, 3, 1, 32, 32)
