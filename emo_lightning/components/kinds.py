"""The component kinds, each declared once: its interface (which carries the kind's probe: inputs and the output
shapes it promises), a one-line description, the constructor arguments EMO derives for it from the other
components, and whether ``emo evaluate`` / ``emo test`` use it.

:data:`emo_lightning.registry.KINDS`, the build-time check, ``emo plugins check``, the contract tests, the
evaluated kinds of ``emo evaluate`` and the scorer all read this table. A kind's built-ins live in the package of
the same name (``emo_lightning/components/<kind>/``), which :mod:`emo_lightning.components` imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from emo_lightning.components import base

TINY_SPEED_DIM = 8  # the speed-token width of the tiny temporal blocks and backbones the contract checks build


@dataclass(frozen=True)
class Kind:
    """One component kind.

    ``derived``: the constructor arguments EMO derives from the other components (see
    :class:`emo_lightning.model.emo.EMO`), with the values a tiny instance gets in the contract checks; a config
    may not set them. ``runtime``: derived arguments that are objects rather than config (a backbone's
    temporal-block factory), for a tiny instance. ``evaluated``: ``emo evaluate`` and ``emo test`` build one
    from ``conf/<name>/``.
    """

    name: str
    interface: Any  # an ABC of :mod:`~emo_lightning.components.base`, or a diffusers base class's contract
    description: str
    derived: Mapping[str, Any] = field(default_factory=dict)
    runtime: Callable[[], dict[str, Any]] | None = None
    evaluated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "derived", MappingProxyType(dict(self.derived)))


def _tiny_temporal_blocks() -> dict[str, Any]:
    """A tiny backbone's ``temporal_block`` factory: tiny ``animatediff`` blocks."""
    from emo_lightning import registry

    tiny = registry.entry("temporal_block", "animatediff").tiny_config()

    def temporal_block(channels: int, location: str) -> base.TemporalBlock:
        return registry.build("temporal_block", "animatediff", **tiny, channels=channels, speed_dim=TINY_SPEED_DIM,
                              location=location)

    return {"temporal_block": temporal_block}


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("backbone", base.Backbone,
         "the denoiser with its reference path, audio-attention and temporal blocks (EMO's UNets, a DiT)",
         derived={"latent_channels": 4, "temporal_downsample": 1, "speed_dim": TINY_SPEED_DIM},
         runtime=_tiny_temporal_blocks),
    Kind("vae", base.VAE, "image <-> latent codec"),
    Kind("audio_encoder", base.AudioEncoder, "waveform -> per-frame windowed audio tokens",
         derived={"output_dim": 16}),
    Kind("face_locator", base.FaceLocator, "face-region mask -> latent-sized residual",
         derived={"latent_channels": 4, "downsample": 4}),
    Kind("temporal_block", base.TemporalBlock, "attention along the frame axis (+ motion frames, speed)",
         derived={"channels": 16, "speed_dim": TINY_SPEED_DIM, "location": "down_blocks.1.attentions.0"}),
    Kind("speed_encoder", base.SpeedEncoder, "head rotation speed per frame -> speed tokens"),
    Kind("scheduler", base.SCHEDULER, "diffusion noise scheduler"),
    Kind("face_detector", base.FaceDetector, "RGB image -> face boxes with scores (preprocessing, portrait crops)",
         evaluated=True),
    Kind("pose_estimator", base.PoseEstimator,
         "video frames + face boxes -> head rotation speed per frame (preprocessing)"),
    Kind("landmarks", base.FaceLandmarks,
         "RGB image (+ face box) -> facial landmark points, with named regions (lips, eyes)", evaluated=True),
    Kind("face_embedder", base.FaceEmbedder, "RGB image (+ face box) -> identity embedding (F-SIM, drift)",
         evaluated=True),
    Kind("frame_features", base.FrameFeatures, "video frames -> one feature vector per frame (FID, KID)",
         evaluated=True),
    Kind("video_features", base.VideoFeatures, "video clips -> one feature vector per clip (FVD)", evaluated=True),
    Kind("sync_model", base.SyncModel,
         "SyncNet-style audio and mouth-region embeddings per 5-frame window (Sync-C, Sync-D)", evaluated=True),
)}

#: The kinds ``emo evaluate`` and ``emo test`` build (from ``conf/<kind>/``), in table order.
EVALUATED_KINDS: tuple[str, ...] = tuple(name for name, kind in KINDS.items() if kind.evaluated)
