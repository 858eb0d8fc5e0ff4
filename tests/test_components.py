"""The contract of every registered component of every kind — a new plugin is tested once it registers.

For each component: build it tiny (its ``tiny`` config), then check output shapes and dtype, that
gradients reach every trainable parameter, and that its config survives a YAML round trip and rebuilds
the same module.
"""

from __future__ import annotations

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


def build(entry: registry.Entry) -> object:
    return registry.build(entry.kind, entry.name, **entry.tiny_config(), **DERIVED.get(entry.kind, {}))


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
    first = registry.build(entry.kind, entry.name, **config).state_dict()
    torch.manual_seed(1)
    second = registry.build(entry.kind, entry.name, **restored).state_dict()
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


PREPROCESSING = [e for e in ENTRIES if e.kind in PREPROCESSING_KINDS]
ASTRONAUT_FACE = (172, 60, 278, 166)  # x0, y0, x1, y1 around the face of skimage's astronaut, by eye


@pytest.mark.parametrize("entry", PREPROCESSING, ids=ids(PREPROCESSING))
def test_preprocessing_component_on_a_photo(entry):
    """Face detectors return float32 (K, 5) sorted by score; pose estimators float32 (F,) degrees/frame ≥ 0."""
    try:
        component = build(entry)
    except (FileNotFoundError, ImportError) as err:  # pretrained models (or their package) absent here
        pytest.skip(f"{entry.kind} {entry.name} cannot be built here: {err}")
    assert isinstance(component, INTERFACES[entry.kind])
    image = astronaut()
    if entry.kind == "face_detector":
        faces = component.detect(image)
        assert faces.dtype == np.float32 and faces.ndim == 2 and faces.shape[1] == 5 and len(faces) >= 1
        assert np.all(np.diff(faces[:, 4]) <= 0)
    else:
        frames = np.stack([image, image, np.roll(image, 3, axis=1)])  # still, then the face moves 3 px
        speed = component.speed(frames, np.tile(np.array([ASTRONAUT_FACE], np.float32), (3, 1)))
        assert speed.dtype == np.float32 and speed.shape == (3,) and np.all(np.isfinite(speed))
        assert speed[1] < 0.5 < speed[2]
