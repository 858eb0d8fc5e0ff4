"""Clip-by-clip generation with motion frames and classifier-free guidance.

The reference image goes through the ReferenceNet once per video; each clip's motion frames (the last
``motion_frames`` latents of the previous clip; zeros for the first) once per clip; the audio encoder
once per video (in overlapping windows when it is long). Only the backbone runs at every denoising step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from diffusers import SchedulerMixin
from einops import rearrange
from torch import Tensor

from emo_lightning.components.face_locator.landmark_map import LandmarkMaps
from emo_lightning.model.audio_windows import encode_audio
from emo_lightning.model.emo import EMO, Conditions


@dataclass
class Guidance:
    """pred = u + reference·(r − u) + audio·(f − r), with u: no reference, no audio; r: reference only;
    f: reference and audio. 1.0 for both is plain conditional sampling (one backbone pass per step)."""

    reference: float = 1.0
    audio: float = 1.0

    def branches(self) -> list[tuple[bool, bool, float]]:
        """(use reference, use audio, weight) for every branch with a non-zero weight."""
        weights = [(False, False, 1.0 - self.reference), (True, False, self.reference - self.audio),
                   (True, True, self.audio)]
        return [b for b in weights if abs(b[2]) > 1e-8]


@dataclass
class Progress:
    """Where generation is, after each denoising step."""

    step: int  # denoising steps done, over all clips
    total: int  # denoising steps of the whole video
    clip: int  # the clip being denoised, from 1
    clips: int


class ClipSampler:
    """Generates a portrait video for a waveform, ``num_frames`` frames per clip."""

    def __init__(self, model: EMO, scheduler: SchedulerMixin, num_frames: int, motion_frames: int,
                 steps: int = 40, guidance: Guidance | None = None, temporal: bool = True,
                 use_audio: bool = True, use_speed: bool = True):
        self.model, self.scheduler = model, scheduler
        self.num_frames, self.motion_frames, self.steps = num_frames, motion_frames, steps
        self.guidance = guidance or Guidance()
        self.temporal, self.use_audio, self.use_speed = temporal, use_audio, use_speed

    @torch.no_grad()
    def generate(self, reference: Tensor, waveform: Tensor, total_frames: int, mask: Tensor,
                 speed: float = 1.0, generator: torch.Generator | None = None,
                 on_step: Callable[[Progress], None] | None = None,
                 landmark_maps: LandmarkMaps | None = None) -> Iterator[Tensor]:
        """Yield clips ``(B, 3, n, H, W)`` in [-1, 1] for ``reference`` (B, 3, H, W) and ``waveform`` (B, S)
        until ``total_frames`` frames are out. ``mask`` (B, 1, H, W) is the face region; ``landmark_maps`` the
        face's landmarks per frame, for a face locator that draws them; ``on_step`` is called after every
        denoising step."""
        model, b = self.model, reference.shape[0]
        branches = self.guidance.branches()
        if not self.use_audio:
            branches = [(True, False, 1.0)]
        ref_latents = model.vae.encode(reference)
        features = model.reference_features(torch.cat([torch.zeros_like(ref_latents), ref_latents]))
        rows = torch.cat([torch.arange(b) + (b if use_ref else 0) for use_ref, _, _ in branches])
        reference_features = {k: v[rows.to(v.device)] for k, v in features.items()}
        audio = encode_audio(model.audio_encoder, waveform, total_frames) if self.use_audio else None
        clips = math.ceil(total_frames / self.num_frames)

        motion_latents = None
        for start in range(0, total_frames, self.num_frames):
            n = min(self.num_frames, total_frames - start)
            conditions = Conditions(reference_features, self._face(mask, landmark_maps, start, n, len(branches)))
            if self.temporal:
                conditions.motion = self._motion(motion_latents, ref_latents, len(branches))
            if audio is not None:
                clip_audio = audio[:, start:start + n]
                conditions.audio = torch.cat([clip_audio if use_audio else torch.zeros_like(clip_audio)
                                              for _, use_audio, _ in branches])
            if self.use_speed:
                speeds = torch.full((b * len(branches), n), float(speed), device=reference.device)
                conditions.speed = model.speed_encoder(speeds)

            def report(step: int, clip: int = start // self.num_frames) -> None:
                if on_step is not None:
                    on_step(Progress(clip * self.steps + step, clips * self.steps, clip + 1, clips))

            latents = self._denoise_clip(conditions, ref_latents, n, branches, generator, report)
            motion_latents = latents if motion_latents is None else torch.cat([motion_latents, latents], 2)
            motion_latents = motion_latents[:, :, -self.motion_frames:]
            frames = model.vae.decode(rearrange(latents, "b c f h w -> (b f) c h w"))
            yield rearrange(frames, "(b f) c h w -> b c f h w", b=b).clamp(-1, 1)

    def _face(self, mask: Tensor, landmark_maps: LandmarkMaps | None, start: int, count: int, copies: int
              ) -> Tensor:
        """The face locator's residual for frames ``start … start + count - 1``, repeated for the guidance
        branches."""
        locator = self.model.face_locator
        if landmark_maps is None:
            if locator.landmark_style is not None:
                raise ValueError(f"this model's face locator ({type(locator).__name__}) draws facial landmarks: "
                                 "give the face's landmarks (emo predict takes them from the portrait, or from a "
                                 "driving video with pose_video=<video>)")
            return locator(mask).repeat(copies, 1, 1, 1)
        maps = landmark_maps(start, count).to(mask)
        face = locator(mask, maps.expand(mask.shape[0], -1, -1, -1, -1))
        return face.repeat(copies, *[1] * (face.ndim - 1))

    def _motion(self, motion_latents: Tensor | None, ref_latents: Tensor, copies: int) -> dict[str, Tensor]:
        if motion_latents is None:  # first clip: zero motion features, as in training's motion dropout
            b, c, h, w = ref_latents.shape
            zeros = ref_latents.new_zeros(b, c, self.motion_frames, h, w)
            return {k: torch.zeros_like(v).repeat(copies, 1, 1, 1, 1)
                    for k, v in self.model.motion_features(zeros).items()}
        if motion_latents.shape[2] < self.motion_frames:  # a video shorter than the motion window
            pad = motion_latents[:, :, :1].expand(-1, -1, self.motion_frames - motion_latents.shape[2], -1, -1)
            motion_latents = torch.cat([pad, motion_latents], 2)
        return {k: v.repeat(copies, 1, 1, 1, 1) for k, v in self.model.motion_features(motion_latents).items()}

    def _denoise_clip(self, conditions: Conditions, ref_latents: Tensor, n: int,
                      branches: list[tuple[bool, bool, float]], generator: torch.Generator | None,
                      on_step: Callable[[int], None]) -> Tensor:
        b, c, h, w = ref_latents.shape
        self.scheduler.set_timesteps(self.steps, device=ref_latents.device)
        latents = torch.randn((b, c, n, h, w), generator=generator, device=ref_latents.device,
                              dtype=ref_latents.dtype) * self.scheduler.init_noise_sigma
        weights = [w for _, _, w in branches]
        for i, t in enumerate(self.scheduler.timesteps, 1):
            model_in = self.scheduler.scale_model_input(latents.repeat(len(branches), 1, 1, 1, 1), t)
            preds = self.model.denoise(model_in, t.reshape(1).to(latents.device), conditions,
                                       temporal=self.temporal).chunk(len(branches))
            pred = sum(weight * p for weight, p in zip(weights, preds, strict=True))
            latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample
            on_step(i)
        return latents
