"""Training: the LightningModule, its callbacks (EMA, checkpoints written atomically, samples) and strategies."""

from emo_lightning.training.module import EMOLightningModule

__all__ = ["EMOLightningModule"]
