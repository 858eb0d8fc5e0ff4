"""The EMO network, assembled from registered components.

    reference image ─VAE─► backbone.reference_features (once per video) ──────┐
    motion frames ──VAE─► backbone.motion_features (once per clip) ──────┐    │
    audio ─► audio encoder ─► audio tokens + window positions ──────┐    │    │
    head speed ─► speed encoder ─► speed tokens ─────────────────┐  │    │    │
    face mask ─► face locator ─► + noisy latents ─► backbone.denoise (speed, audio, motion, reference)

The backbone (a registered ``backbone`` component: :class:`emo_lightning.components.base.Backbone`) owns the denoiser,
its reference path and the temporal blocks it places; EMO adds the face locator, the audio and speed encoders and
the audio window positions, which every backbone shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from emo_lightning import registry
from emo_lightning.components.base import Component, Conditions


def _build(kind: str, spec: registry.Spec, what: str, **derived: Any) -> Any:
    return registry.build(kind, spec, config_key=f"model.{what}", **derived)


class EMO(nn.Module):
    """A backbone with EMO's shared components; see the module docstring.

    ``gradient_checkpointing`` keeps only block inputs for the backward pass and recomputes the rest there
    (the backbone's :meth:`~emo_lightning.components.base.Backbone.set_gradient_checkpointing`).
    """

    def __init__(self, backbone: dict[str, Any], vae: dict[str, Any], audio_encoder: dict[str, Any],
                 face_locator: dict[str, Any], temporal_block: dict[str, Any], speed_encoder: dict[str, Any],
                 gradient_checkpointing: bool = False):
        super().__init__()
        self.vae = _build("vae", vae, "vae")
        self.speed_encoder = _build("speed_encoder", speed_encoder, "speed_encoder")
        speed_dim = self.speed_encoder.output_dim

        def temporal_blocks(channels: int, location: str) -> nn.Module:
            return _build("temporal_block", temporal_block, "temporal_block", channels=channels, speed_dim=speed_dim,
                          location=location)

        self.backbone = _build("backbone", backbone, "backbone", latent_channels=self.vae.latent_channels,
                               temporal_downsample=self.vae.temporal_downsample, speed_dim=speed_dim,
                               temporal_block=temporal_blocks)
        audio_dim = self.backbone.audio_dim
        self.audio_encoder = _build("audio_encoder", audio_encoder, "audio_encoder", output_dim=audio_dim)
        # attention is blind to the order of its keys: without a position per window slot the audio-attention
        # cannot tell a frame's own audio from its ±window neighbours', and the mouth follows only their average.
        # Unit scale, as the encoders' LayerNorm'd tokens.
        window = self.audio_encoder.window
        slots = window and self.audio_encoder.slot_positions
        self.audio_positions = nn.Parameter(torch.randn(2 * window + 1, audio_dim)) if slots else None
        self.face_locator = _build("face_locator", face_locator, "face_locator",
                                   latent_channels=self.vae.latent_channels, downsample=self.vae.downsample)
        # frozen by their component (pretrained encoders, unused ReferenceNet layers): never trained
        self._always_frozen = {n for n, p in self.named_parameters() if not p.requires_grad}
        self.set_gradient_checkpointing(gradient_checkpointing)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute the backbone's activations in the backward pass (unchanged gradients, less memory, about one
        more forward pass of time)."""
        self.backbone.set_gradient_checkpointing(enabled)

    def parameter_groups(self) -> dict[str, list[nn.Module | nn.Parameter]]:
        """The backbone's groups plus EMO's own modules (see :mod:`emo_lightning.model.stages`)."""
        groups: dict[str, list[nn.Module | nn.Parameter]] = {
            group: list(members) for group, members in self.backbone.parameter_groups().items()}
        groups.setdefault("face_locator", []).append(self.face_locator)
        groups.setdefault("audio", []).append(self.audio_encoder)
        if self.audio_positions is not None:
            groups["audio"].append(self.audio_positions)
        groups.setdefault("speed", []).append(self.speed_encoder)
        return groups

    def external_weight_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of frozen pretrained weights that checkpoints leave out (rebuilt from source)."""
        return tuple(f"{name}.{sub}." for name, module in self.named_modules()
                     if isinstance(module, Component) for sub in module.pretrained_submodules)

    def reference_features(self, reference_latents: Tensor) -> dict[str, Tensor]:
        """The backbone's reference features of ``(B, C, 1, h, w)`` latents (once per video)."""
        return self.backbone.reference_features(reference_latents)

    def motion_features(self, motion_latents: Tensor) -> dict[str, Tensor]:
        """The backbone's motion features of ``(B, C, N, h, w)`` motion-frame latents (once per clip)."""
        return self.backbone.motion_features(motion_latents)

    def conditions(self, reference: Tensor | dict[str, Tensor], mask: Tensor, landmark_map: Tensor | None = None,
                   motion: Tensor | None = None, audio: Tensor | None = None, speed: Tensor | None = None,
                   keep: Mapping[str, Tensor] | None = None) -> Conditions:
        """The conditions of B samples, for training and generation alike: the ``reference`` image's latents
        (B, C, 1, h, w), or their :meth:`reference_features` where generation reuses them over a video's clips; the
        face ``mask`` (B, 1, H, W) with the ``landmark_map`` (B, 1, F, H, W) of a face locator that draws landmarks;
        ``motion``-frame latents (B, C, N, h, w); audio tokens (B, F, W, D); head ``speed`` (B, F). A path given None
        is off. ``keep``: per-sample masks (B,), 1 keep / 0 drop, for ``reference``, ``motion`` and ``audio``:
        training's condition dropout, generation's first clip (no motion frames yet)."""
        keep = keep or {}

        def kept(name: str, x: Tensor) -> Tensor:
            return x if name not in keep else x * keep[name].view(-1, *[1] * (x.ndim - 1))

        if not isinstance(reference, dict):
            reference = self.reference_features(kept("reference", reference))
        conditions = Conditions(reference, face=self.face_locator(mask, landmark_map))
        if motion is not None:
            conditions.motion = {k: kept("motion", v) for k, v in self.motion_features(motion).items()}
        if audio is not None:
            conditions.audio = kept("audio", audio)
        if speed is not None:
            conditions.speed = self.speed_encoder(speed)
        return conditions

    def denoise(self, noisy: Tensor, timesteps: Tensor, conditions: Conditions, temporal: bool = True) -> Tensor:
        """The backbone's prediction for ``(B, C, F', h, w)`` noisy latents at ``timesteps`` (B,), with the face
        locator's residual added to every latent frame and the window positions to the audio tokens."""
        if conditions.face is not None:
            f = noisy.shape[2]
            face = conditions.face if conditions.face.ndim == 5 else conditions.face[:, :, None]
            if face.shape[2] not in (1, f):  # a residual per video frame, resampled to the latent frames
                face = nn.functional.adaptive_avg_pool3d(face, (f, *face.shape[-2:]))
            noisy = noisy + face.to(noisy.dtype)
        audio = conditions.audio
        if audio is not None and self.audio_positions is not None:
            audio = audio + self.audio_positions.to(audio.dtype)
        return self.backbone.denoise(noisy, timesteps, replace(conditions, face=None, audio=audio), temporal)
