"""The contract checks of one registered component, shared by the test suite (``tests/test_components.py``) and
``emo plugins check <kind>.<name>`` (for plugin authors).

Each check builds the component tiny (its ``tiny`` config plus the arguments EMO derives from the other
components), probes it and returns a one-line description of what it verified; a broken component raises
:class:`~emo_lightning.registry.PluginContractError` (or ``AssertionError``) with the reason, and a check that does
not apply raises :class:`NotApplicable`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from emo_lightning import registry
from emo_lightning.components.base import INTERFACES, Conditions

# arguments EMO derives from the other components (see emo_lightning/model/emo.py)
DERIVED = {
    "audio_encoder": {"output_dim": 16},
    "face_locator": {"latent_channels": 4, "downsample": 4},
    "temporal_block": {"channels": 16, "speed_dim": 8, "location": "down_blocks.1.attentions.0"},
    "backbone": {"latent_channels": 4, "temporal_downsample": 1, "speed_dim": 8},
}
# plain ABCs over numpy images, not nn.Modules
PREPROCESSING_KINDS = ("face_detector", "pose_estimator", "landmarks", "face_embedder")


class NotApplicable(Exception):
    """The check does not apply to this component (e.g. no trainable parameters)."""


def tiny_arguments(entry: registry.Entry) -> dict[str, Any]:
    return {**entry.tiny_config(), **DERIVED.get(entry.kind, {})}


def runtime_arguments(entry: registry.Entry) -> dict[str, Any]:
    """Derived arguments that are objects, not config: a backbone's ``temporal_block`` factory (the tiny
    ``animatediff`` block)."""
    if entry.kind != "backbone":
        return {}
    block = registry.entry("temporal_block", "animatediff")
    speed_dim = DERIVED["backbone"]["speed_dim"]

    def temporal_block(channels: int, location: str) -> torch.nn.Module:
        return registry.build("temporal_block", "animatediff", **block.tiny_config(), channels=channels,
                              speed_dim=speed_dim, location=location)

    return {"temporal_block": temporal_block}


def build_tiny(entry: registry.Entry) -> Any:
    """The component built from its tiny config; the interface's own probe runs as it is built."""
    return registry.build(entry.kind, entry.name, **tiny_arguments(entry), **runtime_arguments(entry))


def backbone_outputs(backbone: Any, batch: int = 2, latent_frames: int = 3) -> list[torch.Tensor]:
    """``denoise`` of random latents with every condition (reference, motion, audio, speed) from the backbone's
    own ``reference_features`` / ``motion_features``."""
    c, side = backbone.latent_channels, 2 * backbone.size_multiple
    frames = 1 + (latent_frames - 1) * backbone.temporal_downsample  # video frames of the latent frames
    conditions = Conditions(backbone.reference_features(torch.randn(batch, c, 1, side, side)),
                            motion=backbone.motion_features(torch.randn(batch, c, 2, side, side)),
                            audio=torch.randn(batch, frames, 3, backbone.audio_dim),
                            speed=torch.randn(batch, frames, DERIVED["backbone"]["speed_dim"]))
    latents = torch.randn(batch, c, latent_frames, side, side)
    return [backbone.denoise(latents, torch.tensor([1, 500][:batch]), conditions)]


def module_outputs(entry: registry.Entry, component: Any) -> list[torch.Tensor]:
    """Run a module component on small inputs; return its outputs."""
    kind = entry.kind
    if kind == "audio_encoder":
        return [component(torch.randn(2, int(component.sample_rate * 0.4)) * 0.1, 10)]
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
    if kind == "backbone":
        return backbone_outputs(component)
    if kind == "frame_features":
        return [component(torch.randint(0, 256, (2, 3, 24, 32), dtype=torch.uint8))]
    if kind == "video_features":
        return [component(torch.randint(0, 256, (2, 3, max(component.min_frames, 4), 24, 32), dtype=torch.uint8))]
    if kind == "sync_model":
        size, frames = component.crop_size, component.window + 2
        crops = torch.randint(0, 256, (frames, 3, size, size), dtype=torch.uint8)
        return [component.embed_video(crops), component.embed_audio(torch.randn(16000) * 0.1, frames)]
    raise NotApplicable(f"{kind} components are not modules with tensor outputs")


def expected_shapes(entry: registry.Entry, component: Any) -> list[tuple[int, ...]]:
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
    if kind == "backbone":
        side = 2 * component.size_multiple
        return [(2, component.latent_channels, 3, side, side)]
    if kind in ("frame_features", "video_features"):
        return [(2, component.num_features)]
    if kind == "sync_model":
        return [(3, component.dim)] * 2
    raise NotApplicable(kind)


