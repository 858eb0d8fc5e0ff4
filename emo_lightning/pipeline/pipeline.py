"""The generation pipeline: EMO's components in, a talking video out, clip by clip.

The reference image goes through the ReferenceNet once per video; each clip's motion frames (the VAE latents of the
last ``motion_frames`` frames made so far; zeros for the first clip) once per clip; the audio encoder once per video
(in overlapping windows when it is long). Only the backbone runs at every denoising step. A clip of ``n`` frames is
``vae.latent_frames(n)`` latent frames; ``vae.decode_video`` gives ``vae.frames(F')`` frames, cropped to ``n``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import SchedulerMixin
from einops import rearrange
from torch import Tensor

from emo_lightning import registry
from emo_lightning.components.base import Conditions
from emo_lightning.components.face_locator.landmark_map import LandmarkMaps, LandmarkTrack, landmark_maps
from emo_lightning.media import Mp4Writer, load_audio
from emo_lightning.model.audio_windows import encode_audio
from emo_lightning.model.emo import EMO
from emo_lightning.model.stages import Stage
from emo_lightning.pipeline.fast_sampling import GuidanceInterval, StepCache, autocast, branch_rows, prepare_backbone
from emo_lightning.pipeline.portrait import DEFAULT_DETECTOR, DetectorSpec, load_portrait
from emo_lightning.pipeline.settings import DEFAULTS, GenerationSettings

DEFAULT_SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                    "beta_end": 0.012, "prediction_type": "epsilon", "timestep_spacing": "trailing"}
"""The noise schedule (diffusers scheduler keywords) training and sampling share, unless a model sets its own."""


@dataclass
class Progress:
    """Where generation is, after each denoising step."""

    step: int  # denoising steps done, over all clips
    total: int  # denoising steps of the whole video
    clip: int  # the clip being denoised, from 1
    clips: int


@dataclass(frozen=True)
class ClipLayout:
    """What the model was trained on: frames per clip, motion frames fed back, and which condition paths it has
    (stage 1: images only; 2: clips with audio; 3: and head speed)."""

    num_frames: int
    motion_frames: int
    stage: int = 3
    resolution: int = 512

    @property
    def temporal(self) -> bool:
        return self.stage >= Stage.VIDEO

    @property
    def uses_audio(self) -> bool:
        return self.stage >= Stage.VIDEO

    @property
    def uses_speed(self) -> bool:
        return self.stage >= Stage.SPEED


class EMOPipeline:
    """A portrait and audio in, frames out (diffusers' ``DiffusionPipeline`` idea: components in, ``__call__``).

    Args:
        model: the EMO network (in eval mode; generation runs without gradients).
        scheduler: the sampling scheduler of ``settings.sampler``.
        layout: the clip layout the model was trained with.
        settings: the default controls (the model's own); every call may override any of them.
        noise_schedule: the scheduler keywords shared by training and sampling, to build another ``sampler`` by name.
    """

    def __init__(self, model: EMO, scheduler: SchedulerMixin, layout: ClipLayout,
                 settings: GenerationSettings = DEFAULTS, noise_schedule: dict[str, Any] | None = None):
        self.model, self.scheduler, self.layout = model, scheduler, layout
        self.settings, self.noise_schedule = settings, dict(noise_schedule or {})
        self.schedulers = {settings.sampler: scheduler}

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: EMO, hparams: Mapping[str, Any]) -> EMOPipeline:
        """The pipeline of ``model`` (shared, not copied) with the generation settings, clip layout and noise schedule
        of its hyper-parameters (a checkpoint's ``hyper_parameters``, or the LightningModule's ``hparams``)."""
        settings = GenerationSettings.from_hparams(hparams)
        schedule = noise_schedule_of(hparams)
        spec = hparams.get("sample_scheduler") or {}
        if spec.get("name") != settings.sampler:  # none configured, or the model's `generation` names another
            spec = {"name": settings.sampler}
        layout = ClipLayout(hparams["num_frames"], hparams["motion_frames"], hparams["stage"], hparams["resolution"])
        return cls(model, build_scheduler(spec, schedule), layout, settings, schedule)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sample_rate(self) -> int:
        """The audio rate the model takes (its audio encoder's)."""
        return self.model.audio_encoder.sample_rate

    @property
    def size_multiple(self) -> int:
        """Generated images' sides must be multiples of this (the VAE's and the backbone's downsampling)."""
        return self.model.vae.downsample * self.model.backbone.size_multiple

    def scheduler_for(self, name: str) -> SchedulerMixin:
        """The scheduler registered as ``name``, on this model's noise schedule (built once)."""
        if name not in self.schedulers:
            self.schedulers[name] = build_scheduler({"name": name}, self.noise_schedule)
        return self.schedulers[name]

    # ---- generation ---------------------------------------------------------------------------------------------
    def __call__(self, image: Tensor | str | Path, audio: Tensor | np.ndarray | str | Path, mask: Tensor | None = None,
                 face_detector: DetectorSpec | None = None, on_step: Callable[[Progress], None] | None = None,
                 **controls: Any) -> Tensor:
        """The whole video ``(B, 3, F, H, W)`` in [-1, 1] (see :meth:`clips`)."""
        return torch.cat(list(self.clips(image, audio, mask, face_detector, on_step=on_step, **controls)), 2)

    @torch.no_grad()
    def clips(self, image: Tensor | str | Path, audio: Tensor | np.ndarray | str | Path, mask: Tensor | None = None,
              face_detector: DetectorSpec | None = None, total_frames: int | None = None,
              landmarks: LandmarkTrack | Tensor | None = None, on_step: Callable[[Progress], None] | None = None,
              **controls: Any) -> Iterator[Tensor]:
        """Yield clips ``(B, 3, n, H, W)`` in [-1, 1] until the audio's length (or ``total_frames``) is covered.

        ``image``: a portrait file (its face found by ``face_detector`` and cropped to the model's resolution, see
        :func:`~emo_lightning.pipeline.portrait.load_portrait`) or a tensor (B, 3, H, W) / (3, H, W) in [-1, 1] with
        its face ``mask`` (B, 1, H, W). ``audio``: a file, or a waveform (B, S) / (S,) at :attr:`sample_rate`.
        ``landmarks``: the face's landmarks per frame (a track of points, or maps (B, 1, F, H, W)), which a face
        locator that draws them needs (see :mod:`emo_lightning.pipeline.landmarks`). ``controls``: any of
        :class:`GenerationSettings` (None keeps the pipeline's). ``on_step`` is called after every denoising step.
        """
        settings = self.settings.override(**controls)
        image, mask = self._portrait(image, mask, face_detector)
        waveform = self._waveform(audio, image.shape[0])
        total = total_frames or round(waveform.shape[-1] / self.sample_rate * settings.fps)
        if total < 1:
            raise ValueError("the audio is shorter than one video frame")
        generator = torch.Generator(self.device).manual_seed(int(settings.seed))
        maps = landmark_maps(landmarks, self.model.face_locator.landmark_style, *image.shape[-2:])
        yield from self._clips(image, waveform, mask, maps, total, settings, generator, on_step)

    def write_video(self, output: str | Path, image: Tensor | str | Path, audio: Tensor | np.ndarray | str | Path,
                    mask: Tensor | None = None, face_detector: DetectorSpec | None = None,
                    landmarks: LandmarkTrack | Tensor | None = None, on_step: Callable[[Progress], None] | None = None,
                    **controls: Any) -> str:
        """Write an H.264 MP4 of the first video, its audio muxed in, encoding each clip as it is made."""
        settings = self.settings.override(**controls)
        image, mask = self._portrait(image, mask, face_detector)
        waveform = self._waveform(audio, 1)
        with Mp4Writer(output, fps=settings.fps, width=image.shape[-1], height=image.shape[-2],
                       audio=waveform[0].float().cpu().numpy(), sample_rate=self.sample_rate) as writer:
            for clip in self.clips(image[:1], waveform, mask[:1], landmarks=landmarks, on_step=on_step, **controls):
                writer.write(rearrange(clip[0], "c f h w -> f c h w").float().cpu())
        return str(output)

    # ---- inputs -------------------------------------------------------------------------------------------------
    def _portrait(self, image: Tensor | str | Path, mask: Tensor | None, face_detector: DetectorSpec | None
                  ) -> tuple[Tensor, Tensor]:
        if isinstance(image, (str, Path)):
            image, found = load_portrait(image, self.layout.resolution, face_detector or DEFAULT_DETECTOR)
            mask = found if mask is None else mask
        image = image[None] if image.ndim == 3 else image
        if mask is None:
            raise ValueError("a portrait given as a tensor needs its face mask (B, 1, H, W)")
        mask = mask[None] if mask.ndim == 3 else mask
        side = self.size_multiple
        if image.shape[-1] % side or image.shape[-2] % side:
            raise ValueError(f"this model generates sizes that are multiples of {side}, "
                             f"not {image.shape[-1]}x{image.shape[-2]}: choose another resolution")
        return image.to(self.device), mask.to(self.device)

    def _waveform(self, audio: Tensor | np.ndarray | str | Path, batch: int) -> Tensor:
        if isinstance(audio, (str, Path)):
            audio = load_audio(audio, self.sample_rate)
        waveform = torch.as_tensor(audio).float().to(self.device)
        return waveform.reshape(1, -1).expand(batch, -1) if waveform.ndim == 1 else waveform

    # ---- the clip loop ------------------------------------------------------------------------------------------
    def _clips(self, reference: Tensor, waveform: Tensor, mask: Tensor, maps: LandmarkMaps | None, total_frames: int,
               settings: GenerationSettings, generator: torch.Generator,
               on_step: Callable[[Progress], None] | None) -> Iterator[Tensor]:
        model, layout, vae, b = self.model, self.layout, self.model.vae, reference.shape[0]
        scheduler = self.scheduler_for(settings.sampler)
        prepare_backbone(model.backbone, channels_last=settings.channels_last, compile=settings.compile)
        branches = settings.guidance.branches() if layout.uses_audio else [(True, False, 1.0)]
        ref_latents = vae.encode_video(reference[:, :, None])  # (B, C, 1, h, w)
        with autocast(settings.precision, ref_latents.device):  # once per video; the first b rows: no reference
            features = model.reference_features(torch.cat([torch.zeros_like(ref_latents), ref_latents]))
        unconditional = {k: v[:b] for k, v in features.items()}
        reference_features = {k: v[b:] for k, v in features.items()}
        audio = encode_audio(model.audio_encoder, waveform, total_frames) if layout.uses_audio else None
        per_clip = layout.num_frames
        clips = math.ceil(total_frames / per_clip)

        history: Tensor | None = None  # the last motion_frames frames made, decoded pixels
        for index, start in enumerate(range(0, total_frames, per_clip)):
            n = min(per_clip, total_frames - start)
            speeds = torch.full((b, n), float(settings.speed), device=reference.device) if layout.uses_speed else None
            with autocast(settings.precision, ref_latents.device):
                motion, keep = self._motion(history, ref_latents) if layout.temporal else (None, {})
                conditions = model.conditions(reference_features, mask, self._landmark_map(mask, maps, start, n),
                                              motion, None if audio is None else audio[:, start:start + n], speeds,
                                              keep)
            conditions = guidance_rows(conditions, unconditional, branches)

            def report(step: int, index: int = index) -> None:
                if on_step is not None:
                    on_step(Progress(index * settings.steps + step, clips * settings.steps, index + 1, clips))

            latents = self.denoise_clip(conditions, ref_latents, vae.latent_frames(n), branches, scheduler,
                                        settings.steps, generator, report, settings)
            with autocast(settings.precision, latents.device):
                frames = vae.decode_video(latents)[:, :, :n].float()
            if layout.temporal:  # unclamped: an image VAE then gives back exactly the clip's own latents
                history = frames if history is None else torch.cat([history, frames], 2)
                history = history[:, :, -layout.motion_frames:]
            yield frames.clamp(-1, 1)

    def _landmark_map(self, mask: Tensor, maps: LandmarkMaps | None, start: int, count: int) -> Tensor | None:
        """The landmark maps (B, 1, count, H, W) of frames ``start … start + count - 1`` for a face locator that draws
        them, else None."""
        locator = self.model.face_locator
        if maps is None:
            if locator.landmark_style is not None:
                raise ValueError(f"this model's face locator ({type(locator).__name__}) draws facial landmarks: "
                                 "give the face's landmarks (emo predict takes them from the portrait, or from a "
                                 "driving video with pose_video=<video>)")
            return None
        return maps(start, count).to(mask).expand(mask.shape[0], -1, -1, -1, -1)

    def _motion(self, history: Tensor | None, ref_latents: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The latents of the last ``motion_frames`` frames made (as training encodes ``batch["motion"]``) and the
        motion path's keep mask: for the first clip, zeros, dropped as training's motion dropout does."""
        model, m = self.model, self.layout.motion_frames
        if history is None:
            b, c, _, h, w = ref_latents.shape
            return ref_latents.new_zeros(b, c, model.vae.latent_frames(m), h, w), {"motion": ref_latents.new_zeros(b)}
        if history.shape[2] < m:  # a video shorter than the motion window: its first frame repeated before it
            history = torch.cat([history[:, :, :1].expand(-1, -1, m - history.shape[2], -1, -1), history], 2)
        return model.vae.encode_video(history), {}

    def denoise_clip(self, conditions: Conditions, ref_latents: Tensor, latent_frames: int,
                     branches: list[tuple[bool, bool, float]], scheduler: SchedulerMixin, steps: int,
                     generator: torch.Generator | None, on_step: Callable[[int], None] = lambda step: None,
                     settings: GenerationSettings = DEFAULTS) -> Tensor:
        """Denoise one clip's latents (B, C, latent_frames, h, w) from noise, combining the guidance ``branches``.

        Outside ``settings``' guidance interval only the last (fully conditioned) branch runs; with a
        ``cache_threshold`` a step may reuse the previous prediction
        (:class:`~emo_lightning.pipeline.fast_sampling.StepCache`).
        """
        b, c, _, h, w = ref_latents.shape
        scheduler.set_timesteps(steps, device=ref_latents.device)
        latents = torch.randn((b, c, latent_frames, h, w), generator=generator, device=ref_latents.device,
                              dtype=ref_latents.dtype) * scheduler.init_noise_sigma
        interval = GuidanceInterval(settings.guidance_max_noise, settings.guidance_min_noise)
        conditional = branch_rows(conditions, b * (len(branches) - 1), b * len(branches))
        cache, num_train = StepCache(settings.cache_threshold), scheduler.config.num_train_timesteps
        # stochastic schedulers draw from the seeded generator; deterministic ones (UniPC) take none
        random = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        for i, t in enumerate(scheduler.timesteps, 1):
            scaled = scheduler.scale_model_input(latents, t)
            pred = cache.lookup(scaled)
            if pred is None:
                guided = len(branches) > 1 and interval.applies(t, num_train)
                runs = branches if guided else branches[-1:]
                model_in = scaled.repeat(len(runs), 1, 1, 1, 1)
                with autocast(settings.precision, latents.device):
                    preds = self.model.denoise(model_in, t.reshape(1).to(latents.device),
                                               conditions if guided else conditional,
                                               temporal=self.layout.temporal).float().chunk(len(runs))
                weights = [w for _, _, w in runs] if guided else [1.0]
                pred = sum(weight * p for weight, p in zip(weights, preds, strict=True))
                cache.store(pred)
            latents = scheduler.step(pred, t, latents, **random).prev_sample
            on_step(i)
        return latents


def guidance_rows(conditions: Conditions, unconditional: dict[str, Tensor], branches: list[tuple[bool, bool, float]]
                  ) -> Conditions:
    """One block of rows per guidance branch ``(use reference, use audio, weight)``: the conditions of B samples with
    the reference features of no reference (``unconditional``) or zero audio where the branch leaves them out."""

    def tiled(value: Tensor | None) -> Tensor | None:
        return None if value is None else value.repeat(len(branches), *[1] * (value.ndim - 1))

    reference = {k: torch.cat([v if use_reference else unconditional[k] for use_reference, _, _ in branches])
                 for k, v in conditions.reference.items()}
    audio = conditions.audio
    if audio is not None:
        audio = torch.cat([audio if use_audio else torch.zeros_like(audio) for _, use_audio, _ in branches])
    motion = None if conditions.motion is None else {k: tiled(v) for k, v in conditions.motion.items()}
    return Conditions(reference, face=tiled(conditions.face), motion=motion, audio=audio,
                      speed=tiled(conditions.speed))


def noise_schedule_of(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The noise schedule of a model's hyper-parameters (``noise_schedule`` over :data:`DEFAULT_SCHEDULE`)."""
    return {**DEFAULT_SCHEDULE, **(hparams.get("noise_schedule") or {})}


def build_scheduler(spec: registry.Spec, noise_schedule: dict[str, Any]) -> SchedulerMixin:
    """A ``scheduler`` component from its spec (a name, or ``name`` + keywords, which override ``noise_schedule``)."""
    name, kwargs = registry.parse_spec(spec, "scheduler")
    return registry.build("scheduler", {"name": name, **noise_schedule, **kwargs})
