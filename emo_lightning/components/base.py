"""The interface of every component kind, with the shapes it promises and the probe that checks them.

Shapes use B batch, F frames, N motion frames, C channels, H×W pixels, h×w latent pixels, S samples.
Video tensors are ``(B, C, F, H, W)`` at module boundaries.

Every interface has ``check_contract(component)``: a cheap probe on tiny inputs run by
:func:`emo_lightning.registry.build`, so a plugin with a wrong output shape fails when it is built,
not deep inside a training step. The tensor kinds (:class:`Component`) state their probe once, in ``probe``: the
inputs and the shape each output must have; the build-time check runs it without gradients, and the contract
checks (:mod:`emo_lightning.contract`) run it again for dtype and gradient flow. The face tools (:class:`FaceTool`)
also say what they must find on a real photo (``check_on_photo``). The kinds themselves are listed in
:mod:`emo_lightning.components.kinds`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from diffusers import SchedulerMixin
from torch import Tensor, nn

from emo_lightning.registry import PluginContractError

if TYPE_CHECKING:
    from emo_lightning.components.face_locator.landmark_map import LandmarkMap


def _expect(tensor: object, shape: tuple[int, ...], what: str) -> None:
    if not isinstance(tensor, Tensor):
        raise PluginContractError(f"{what} returned {type(tensor).__name__}, expected a torch.Tensor")
    if tuple(tensor.shape) != shape:
        raise PluginContractError(f"{what} returned shape {tuple(tensor.shape)}, expected {shape}")
    if not tensor.is_floating_point():
        raise PluginContractError(f"{what} returned dtype {tensor.dtype}, expected a floating dtype")


def _probe_kwargs(module: nn.Module) -> dict:
    param = next(module.parameters(), None)
    return {"device": param.device if param is not None else "cpu",
            "dtype": param.dtype if param is not None else torch.float32}


class Probe(NamedTuple):
    """One output of a component on the probe's inputs, with the shape its interface promises for it."""

    call: str  # what was called, for messages: "forward(speed 2x5)"
    output: Tensor
    shape: tuple[int, ...]


class Component(nn.Module, ABC):
    """Base of the tensor component interfaces.

    ``pretrained_submodules`` names the submodules whose weights came from an external pretrained source
    (hub id / local path) and stay frozen: checkpoints leave them out and rebuild them from that source.
    """

    pretrained_submodules: tuple[str, ...] = ()

    @classmethod
    @abstractmethod
    def probe(cls, component: Component) -> list[Probe]:
        """Run ``component`` on small random inputs (on its device and dtype): every output it promises, each with
        its promised shape. Runs with gradients unless the caller disables them."""

    @classmethod
    def check_contract(cls, component: Component) -> None:
        """Raise PluginContractError if ``component`` breaks this interface."""
        with torch.no_grad():
            for probe in cls.probe(component):
                _expect(probe.output, probe.shape, probe.call)