def check_shapes_and_dtype(entry: registry.Entry) -> str:
    torch.manual_seed(0)
    component = build_tiny(entry)
    assert isinstance(component, INTERFACES[entry.kind]), f"built a {type(component).__name__}"
    results = module_outputs(entry, component)
    shapes, expected = [tuple(r.shape) for r in results], expected_shapes(entry, component)
    assert shapes == expected, f"outputs have shapes {shapes}, expected {expected}"
    for result in results:
        assert result.dtype == torch.float32, f"an output is {result.dtype}, expected float32"
        assert torch.isfinite(result).all(), "an output holds NaN or inf"
    return f"outputs {', '.join(str(s) for s in shapes)}, float32, finite"


def check_gradients(entry: registry.Entry) -> str:
    torch.manual_seed(0)
    component = build_tiny(entry)
    if not isinstance(component, torch.nn.Module):
        raise NotApplicable("not an nn.Module")
    trainable = {n: p for n, p in component.named_parameters() if p.requires_grad}
    if not trainable:
        raise NotApplicable(f"{entry.kind} {entry.name} has no trainable parameters (frozen by design)")
    # zero-initialised output layers (identity at start) would hide the gradient of everything before them
    with torch.no_grad():
        for p in trainable.values():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    loss = sum(r.float().pow(2).mean() for r in module_outputs(entry, component))
    assert loss.requires_grad, "no output depends on a trainable parameter (gradients are cut off)"
    loss.backward()
    missing = [n for n, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient reaches {missing}"
    assert sum(p.grad.abs().sum() for p in trainable.values()) > 0, "every gradient is zero"
    count = sum(p.numel() for p in trainable.values())
    return f"all {len(trainable)} trainable tensors ({count:,} parameters) receive a finite gradient"


def check_config_round_trip(entry: registry.Entry) -> str:
    """The tiny config survives YAML, and rebuilding from it gives the same module with the same seed."""
    config = tiny_arguments(entry)
    restored = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(OmegaConf.create(config))))
    assert restored == config, f"the config changes through YAML: {config} -> {restored}"
    runtime = runtime_arguments(entry)
    torch.manual_seed(1)
    first = registry.build(entry.kind, entry.name, **config, **runtime)
    torch.manual_seed(1)
    second = registry.build(entry.kind, entry.name, **restored, **runtime)
    if not isinstance(first, torch.nn.Module):
        return "the config survives YAML and rebuilds"
    first, second = first.state_dict(), second.state_dict()
    assert first.keys() == second.keys(), "rebuilding from the YAML config gives other weights' names"
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"rebuilding from the YAML config with the same seed gives other values for {different}"
    return f"the config survives YAML; rebuilt with the same seed: the same {len(first)} tensors"


def check_scheduler_denoises(entry: registry.Entry, prediction_type: str = "v_prediction") -> str:
    """With an oracle model (the true noise / velocity), sampling recovers the clean sample."""
    scheduler = registry.build(entry.kind, entry.name, prediction_type=prediction_type,
                               beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing")
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 4, 2, 4, 4, generator=generator) * 2 - 1
    scheduler.set_timesteps(20)
    latents = torch.randn(clean.shape, generator=generator) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(latents, t)
        # the exact prediction for a data set holding only `clean`
        alpha_bar = scheduler.alphas_cumprod[int(t)]
        eps = (model_in - alpha_bar.sqrt() * clean) / (1 - alpha_bar).sqrt()
        pred = eps if prediction_type == "epsilon" else alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * clean
        latents = scheduler.step(pred, t, latents).prev_sample
    error = (latents - clean).abs().max().item()
    assert error < 0.05, f"20 steps with an oracle {prediction_type} model end {error:.3f} from the clean sample"
    return f"20 steps with an oracle {prediction_type} model recover the sample (error {error:.4f})"


