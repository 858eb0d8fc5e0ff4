"""Training: the LightningModule, the stage rules and checkpoint handling."""

from emo_lightning.training.module import EMOLightningModule

__all__ = ["EMOLightningModule"]