class AudioEncoder(Component):
    """Waveform → per-video-frame audio tokens, each frame seeing its ±``window`` neighbours.

    ``forward(waveform (B, S) mono at sample_rate, num_frames F) -> (B, F, tokens_per_frame, output_dim)``.
    The frames evenly cover the waveform (frame f ↔ samples [f·S/F, (f+1)·S/F)).
    By default a frame's tokens are its window's ``2·window+1`` slots, to each of which EMO adds a learned position
    (``slot_positions``); an encoder that mixes the window into tokens of its own (Hallo's projection) overrides
    ``tokens_per_frame`` and sets ``slot_positions = False``.

    An encoder whose first part is frozen (a pretrained wav2vec2) may split ``forward`` in two, so that
    `emo preprocess cache_audio=…` can store the frozen part's output once and training runs only the rest:

    * ``features(waveform (B, S), num_frames F) -> (B, F, feature_dim)``: the frozen part, one row per video frame;
    * ``tokens(features (B, F, feature_dim)) -> (B, F, tokens_per_frame, output_dim)``: the trainable part.

    Such an encoder sets ``feature_dim`` and ``feature_arguments`` (the constructor arguments its features depend
    on: cached features serve a model whose encoder agrees on them) and inherits ``forward``
    (``tokens(features(waveform, F))``). An encoder that overrides only ``forward`` works as before; its
    features cannot be cached.

    Each encoder declares the rates it works at: ``sample_rate`` (Hz of the waveform it takes; data loaders and
    ``emo predict`` load audio at it) and ``feature_rate`` (its own features per second before they are taken to
    the video frame rate; None when it has no such grid). ``window_seconds`` is set by encoders that see audio in
    fixed windows from sample 0 (Whisper's 30 s); they split ``forward`` as below, so that long audio is encoded one
    such window at a time (:mod:`emo_lightning.model.audio_windows`).
    """

    sample_rate: int = 16000
    feature_rate: float | None = None
    window_seconds: float | None = None
    output_dim: int
    window: int
    feature_dim: int | None = None  # width of ``features``; None: no frozen part to cache
    feature_arguments: tuple[str, ...] = ()
    slot_positions: bool = True

    @property
    def tokens_per_frame(self) -> int:
        return 2 * self.window + 1

    def forward(self, waveform: Tensor, num_frames: int) -> Tensor:
        return self.tokens(self.features(waveform, num_frames))

    def features(self, waveform: Tensor, num_frames: int) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no frozen feature part: implement `forward`, or "
                                  "`features` and `tokens` (see AudioEncoder)")

    def tokens(self, features: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no frozen feature part: implement `forward`, or "
                                  "`features` and `tokens` (see AudioEncoder)")

    @property
    def caches_features(self) -> bool:
        """Whether ``features`` is frozen, so that `emo preprocess` can store it."""
        return self.feature_dim is not None

    @classmethod
    def probe(cls, component: AudioEncoder) -> list[Probe]:
        wave = torch.randn(2, int(component.sample_rate * 0.4), **_probe_kwargs(component)) * 0.1
        tokens = (2, 10, component.tokens_per_frame, component.output_dim)
        try:
            probes = [Probe("forward(waveform, 10)", component(wave, 10), tokens)]
        except NotImplementedError as exc:
            raise PluginContractError(str(exc)) from exc
        if component.caches_features:
            features = component.features(wave, 10)
            probes += [Probe("features(waveform, 10)", features, (2, 10, component.feature_dim)),
                       Probe("tokens(features)", component.tokens(features), tokens)]
        return probes


class FaceLocator(Component):
    """Face-region mask (and, for locators that draw landmarks, a landmark map per video frame) → a residual added
    to the noisy latent.

    Built with ``latent_channels`` and ``downsample`` (the VAE's factor).
    ``forward(mask (B, 1, H, W) in [0, 1], landmark_map (B, 1, F, H, W) in [0, 1] | None = None)
    -> (B, latent_channels, H/downsample, W/downsample)``, or ``(B, latent_channels, F, H/downsample, W/downsample)``
    when a map is given (one residual per video frame; the backbone's caller resamples F to the latent frames).
    ``landmark_style``: a :class:`~emo_lightning.components.face_locator.landmark_map.LandmarkMap` (how the data should
    draw the maps) for locators that use them, None for those that do not (the data then draws none).
    """

    latent_channels: int
    downsample: int
    landmark_style: LandmarkMap | None = None

    @abstractmethod
    def forward(self, mask: Tensor, landmark_map: Tensor | None = None) -> Tensor: ...

    @classmethod
    def probe(cls, component: FaceLocator) -> list[Probe]:
        size, c = 4 * component.downsample, component.latent_channels
        kw = _probe_kwargs(component)
        mask = torch.rand(2, 1, size, size, **kw)
        probes = [Probe(f"forward(mask 2x1x{size}x{size})", component(mask), (2, c, 4, 4))]
        if component.landmark_style is not None:
            out = component(mask, torch.rand(2, 1, 3, size, size, **kw))
            probes.append(Probe(f"forward(mask 2x1x{size}x{size}, landmark_map 2x1x3x{size}x{size})", out,
                                (2, c, 3, 4, 4)))
        return probes


