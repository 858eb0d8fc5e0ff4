"""The `landmarks` face locator: the map drawing, the synthetic faces' exact landmarks, per-frame residuals in the
model, and preprocess → fit → predict on the shared HDTF clip (from the portrait, and from a driving video)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import tiny_batch, tiny_module
from PIL import Image

from emo_lightning.cli import main
from emo_lightning.components.face_locator.landmark_map import LandmarkMap, LandmarkTrack
from emo_lightning.data.preprocessed import PreprocessedDataModule
from emo_lightning.data.synthetic import LANDMARK_REGIONS, FaceIdentity, face_landmarks, render_faces
from emo_lightning.media import Mp4Writer, load_audio, probe_video, read_video
from emo_lightning.model import Conditions
from emo_lightning.pipeline.landmarks import job_landmarks, onto_portrait
from emo_lightning.pipeline.portrait import load_portrait
from emo_lightning.preprocess import Settings
from emo_lightning.preprocess.runner import run

pytestmark = pytest.mark.usefixtures("one_thread")

LANDMARKS = "model/face_locator=landmarks"



def _square(x0: float, y0: float, side: float) -> np.ndarray:
    return np.array([(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)], np.float32)


def test_map_draws_regions_where_their_points_are_and_leaves_the_lips_out_by_default():
    # a 64x64 face: eyes as squares, a nose as an unordered point set, lips lower down; on pixel centres (+0.5)
    points = np.concatenate([_square(14, 20, 8), _square(42, 20, 8), [(32, 26), (28, 40), (36, 40), (32, 34)],
                             _square(24, 48, 16)]).astype(np.float32) + 0.5
    regions = {"right_eye": np.arange(0, 4), "left_eye": np.arange(4, 8), "nose": np.arange(8, 12),
               "lips_outer": np.arange(12, 16), "lips_inner": np.arange(12, 16)}
    frames = np.stack([points, points + 5, np.full_like(points, np.nan)])
    maps = LandmarkMap().draw(frames, regions, 64, 64)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32 and maps.max() <= 1
    drawn = maps[0] > 0.5
    assert drawn[20, 14:22].all() and drawn[20:28, 42].all()  # the eyes' edges
    assert not drawn[24, 18] and not drawn[24, 46]  # not their insides
    assert drawn[40, 28:37].all()  # the nose's hull: its base from (28, 40) to (36, 40)
    assert not maps[0, 46:, :].any()  # no lips
    assert np.array_equal(maps[1, 5:, 5:], maps[0, :-5, :-5])  # a moved face moves the map
    assert not maps[2].any()  # no face found: an empty map
    with_lips = LandmarkMap(include_lips=True).draw(frames[:1], regions, 64, 64)[0]
    assert (with_lips[48, 24:41] > 0.5).all() and np.array_equal(with_lips[:46], maps[0, :46])


def test_map_of_an_open_jaw_model_leaves_the_outline_open():
    jaw = np.array([(10, 10), (20, 40), (44, 40), (54, 10)], np.float32) + 0.5
    maps = LandmarkMap().draw(jaw[None], {"jaw": np.arange(4)}, 64, 64)[0]
    assert maps[40, 25:40].min() > 0.5 and maps[10, 20:44].max() == 0  # dlib's jaw is not closed across the eyes
    closed = LandmarkMap().draw(jaw[None], {"face_oval": np.arange(4)}, 64, 64)[0]
    assert closed[10, 20:44].min() > 0.5


@pytest.mark.parametrize("pose", [(0.0, 0.0, 0.0), (25.0, -12.0, 10.0)])
def test_synthetic_landmarks_lie_on_the_drawn_features(pose):
    identity = FaceIdentity.sample(np.random.default_rng(7))
    resolution, opening = 128, np.array([0.9], np.float32)
    frame = render_faces(identity, opening, np.array([pose]), resolution)[0]
    points = face_landmarks(identity, opening, np.array([pose]), resolution)[0]

    def painted(colour: tuple[int, int, int]) -> np.ndarray:
        ys, xs = np.nonzero(np.all(frame == np.array(colour, np.uint8), -1))
        return np.stack([xs, ys], -1) + 0.5  # pixel centres

    for region, colour in (("left_eye", identity.eyes), ("right_eye", identity.eyes)):
        contour = points[LANDMARK_REGIONS[region]]
        eye = painted(colour)
        eye = eye[np.linalg.norm(eye - contour.mean(0), axis=1) < 10]  # this eye's pixels
        assert len(eye) > 20
        np.testing.assert_allclose(eye.min(0), contour.min(0), atol=1.5)
        np.testing.assert_allclose(eye.max(0), contour.max(0), atol=1.5)
    assert points[LANDMARK_REGIONS["left_eye"]].mean(0)[0] > points[LANDMARK_REGIONS["right_eye"]].mean(0)[0]
    mouth = points[LANDMARK_REGIONS["lips_inner"]]
    centre = np.round(mouth.mean(0) - 0.5).astype(int)
    assert np.abs(frame[centre[1], centre[0]].astype(int) - identity.mouth).max() <= 2  # inside the dark mouth
    oval = points[LANDMARK_REGIONS["face_oval"]]
    lower = oval[oval[:, 1] > oval[:, 1].mean()]  # the chin side: skin inside, background (or long hair) outside
    inward = (oval.mean(0) - lower) / np.linalg.norm(oval.mean(0) - lower, axis=1, keepdims=True)
    inside = np.round(lower + 2.5 * inward - 0.5).astype(int)
    outside = np.round(lower - 2.5 * inward - 0.5).astype(int)
    outside = outside[((outside >= 0) & (outside < resolution)).all(1)]
    assert (np.abs(frame[inside[:, 1], inside[:, 0]].astype(int) - identity.skin).max(1) <= 2).all()
    assert (np.abs(frame[outside[:, 1], outside[:, 0]].astype(int) - identity.skin).max(1) > 20).all()


@pytest.fixture(scope="module")
def landmark_module():
    return tiny_module(LANDMARKS)


def test_locator_gives_a_residual_per_frame_and_the_model_adds_it_to_the_latent_frames(landmark_module):
    module = copy.deepcopy(landmark_module)
    locator = module.model.face_locator
    torch.manual_seed(0)
    for p in locator.parameters():
        torch.nn.init.normal_(p, std=0.2)
    mask = torch.ones(2, 1, 32, 32)
    maps = torch.zeros(2, 1, 3, 32, 32)
    maps[:, :, 1, 8:12, 8:24] = 1
    face = locator(mask, maps)
    assert face.shape == (2, locator.latent_channels, 3, 16, 16)  # the pixel VAE: latents at half the side
    assert torch.allclose(face[:, :, 0], face[:, :, 2]) and not torch.allclose(face[:, :, 0], face[:, :, 1])
    assert torch.allclose(locator(mask), face[:, :, 0], atol=1e-6)  # no map: an empty one

    model = module.model.eval()
    channels = locator.latent_channels
    noisy, t = torch.zeros(2, channels, 3, 16, 16), torch.tensor([500])
    reference = model.reference_features(torch.zeros(2, channels, 1, 16, 16))
    per_frame = model.denoise(noisy, t, Conditions(reference, face=face), temporal=False)
    by_hand = torch.cat([model.denoise(noisy[:, :, i:i + 1], t, Conditions(reference, face=face[:, :, i]),
                                       temporal=False) for i in range(3)], 2)
    torch.testing.assert_close(per_frame, by_hand, atol=1e-5, rtol=1e-4)
    six = face.repeat_interleave(2, 2)  # 6 video frames onto 3 latent frames (a temporally compressing VAE)
    torch.testing.assert_close(model.denoise(noisy, t, Conditions(reference, face=six), temporal=False), per_frame)


def test_generation_follows_the_landmark_track_and_needs_one(landmark_module):
    module = copy.deepcopy(landmark_module).eval()
    torch.manual_seed(0)
    for p in module.model.face_locator.parameters():
        torch.nn.init.normal_(p, std=0.2)
    pipeline = module.pipeline()
    identity = FaceIdentity.sample(np.random.default_rng(1))
    poses = np.array([[0, 0, 0]] * 4 + [[25, 10, 10]] * 4, np.float32)
    points = face_landmarks(identity, np.zeros(8, np.float32), poses, 32)
    inputs = (torch.zeros(1, 3, 32, 32), torch.randn(1, 5120) * 0.1, torch.ones(1, 1, 32, 32))
    controls = {"total_frames": 8, "steps": 1, "guidance_reference": 1.0, "guidance_audio": 1.0, "seed": 0}

    def generate(track: LandmarkTrack) -> torch.Tensor:
        return pipeline(*inputs, landmarks=track, **controls)

    still = generate(LandmarkTrack(points[:1], LANDMARK_REGIONS))
    moving = generate(LandmarkTrack(points, LANDMARK_REGIONS))
    assert still.shape == moving.shape == (1, 3, 8, 32, 32)
    assert torch.equal(still[:, :, :4], moving[:, :, :4])  # the same landmarks in the first 4 frames
    assert (still[:, :, 4:] - moving[:, :, 4:]).abs().mean() > 1e-3  # the head turns in the last 4
    with pytest.raises(ValueError, match="draws facial landmarks.*pose_video"):
        next(pipeline.clips(*inputs, **controls))


def test_training_needs_landmark_maps_and_says_where_to_get_them(landmark_module):
    module = landmark_module
    batch = tiny_batch()
    assert "landmark_map" not in batch  # the data draws maps only for a model that asks
    with pytest.raises(ValueError, match="needs a `landmark_map`.*model/face_locator=conv"):
        module.diffusion_loss(batch, training=True)
    batch["landmark_map"] = torch.zeros(2, 1, 8, 32, 32)
    assert torch.isfinite(module.diffusion_loss(batch, training=True))


def test_driving_landmarks_land_on_the_portraits_face_box_and_keep_their_motion():
    rng = np.random.default_rng(0)
    face = rng.uniform(100, 200, (20, 2)).astype(np.float32)
    driving = np.stack([face, face + (10, 0), face - (10, 0)]).astype(np.float32)
    portrait = (face - 100) * 0.25 + 10  # the same face, a quarter of the size, elsewhere
    moved = onto_portrait(driving, portrait)
    np.testing.assert_allclose(moved[0], portrait, atol=1e-4)  # the median frame lands exactly on the portrait
    np.testing.assert_allclose(moved[1] - moved[0], np.full((20, 2), (2.5, 0)), atol=1e-4)  # motion, scaled


# ------------------------------------------------------------------------------------------------ real media
@pytest.fixture(scope="module")
def hdtf_landmark_run(sample, tmp_path_factory) -> dict:
    """The first 2 s of the HDTF clip preprocessed (default face detector and landmarks) and a tiny model with the
    landmark locator fitted on it for 2 steps."""
    source = sample("hdtf_clip.mp4")
    root = tmp_path_factory.mktemp("landmark_locator")
    frames, _ = read_video(source)
    with Mp4Writer(root / "videos" / "Katie_000.mp4", 25, 512, 512, audio=load_audio(source)[:32000]) as writer:
        writer.write(frames[:50])
    Image.fromarray(frames[60]).save(root / "portrait.png")
    run(root / "videos", root / "data", Settings(fps=25, resolution=64, segment_seconds=2.0), {"name": "mediapipe"},
        {"name": "flow"}, workers=1, progress=False, landmarks={"name": "mediapipe_mesh"})
    module = tiny_module(LANDMARKS)
    data = PreprocessedDataModule(path=str(root / "data"), stage=3, resolution=32, batch_size=1, val_fraction=0)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=root, accelerator="cpu")
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(root / "landmarks.ckpt")
    batch = next(iter(data.train_dataloader()))
    return {"root": root, "ckpt": root / "landmarks.ckpt", "batch": batch, "loss": trainer.callback_metrics}


@pytest.mark.slow
def test_preprocessed_batches_carry_landmark_maps_of_the_face(hdtf_landmark_run):
    batch = hdtf_landmark_run["batch"]
    maps = batch["landmark_map"]
    assert maps.shape == (1, 1, 8, 32, 32) and torch.isfinite(hdtf_landmark_run["loss"]["train/loss"])
    drawn = maps[0, 0] > 0.3
    assert drawn.flatten(1).any(1).all()  # a face in every frame
    assert (drawn & (batch["mask"][0, 0] > 0)).sum() > 0.8 * drawn.sum()  # drawn inside the face box


@pytest.mark.slow
def test_a_model_that_needs_landmarks_stops_on_data_without_them(hdtf_landmark_run):
    data = PreprocessedDataModule(path=str(hdtf_landmark_run["root"] / "data"), stage=3, resolution=32)
    data.trainer = SimpleNamespace(lightning_module=tiny_module(LANDMARKS))
    with pytest.raises(ValueError, match="preprocessed without them.*landmarks=mediapipe_mesh"):
        data._landmark_style({"landmarks": None})


@pytest.mark.slow
@pytest.mark.parametrize("driven", [False, True])
def test_predict_with_the_landmark_locator_from_the_portrait_or_a_driving_video(hdtf_landmark_run, sample, driven,
                                                                                 monkeypatch):
    root, audio = hdtf_landmark_run["root"], sample("speech_16k_stereo.wav")
    monkeypatch.chdir(root)
    output = root / f"driven_{driven}.mp4"
    extra = [f"pose_video={sample('hdtf_clip.mp4')}"] if driven else []
    main(["predict", f"ckpt_path={hdtf_landmark_run['ckpt']}", f"image={root / 'portrait.png'}", f"audio={audio}",
          f"output={output}", "steps=1", "fps=5", *extra])
    info = probe_video(output)
    seconds = len(load_audio(audio)) / 16000
    assert info["video_codec"] == "h264" and info["num_frames"] == round(seconds * 5)

    count = info["num_frames"]
    pose_video = sample("hdtf_clip.mp4") if driven else None
    track = job_landmarks(root / "portrait.png", 32, "mediapipe", "mediapipe_mesh", pose_video, 5.0, count)
    _, mask = load_portrait(root / "portrait.png", 32, "mediapipe")
    ys, xs = np.nonzero(mask[0].numpy())
    eyes = track.points[:, np.r_[track.regions["left_eye"], track.regions["right_eye"]]]
    assert len(track.points) == (count if driven else 1)
    inside = (eyes[..., 0] > xs.min()) & (eyes[..., 0] < xs.max() + 1) & (eyes[..., 1] > ys.min()) & (
        eyes[..., 1] < ys.max() + 1)
    assert inside.mean() > 0.95  # the eyes in the portrait crop's face box, every frame
    if driven:  # the driving head moves
        assert np.ptp(eyes.mean(1), axis=0).max() > 0.5


@pytest.mark.slow
def test_maps_of_two_landmark_models_agree_on_a_real_face(sample):
    """dlib's 68 points and MediaPipe's 478 give the same drawing where both mark the face (MediaPipe's outline also
    goes over the forehead, which dlib's jaw does not)."""
    from scipy.ndimage import distance_transform_edt

    from emo_lightning import registry

    frame = read_video(sample("hdtf_clip.mp4"))[0][0]
    strokes = {}
    for name in ("mediapipe_mesh", "dlib68"):
        model = registry.build("landmarks", name)
        strokes[name] = LandmarkMap().draw(model.detect(frame)[None], model.regions, 512, 512)[0] > 0.3
    distance_to_mediapipe = distance_transform_edt(~strokes["mediapipe_mesh"])
    assert strokes["dlib68"].sum() > 2000
    assert distance_to_mediapipe[strokes["dlib68"]].mean() < 3  # pixels, at 512²