def check_on_photo(entry: registry.Entry, image: np.ndarray, face_box: tuple[int, int, int, int]) -> str:
    """A preprocessing component on a real photo of one face (``face_box``: x0, y0, x1, y1 around it)."""
    component = build_tiny(entry)
    box = np.array(face_box, np.float32)
    if entry.kind == "face_detector":
        faces = component.detect(image)
        assert faces.dtype == np.float32 and faces.ndim == 2 and faces.shape[1] == 5, f"returned {faces.shape}"
        assert len(faces) >= 1, "found no face in the photo"
        assert np.all(np.diff(faces[:, 4]) <= 0), "faces are not sorted by score"
        return f"{len(faces)} face(s), float32 (K, 5), sorted by score"
    if entry.kind == "pose_estimator":
        frames = np.stack([image, image, np.roll(image, 3, axis=1)])  # still, then the face moves 3 px
        speed = component.speed(frames, np.tile(box, (3, 1)))
        assert speed.dtype == np.float32 and speed.shape == (3,) and np.all(np.isfinite(speed)), f"returned {speed}"
        assert speed[1] < 0.5 < speed[2], f"speed {speed}: expected ~0 while still, > 0.5 after a 3-px move"
        return f"speed {np.round(speed, 2).tolist()} deg/frame (still, then moved)"
    if entry.kind == "landmarks":
        points = component.detect(image, box)
        assert points.shape == (component.num_points, 2) and np.isfinite(points).all(), "no landmarks on the face"
        inside = np.mean((points[:, 0] >= box[0] - 10) & (points[:, 0] <= box[2] + 10)
                         & (points[:, 1] >= box[1] - 10) & (points[:, 1] <= box[3] + 10))
        assert inside > 0.9, f"only {inside:.0%} of the landmarks fall on the face"
        return f"{component.num_points} points, {inside:.0%} on the face"
    if entry.kind == "face_embedder":
        embedding = component.embed(image, box)
        assert np.isfinite(embedding).all() and abs(np.linalg.norm(embedding) - 1) < 1e-3, "not a unit embedding"
        return f"unit embedding of {component.dim} values"
    raise NotApplicable(entry.kind)


@dataclass
class CheckResult:
    check: str
    status: str  # "ok", "n/a" or "FAILED"
    detail: str


def run_checks(entry: registry.Entry, photo: tuple[np.ndarray, tuple[int, int, int, int]] | None = None,
               ) -> list[CheckResult]:
    """Every check that applies to ``entry``'s kind; stops at a failed build (nothing else can run)."""
    checks: list[tuple[str, Callable[[], str]]] = [("build + interface probe", lambda: _built(entry))]
    if entry.kind == "scheduler":
        checks += [(f"denoise ({p})", lambda p=p: check_scheduler_denoises(entry, p))
                   for p in ("epsilon", "v_prediction")]
    elif entry.kind in PREPROCESSING_KINDS:
        if photo is not None:
            checks.append(("on a photo", lambda: check_on_photo(entry, *photo)))
    else:
        checks += [("shapes and dtype", lambda: check_shapes_and_dtype(entry)),
                   ("gradient flow", lambda: check_gradients(entry)),
                   ("config round trip", lambda: check_config_round_trip(entry))]
    results = []
    for name, check in checks:
        try:
            results.append(CheckResult(name, "ok", check()))
        except NotApplicable as why:
            results.append(CheckResult(name, "n/a", str(why)))
        except Exception as failure:  # a broken contract, or the component's own code raised: a failed check
            expected = isinstance(failure, (AssertionError, registry.PluginContractError, registry.RegistryError))
            detail = str(failure) if expected and str(failure) else f"raised {type(failure).__name__}: {failure}"
            results.append(CheckResult(name, "FAILED", detail))
            if name.startswith("build"):
                break
    return results


def _built(entry: registry.Entry) -> str:
    component = build_tiny(entry)
    interface = INTERFACES[entry.kind]
    return f"{type(component).__name__} is a {interface.__name__}; its check_contract passes"


def check_report(target: str, image: str | None = None) -> tuple[bool, str]:
    """``emo plugins check <kind>.<name> [image=<photo of one face>]``: (all passed, the printed report)."""
    kind, _, name = target.partition(".")
    if not name:
        raise registry.RegistryError(f"name the component as <kind>.<name> (e.g. audio_encoder.mel), not {target!r}")
    entry = registry.entry(kind, name)
    photo = None
    if image is not None:
        photo = _photo_with_face(image)
    results = run_checks(entry, photo)
    width = max(len(r.check) for r in results)
    lines = [f"{kind}.{name}  ({entry.source})"]
    lines += [f"  {r.check:<{width}}  {r.status:<6}  {r.detail}" for r in results]
    if entry.kind in PREPROCESSING_KINDS and photo is None:
        lines.append("  (give image=<a photo of one face> to also run it on a real face)")
    ok = all(r.status != "FAILED" for r in results)
    lines.append("all checks passed" if ok else f"{sum(r.status == 'FAILED' for r in results)} check(s) FAILED")
    return ok, "\n".join(lines)


def _photo_with_face(path: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The photo and its face box, found by the default face detector."""
    from emo_lightning.media.image import load_image

    image = load_image(path)
    faces = registry.build("face_detector", "opencv_haar").detect(image)
    if not len(faces):
        raise ValueError(f"{path}: the opencv_haar face detector finds no face to check against")
    x0, y0, x1, y1 = (int(v) for v in faces[0, :4])
    return image, (x0, y0, x1, y1)