class TemporalBlock(Component):
    """Attention along the frame axis at one UNet resolution level.

    Built with ``channels`` (the level's width), ``speed_dim`` (speed token size) and ``location`` (the
    UNet module path it follows, e.g. ``down_blocks.1.attentions.0``; used to load pretrained weights).
    ``forward(x (B, C, F, h, w), motion (B, C, N, h, w) | None, speed (B, F, speed_dim) | None)
    -> (B, C, F, h, w)``: motion-frame features are concatenated before the frames along the frame axis;
    ``speed`` is attended to by cross-attention. Parameters of the speed path live in submodules whose
    names start with ``speed`` (stage 3 trains them).
    """

    channels: int
    speed_dim: int

    @abstractmethod
    def forward(self, x: Tensor, motion: Tensor | None = None, speed: Tensor | None = None) -> Tensor: ...

    @classmethod
    def probe(cls, component: TemporalBlock) -> list[Probe]:
        kw = _probe_kwargs(component)
        c = component.channels
        x = torch.randn(2, c, 3, 4, 4, **kw)
        full = component(x, torch.randn(2, c, 2, 4, 4, **kw), torch.randn(2, 3, component.speed_dim, **kw))
        return [Probe("forward(x)", component(x), tuple(x.shape)),
                Probe("forward(x, motion, speed)", full, tuple(x.shape))]


class SpeedEncoder(Component):
    """Head rotation speed per frame (degrees/frame) → speed tokens.

    ``forward(speed (B, F)) -> (B, F, output_dim)``; each frame sees its ±``window`` neighbours.
    """

    output_dim: int
    window: int

    @abstractmethod
    def forward(self, speed: Tensor) -> Tensor: ...

    @classmethod
    def probe(cls, component: SpeedEncoder) -> list[Probe]:
        speed = torch.rand(2, 5, **_probe_kwargs(component)) * 2
        return [Probe("forward(speed 2x5)", component(speed), (2, 5, component.output_dim))]


