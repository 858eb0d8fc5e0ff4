"""EMO assembly: the nn.Module over a backbone component, and long-audio encoding in windows."""

from emo_lightning.components.base import Conditions
from emo_lightning.model.emo import EMO

__all__ = ["EMO", "Conditions"]
