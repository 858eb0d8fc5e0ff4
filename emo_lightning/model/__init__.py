"""EMO assembly: the UNet hooks, the nn.Module and the clip-by-clip sampler."""

from emo_lightning.model.emo import EMO, Conditions

__all__ = ["EMO", "Conditions"]
