"""The EMO network: the nn.Module over a backbone component (:mod:`~emo_lightning.model.emo`), its parameter groups
and stages, LoRA adapters, long-audio encoding in windows, and reading ``emo fit`` checkpoints
(:mod:`~emo_lightning.model.checkpoint`). Nothing here imports the pipeline or training."""

from emo_lightning.components.base import Conditions
from emo_lightning.model.emo import EMO

__all__ = ["EMO", "Conditions"]
