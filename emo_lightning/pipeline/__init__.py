"""Generation: :class:`EMOPipeline` (components in, a talking video out, clip by clip), its settings, loading it from
a checkpoint, and the jobs of ``emo predict``."""

from emo_lightning.pipeline.pipeline import (
    ClipLayout,
    EMOPipeline,
    Progress,
    build_scheduler,
    noise_schedule_of,
)
from emo_lightning.pipeline.settings import CONTROLS, GenerationSettings, Guidance

__all__ = ["CONTROLS", "ClipLayout", "EMOPipeline", "GenerationSettings", "Guidance", "Progress",
           "build_scheduler", "noise_schedule_of"]