class VAE(Component):
    """Images and videos in [-1, 1] ↔ scaled latents (unit-ish variance, ready for diffusion).

    ``encode((B, 3, H, W)) -> (B, latent_channels, H/downsample, W/downsample)``; ``decode`` inverts it.

    Videos: ``encode_video((B, 3, F, H, W)) -> (B, latent_channels, latent_frames(F), h, w)`` and
    ``decode_video`` back to ``frames(F')`` frames. An image VAE (``temporal_downsample`` 1) codes every frame
    on its own (the defaults below); a video VAE with temporal compression k (a causal 3-D VAE such as Wan's)
    codes the first frame alone and each following k frames into one latent frame, and overrides all four.
    """

    latent_channels: int
    downsample: int
    temporal_downsample: int = 1

    @abstractmethod
    def encode(self, images: Tensor) -> Tensor: ...

    @abstractmethod
    def decode(self, latents: Tensor) -> Tensor: ...

    def latent_frames(self, num_frames: int) -> int:
        """How many latent frames ``encode_video`` makes of ``num_frames`` frames."""
        k = self.temporal_downsample
        return num_frames if k == 1 else 1 + -(-(num_frames - 1) // k)

    def frames(self, latent_frames: int) -> int:
        """How many frames ``decode_video`` makes of ``latent_frames`` latent frames (≥ the frames encoded)."""
        return 1 + (latent_frames - 1) * self.temporal_downsample

    def encode_video(self, video: Tensor) -> Tensor:
        b = video.shape[0]
        latents = self.encode(video.transpose(1, 2).flatten(0, 1))
        return latents.unflatten(0, (b, -1)).transpose(1, 2)

    def decode_video(self, latents: Tensor) -> Tensor:
        b = latents.shape[0]
        frames = self.decode(latents.transpose(1, 2).flatten(0, 1))
        return frames.unflatten(0, (b, -1)).transpose(1, 2)

    @classmethod
    def probe(cls, component: VAE) -> list[Probe]:
        size, c = 4 * component.downsample, component.latent_channels
        kw = _probe_kwargs(component)
        latents = component.encode(torch.rand(1, 3, size, size, **kw) * 2 - 1)
        frames = 1 + 2 * component.temporal_downsample
        video = component.encode_video(torch.rand(1, 3, frames, size, size, **kw) * 2 - 1)
        n = component.latent_frames(frames)
        return [Probe(f"encode(1x3x{size}x{size})", latents, (1, c, 4, 4)),
                Probe("decode(latents)", component.decode(latents), (1, 3, size, size)),
                Probe(f"encode_video(1x3x{frames}x{size}x{size})", video, (1, c, n, 4, 4)),
                Probe("decode_video(latents)", component.decode_video(video), (1, 3, component.frames(n), size, size))]


@dataclass
class Conditions:
    """Everything a backbone is conditioned on, for a batch of B videos (or guidance branches).

    ``reference`` and ``motion`` are what the same backbone's ``reference_features`` / ``motion_features``
    returned (their keys and layouts are the backbone's own); ``audio`` and ``speed`` are per video frame, and
    the backbone maps them onto its latent frames.
    """

    reference: dict[str, Tensor] | None  # once per video
    face: Tensor | None = None  # (B, C_lat, h, w) added to every latent frame, or (B, C_lat, F, h, w) per frame
    motion: dict[str, Tensor] | None = None  # once per clip
    audio: Tensor | None = None  # (B, F, T, D): F video frames, T window slots, D = backbone.audio_dim
    speed: Tensor | None = None  # (B, F, speed_dim)


TemporalBlockFactory = Callable[[int, str], nn.Module]  # (channels, location) -> the configured TemporalBlock


class Backbone(Component):
    """EMO's denoiser with its reference path (a ReferenceNet, or reference tokens inside the same network).

    Built with derived keyword arguments (besides its own, e.g. ``pretrained`` / ``config``):
    ``latent_channels`` (the VAE's), ``temporal_downsample`` (the VAE's: video frames per latent frame),
    ``speed_dim`` (the speed encoder's width) and ``temporal_block``, a factory ``(channels, location) ->
    TemporalBlock`` for the configured temporal block; the backbone places such blocks where its temporal /
    motion modules sit (one whose own attention already spans frames may place none).

    * ``reference_features(latents (B, C, 1, h, w)) -> dict``: once per video (EMO's ReferenceNet pass).
    * ``motion_features(latents (B, C, N, h, w)) -> dict``: the previous clip's last latent frames, once per clip.
    * ``denoise(latents (B, C, F', h, w), timesteps (B,), conditions, temporal) -> (B, C, F', h, w)``: the
      prediction for noisy latents. ``conditions.face`` is already added to ``latents`` by the caller;
      ``conditions.audio`` / ``speed`` hold one row per *video* frame (F = ``frames`` of the VAE for F'), the
      backbone maps them onto latent frames. ``temporal=False`` (image stage): frames are independent images.
    * ``parameter_groups() -> {group: [modules]}`` for the groups ``backbone``, ``reference_net``, ``audio``,
      ``temporal`` and ``speed`` (see :mod:`emo_lightning.model.stages`; a group may be empty). Groups may nest
      (audio layers inside the backbone network): a parameter belongs to the innermost listed module holding it.
    * ``size_multiple``: latent height and width must be multiples of it; ``audio_dim``: the width of the audio
      tokens it attends to (the audio encoder is built with it); ``fsdp_wrap_classes``: the block classes FSDP
      shards one by one.
    """

    latent_channels: int
    audio_dim: int
    size_multiple: int
    temporal_downsample: int = 1
    speed_dim: int = 0  # the width of the speed tokens it was built for; 0: it takes none
    fsdp_wrap_classes: tuple[type[nn.Module], ...] = ()

    @abstractmethod
    def reference_features(self, latents: Tensor) -> dict[str, Tensor]: ...

    @abstractmethod
    def motion_features(self, latents: Tensor) -> dict[str, Tensor]: ...

    @abstractmethod
    def denoise(self, latents: Tensor, timesteps: Tensor, conditions: Conditions, temporal: bool = True) -> Tensor:
        ...

    @abstractmethod
    def parameter_groups(self) -> dict[str, list[nn.Module]]: ...

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in the backward pass instead of keeping them (unchanged gradients)."""
        if enabled:
            raise NotImplementedError(f"{type(self).__name__} has no gradient checkpointing")

    @classmethod
    def check_contract(cls, component: Backbone) -> None:
        unknown = set(component.parameter_groups()) - {"backbone", "reference_net", "audio", "temporal", "speed"}
        if unknown:
            raise PluginContractError(f"parameter_groups() returned unknown groups {sorted(unknown)}")
        super().check_contract(component)

    @classmethod
    def probe(cls, component: Backbone) -> list[Probe]:
        """``denoise`` of random latents with every condition, the reference and motion ones from the backbone's own
        ``reference_features`` / ``motion_features``."""
        kw = _probe_kwargs(component)
        c, side = component.latent_channels, 2 * component.size_multiple
        frames = 1 + 2 * component.temporal_downsample  # the video frames of 3 latent frames
        speed = torch.randn(2, frames, component.speed_dim, **kw) if component.speed_dim else None
        conditions = Conditions(component.reference_features(torch.randn(2, c, 1, side, side, **kw)),
                                motion=component.motion_features(torch.randn(2, c, 2, side, side, **kw)),
                                audio=torch.randn(2, frames, 3, component.audio_dim, **kw), speed=speed)
        latents = torch.randn(2, c, 3, side, side, **kw)
        out = component.denoise(latents, torch.tensor([10, 500], device=kw["device"]), conditions)
        return [Probe("denoise(latents 2xCx3xhxw)", out, tuple(latents.shape))]


class FaceTool(ABC):
    """Base of the face tools' interfaces: plain ABCs over numpy RGB images, not nn.Modules."""

    @classmethod
    @abstractmethod
    def check_contract(cls, component: FaceTool) -> None:
        """Raise PluginContractError if ``component`` breaks this interface on synthetic inputs."""

    @classmethod
    @abstractmethod
    def check_on_photo(cls, component: FaceTool, image: np.ndarray, box: np.ndarray) -> str:
        """Assert that ``component`` does its job on ``image``, a real photo of one face inside ``box`` (float32
        x0, y0, x1, y1); return a one-line account of what it found."""


class FaceDetector(FaceTool):
    """Face boxes in one image (preprocessing and portrait crops; not an nn.Module).

    ``detect(image uint8 (H, W, 3) RGB) -> float32 (K, 5)``: rows ``x0, y0, x1, y1, score`` in pixels of
    ``image``, sorted by score, highest first; ``(0, 5)`` when there is no face. Scores are the detector's own
    confidence: comparable within one detector, not across detectors.
    """

    @abstractmethod
    def detect(self, image: np.ndarray) -> np.ndarray: ...

    @classmethod
    def check_contract(cls, component: FaceDetector) -> None:
        out = component.detect(np.full((64, 48, 3), 128, np.uint8))
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim != 2 or out.shape[1] != 5:
            raise PluginContractError(f"detect(64x48 image) returned {_describe(out)}, expected float32 (K, 5)")
        if len(out) > 1 and np.any(np.diff(out[:, 4]) > 0):
            raise PluginContractError("detect() rows are not sorted by score, highest first")

    @classmethod
    def check_on_photo(cls, component: FaceDetector, image: np.ndarray, box: np.ndarray) -> str:
        faces = component.detect(image)
        assert faces.dtype == np.float32 and faces.ndim == 2 and faces.shape[1] == 5, f"returned {faces.shape}"
        assert len(faces) >= 1, "found no face in the photo"
        assert np.all(np.diff(faces[:, 4]) <= 0), "faces are not sorted by score"
        best = faces[0, :4]
        # each box holds the other's centre: the same face, whatever margins this detector draws around it
        assert _holds(best, _centre(box)) and _holds(box, _centre(best)), \
            f"the best face {best.round().tolist()} is not the face at {box.round().tolist()}"
        return f"{len(faces)} face(s), float32 (K, 5), sorted by score, the best on the face"


class PoseEstimator(FaceTool):
    """Head rotation speed from a face track (preprocessing; not an nn.Module).

    ``speed(frames uint8 (F, H, W, 3) RGB, boxes float32 (F, 4) x0, y0, x1, y1 pixels) -> float32 (F,)``: the
    head's rotation between consecutive frames in degrees per frame (≥ 0), the speed encoder's input. Frame 0
    has no predecessor and copies frame 1 (as :func:`emo_lightning.geometry.head_speed` does).
    """

    @abstractmethod
    def speed(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray: ...

    @classmethod
    def check_contract(cls, component: PoseEstimator) -> None:
        frames = np.full((3, 48, 48, 3), 128, np.uint8)
        boxes = np.tile(np.array([[8, 8, 40, 40]], np.float32), (3, 1))
        out = component.speed(frames, boxes)
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (3,):
            raise PluginContractError(f"speed(3 frames) returned {_describe(out)}, expected float32 (3,)")
        if not np.all(np.isfinite(out) & (out >= 0)):
            raise PluginContractError(f"speed(3 frames) returned {out}, expected finite values >= 0")

    @classmethod
    def check_on_photo(cls, component: PoseEstimator, image: np.ndarray, box: np.ndarray) -> str:
        frames = np.stack([image, image, np.roll(image, 3, axis=1)])  # still, then the face moves 3 px
        speed = component.speed(frames, np.tile(box, (3, 1)))
        assert speed.dtype == np.float32 and speed.shape == (3,) and np.all(np.isfinite(speed)), f"returned {speed}"
        assert speed[1] < 0.5 < speed[2], f"speed {speed}: expected ~0 while still, > 0.5 after a 3-px move"
        return f"speed {np.round(speed, 2).tolist()} deg/frame (still, then moved)"


class FaceLandmarks(FaceTool):
    """Facial landmark points in one image (preprocessing lip masks, landmark sync, LMD, E-FID; not an nn.Module).

    ``detect(image uint8 (H, W, 3) RGB, box float (4,) x0, y0, x1, y1 | None) -> float32 (num_points, 2)``: x, y in
    pixels of ``image``, for the face in ``box`` (the most prominent face when ``box`` is None); every value is NaN
    when no face is found. ``regions`` names index arrays into the points; every model provides at least
    ``lips_outer`` and ``lips_inner`` (each an ordered closed contour, so that it can be filled as a polygon) and
    ``left_eye`` / ``right_eye`` (the subject's own left / right). Models may name more: the built-in ones add
    ``mouth_opening``, (K, 2) index pairs (upper, lower) of inner-lip points facing each other across the mouth,
    middle pair first, and ``nose``, ``left_eyebrow``, ``right_eyebrow`` (plus ``face_oval`` or ``jaw``).
    """

    num_points: int
    regions: dict[str, np.ndarray]
    REQUIRED_REGIONS = ("lips_outer", "lips_inner", "left_eye", "right_eye")

    @abstractmethod
    def detect(self, image: np.ndarray, box: np.ndarray | None = None) -> np.ndarray: ...

    def detect_video(self, frames: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """Landmarks of every frame: (F, num_points, 2). Models that track across frames override this."""
        return np.stack([self.detect(frame, None if boxes is None else boxes[i]) for i, frame in enumerate(frames)])

    @classmethod
    def check_contract(cls, component: FaceLandmarks) -> None:
        missing = [r for r in cls.REQUIRED_REGIONS if r not in getattr(component, "regions", {})]
        if missing:
            raise PluginContractError(f"regions lack {missing} (required: {list(cls.REQUIRED_REGIONS)})")
        bad = [r for r, idx in component.regions.items()
               if not (len(idx) and np.all((np.asarray(idx) >= 0) & (np.asarray(idx) < component.num_points)))]
        if bad:
            raise PluginContractError(f"regions {bad} are empty or index outside 0..{component.num_points - 1}")
        out = component.detect(np.full((64, 48, 3), 128, np.uint8))
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (component.num_points, 2):
            raise PluginContractError(f"detect(64x48 image) returned {_describe(out)}, "
                                      f"expected float32 ({component.num_points}, 2)")
        _all_or_none(out, "detect(64x48 image)")

    @classmethod
    def check_on_photo(cls, component: FaceLandmarks, image: np.ndarray, box: np.ndarray) -> str:
        points = component.detect(image, box)
        assert points.shape == (component.num_points, 2) and np.isfinite(points).all(), "no landmarks on the face"
        inside = np.mean((points[:, 0] >= box[0] - 10) & (points[:, 0] <= box[2] + 10)
                         & (points[:, 1] >= box[1] - 10) & (points[:, 1] <= box[3] + 10))
        assert inside > 0.9, f"only {inside:.0%} of the landmarks fall on the face"
        return f"{component.num_points} points, {inside:.0%} on the face"


class FaceEmbedder(FaceTool):
    """Identity embedding of the face in one image (F-SIM, identity drift; not an nn.Module).

    ``embed(image uint8 (H, W, 3) RGB, box float (4,) x0, y0, x1, y1 | None) -> float32 (dim,)``, L2-normalised, so
    that the dot product of two embeddings is their cosine similarity; every value is NaN when no face is found (the
    face in ``box``; the most prominent face when ``box`` is None).
    """

    dim: int

    @abstractmethod
    def embed(self, image: np.ndarray, box: np.ndarray | None = None) -> np.ndarray: ...

    @classmethod
    def check_contract(cls, component: FaceEmbedder) -> None:
        out = component.embed(np.full((64, 48, 3), 128, np.uint8), np.array([4, 4, 44, 60], np.float32))
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (component.dim,):
            raise PluginContractError(f"embed(64x48 image) returned {_describe(out)}, "
                                      f"expected float32 ({component.dim},)")
        _all_or_none(out, "embed(64x48 image)")
        if np.isfinite(out).all() and abs(float(np.linalg.norm(out)) - 1) > 1e-3:
            raise PluginContractError(f"embed(64x48 image) has norm {np.linalg.norm(out):.4f}, expected 1 "
                                      "(L2-normalised) or every value NaN (no face)")

    @classmethod
    def check_on_photo(cls, component: FaceEmbedder, image: np.ndarray, box: np.ndarray) -> str:
        embedding = component.embed(image, box)
        assert np.isfinite(embedding).all() and abs(np.linalg.norm(embedding) - 1) < 1e-3, "not a unit embedding"
        return f"unit embedding of {component.dim} values"


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:4]) / 2


def _holds(box: np.ndarray, point: np.ndarray) -> bool:
    """Whether ``point`` (x, y) lies inside ``box`` (x0, y0, x1, y1)."""
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def _all_or_none(values: np.ndarray, what: str) -> None:
    """A face model's output is finite throughout, or NaN throughout (no face): never partly NaN."""
    finite = np.isfinite(values)
    if not (finite.all() or np.isnan(values).all()):
        raise PluginContractError(f"{what} returned {int((~finite).sum())} non-finite of {values.size} values: "
                                  "expected all finite, or all NaN when there is no face")


class FrameFeatures(Component):
    """Images → one feature vector each (FID and KID per frame; an Inception network for the standard numbers).

    ``forward(images uint8 (N, 3, H, W) RGB, any H×W) -> float (N, num_features)``.
    """

    num_features: int

    @abstractmethod
    def forward(self, images: Tensor) -> Tensor: ...

    @classmethod
    def probe(cls, component: FrameFeatures) -> list[Probe]:
        images = torch.randint(0, 256, (2, 3, 40, 48), dtype=torch.uint8, device=_probe_kwargs(component)["device"])
        return [Probe("forward(2x3x40x48 uint8)", component(images), (2, component.num_features))]


class VideoFeatures(Component):
    """Video clips → one feature vector each (FVD; an I3D network for the standard numbers).

    ``forward(videos uint8 (N, 3, F, H, W) RGB, any F ≥ min_frames and H×W) -> float (N, num_features)``.
    """

    num_features: int
    min_frames: int = 1

    @abstractmethod
    def forward(self, videos: Tensor) -> Tensor: ...

    @classmethod
    def probe(cls, component: VideoFeatures) -> list[Probe]:
        frames = max(component.min_frames, 4)
        videos = torch.randint(0, 256, (2, 3, frames, 40, 48), dtype=torch.uint8,
                               device=_probe_kwargs(component)["device"])
        return [Probe(f"forward(2x3x{frames}x40x48 uint8)", component(videos), (2, component.num_features))]


class SyncModel(Component):
    """A SyncNet-style pair of embeddings, one of the audio and one of the mouth region, per window of ``window``
    consecutive video frames at ``fps``; in sync, a window's two embeddings are close (Sync-C, Sync-D).

    ``embed_video(crops uint8 (F, 3, crop_size, crop_size) RGB face crops) -> float (F - window + 1, dim)``;
    ``embed_audio(waveform float (S,) mono at sample_rate, num_frames F) -> float (F - window + 1, dim)``, window
    ``i`` of both covering frames ``i … i + window - 1`` (frame f ↔ samples from f·sample_rate/fps).
    """

    sample_rate: int = 16000
    fps: float = 25.0
    window: int = 5
    crop_size: int
    dim: int

    @abstractmethod
    def embed_video(self, crops: Tensor) -> Tensor: ...

    @abstractmethod
    def embed_audio(self, waveform: Tensor, num_frames: int) -> Tensor: ...

    @classmethod
    def probe(cls, component: SyncModel) -> list[Probe]:
        device = _probe_kwargs(component)["device"]
        frames = component.window + 2
        crops = torch.randint(0, 256, (frames, 3, component.crop_size, component.crop_size), dtype=torch.uint8,
                              device=device)
        wave = torch.randn(round(frames / component.fps * component.sample_rate), device=device) * 0.1
        return [Probe(f"embed_video({frames} crops)", component.embed_video(crops), (3, component.dim)),
                Probe(f"embed_audio(audio of {frames} frames)", component.embed_audio(wave, frames),
                      (3, component.dim))]


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    return type(value).__name__


class SchedulerContract:
    """The ``scheduler`` kind's interface: a diffusers :class:`~diffusers.SchedulerMixin` with the methods the
    sampler and the training step call."""

    required = ("add_noise", "step", "set_timesteps", "scale_model_input")

    def __init__(self) -> None:
        # named as the base class in messages ("... is not a diffusers....SchedulerMixin")
        self.__name__, self.__module__ = SchedulerMixin.__name__, SchedulerMixin.__module__

    def __instancecheck__(self, instance: object) -> bool:
        return isinstance(instance, SchedulerMixin)

    def check_contract(self, component: object) -> None:
        missing = [m for m in self.required if not callable(getattr(component, m, None))]
        if missing:
            raise PluginContractError(f"missing method(s) {missing}")

    def check_denoises(self, scheduler: SchedulerMixin, prediction_type: str) -> str:
        """With an oracle model (the true noise / velocity of a data set holding one sample), 20 sampling steps of
        ``scheduler`` (built for ``prediction_type``) recover that sample."""
        generator = torch.Generator().manual_seed(0)
        clean = torch.rand(1, 4, 2, 4, 4, generator=generator) * 2 - 1
        scheduler.set_timesteps(20)
        latents = torch.randn(clean.shape, generator=generator) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_in = scheduler.scale_model_input(latents, t)
            alpha_bar = scheduler.alphas_cumprod[int(t)]
            eps = (model_in - alpha_bar.sqrt() * clean) / (1 - alpha_bar).sqrt()
            pred = eps if prediction_type == "epsilon" else alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * clean
            latents = scheduler.step(pred, t, latents).prev_sample
        error = (latents - clean).abs().max().item()
        assert error < 0.05, f"20 steps with an oracle {prediction_type} model end {error:.3f} from the clean sample"
        return f"20 steps with an oracle {prediction_type} model recover the sample (error {error:.4f})"


SCHEDULER = SchedulerContract()
