"""The EMO network, assembled from registered components.

    reference image ─VAE─► ReferenceNet ──(attn1 inputs, once per video)──┐
    motion frames ──VAE─► ReferenceNet ──(unit outputs, once per clip)─┐   │
    audio ─► audio encoder ─► audio tokens ───────────────────────┐    │   │
    head speed ─► speed encoder ─► speed tokens ───────────────┐  │    │   │
    face mask ─► face locator ─► + noisy latents ─► Backbone UNet (reference-attn ◄┘, audio-attn ◄┘,
                                                                  temporal blocks ◄ motion, speed)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from emo_lightning import registry
from emo_lightning.components.base import Component
from emo_lightning.model.hooks import block_key, install_backbone, install_reference_net, temporal_locations
from emo_lightning.model.state import Checkpointing, UNetState


@dataclass
class Conditions:
    """Everything the backbone is conditioned on, for a batch of B videos (or CFG branches)."""

    reference: dict[str, Tensor] | None  # attn1 name -> (B, L, C)
    face: Tensor | None = None  # (B, C_lat, h, w) added to every frame's noisy latent, or (B, C_lat, F, h, w)
    motion: dict[str, Tensor] | None = None  # location -> (B, C, N, h, w)
    audio: Tensor | None = None  # (B, F, T, D)
    speed: Tensor | None = None  # (B, F, speed_dim)


def _spec(spec: dict[str, Any], what: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"model.{what} must be a mapping with a `name` key, got {spec!r}")
    kwargs = dict(spec)
    return kwargs.pop("name"), kwargs


def _build(kind: str, spec: dict[str, Any], what: str, **derived: Any) -> Any:
    name, kwargs = _spec(spec, what)
    clash = sorted(set(kwargs) & set(derived))
    if clash:
        raise ValueError(f"model.{what}: {clash} are derived from the other components; remove them")
    return registry.build(kind, name, **kwargs, **derived)


class EMO(nn.Module):
    """Backbone + ReferenceNet (diffusers UNets) with EMO's components; see the module docstring.

    ``gradient_checkpointing`` keeps only block inputs for the backward pass and recomputes the rest there
    (see :meth:`set_gradient_checkpointing`).
    """

    def __init__(self, unet: dict[str, Any], vae: dict[str, Any], audio_encoder: dict[str, Any],
                 face_locator: dict[str, Any], temporal_block: dict[str, Any], speed_encoder: dict[str, Any],
                 gradient_checkpointing: bool = False):
        super().__init__()
        self.vae = _build("vae", vae, "vae")
        self.backbone = _build("unet", unet, "unet")
        latent, cross_dim = self.backbone.config.in_channels, self.backbone.config.cross_attention_dim
        if latent != self.vae.latent_channels or self.backbone.config.out_channels != latent:
            raise ValueError(
                f"the UNet takes {latent} latent channels but vae {vae['name']!r} makes "
                f"{self.vae.latent_channels}: set model.unet.config.in_channels/out_channels to match")
        self.reference_net = copy.deepcopy(self.backbone)  # EMO starts both from the same weights
        self.audio_encoder = _build("audio_encoder", audio_encoder, "audio_encoder", output_dim=cross_dim)
        # attention is blind to the order of its keys: without a position per window slot the audio-attention
        # cannot tell a frame's own audio from its ±window neighbours', and the mouth follows only their average
        # (issue 5: held-out sync 0.58 without, 0.81 with). Unit scale, as the encoders' LayerNorm'd tokens.
        window = self.audio_encoder.window
        self.audio_positions = nn.Parameter(torch.randn(2 * window + 1, cross_dim)) if window else None
        self.face_locator = _build("face_locator", face_locator, "face_locator",
                                   latent_channels=latent, downsample=self.vae.downsample)
        self.speed_encoder = _build("speed_encoder", speed_encoder, "speed_encoder")
        self.temporal_blocks = nn.ModuleDict({
            block_key(location): _build("temporal_block", temporal_block, "temporal_block", channels=channels,
                                        speed_dim=self.speed_encoder.output_dim, location=location)
            for location, channels in temporal_locations(self.backbone).items()
        })
        self.state = UNetState()
        install_backbone(self.backbone, self.temporal_blocks, self.state)
        install_reference_net(self.reference_net, self.state)
        # frozen by their component (pretrained encoders, unused ReferenceNet layers): never trained
        self._always_frozen = {n for n, p in self.named_parameters() if not p.requires_grad}
        self.set_gradient_checkpointing(gradient_checkpointing)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Activation checkpointing of the backbone's and the ReferenceNet's blocks (diffusers' own switch: every
        transformer block and resnet) and of every temporal block (by its hook).

        Recomputation replays the per-forward :class:`UNetState` the blocks saw (:func:`checkpoint`), so
        reference- and audio-attention, motion frames and speed are recomputed exactly and nothing is
        captured twice. Gradients are unchanged; memory falls, time rises by about one more forward pass.
        """
        self.state.gradient_checkpointing = enabled
        for unet in (self.backbone, self.reference_net):
            if enabled:
                unet.enable_gradient_checkpointing(Checkpointing(self.state))
            elif unet.is_gradient_checkpointing:
                unet.disable_gradient_checkpointing()

    def external_weight_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of frozen pretrained weights that checkpoints leave out (rebuilt from source)."""
        return tuple(f"{name}.{sub}." for name, module in self.named_modules()
                     if isinstance(module, Component) for sub in module.pretrained_submodules)

    def _null_context(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros(batch, 1, self.backbone.config.cross_attention_dim)

    def reference_features(self, reference_latents: Tensor) -> dict[str, Tensor]:
        """ReferenceNet pass over ``(B, C, h, w)`` or ``(B, C, 1, h, w)`` latents → the tokens entering each attn1
        layer."""
        if reference_latents.ndim == 5:
            reference_latents = reference_latents[:, :, 0]
        b = reference_latents.shape[0]
        timestep = torch.zeros(b, device=reference_latents.device, dtype=torch.long)
        with self.state.use(capture="reference", captured={}):
            self.reference_net(reference_latents, timestep, self._null_context(b, reference_latents))
            return dict(self.state.captured)

    def motion_features(self, motion_latents: Tensor) -> dict[str, Tensor]:
        """ReferenceNet pass over ``(B, C, N, h, w)`` motion-frame latents → features at each temporal block."""
        b, _, n = motion_latents.shape[:3]
        frames = rearrange(motion_latents, "b c n h w -> (b n) c h w")
        timestep = torch.zeros(frames.shape[0], device=frames.device, dtype=torch.long)
        with self.state.use(capture="motion", captured={}):
            self.reference_net(frames, timestep, self._null_context(frames.shape[0], frames))
            captured = dict(self.state.captured)
        return {k: rearrange(v, "(b n) c h w -> b c n h w", b=b) for k, v in captured.items()}

    def denoise(self, noisy: Tensor, timesteps: Tensor, conditions: Conditions, temporal: bool = True) -> Tensor:
        """Backbone prediction for ``(B, C, F, h, w)`` noisy latents at ``timesteps`` (B,)."""
        b, _, f = noisy.shape[:3]
        if conditions.face is not None:
            face = conditions.face if conditions.face.ndim == 5 else conditions.face[:, :, None]
            if face.shape[2] not in (1, f):  # a residual per video frame, resampled to the latent frames
                face = nn.functional.adaptive_avg_pool3d(face, (f, *face.shape[-2:]))
            noisy = noisy + face.to(noisy.dtype)
        sample = rearrange(noisy, "b c f h w -> (b f) c h w")
        timesteps = timesteps.expand(b).repeat_interleave(f)
        if conditions.audio is not None:
            audio = conditions.audio
            if self.audio_positions is not None:
                audio = audio + self.audio_positions.to(audio.dtype)
            context = rearrange(audio, "b f t d -> (b f) t d").to(noisy.dtype)
        else:
            context = self._null_context(b * f, noisy)
        with self.state.use(num_frames=f, reference=conditions.reference, motion=conditions.motion,
                            speed=conditions.speed, audio=conditions.audio is not None, temporal=temporal):
            out = self.backbone(sample, timesteps, context).sample
        return rearrange(out, "(b f) c h w -> b c f h w", b=b)
