"""FSDP that shards the blocks the model's backbone names (``Backbone.fsdp_wrap_classes``), whatever the backbone."""

from __future__ import annotations

from lightning.pytorch.strategies import FSDPStrategy
from torch import nn
from torch.distributed.fsdp.wrap import ModuleWrapPolicy


class BackboneFSDPStrategy(FSDPStrategy):
    """Lightning's ``FSDPStrategy``; without an ``auto_wrap_policy`` it wraps every module of the LightningModule's
    ``fsdp_wrap_classes`` (its backbone's transformer / resnet / temporal blocks) in its own FSDP unit."""

    def _setup_model(self, model: nn.Module) -> nn.Module:
        classes = getattr(self.lightning_module, "fsdp_wrap_classes", ())
        if "auto_wrap_policy" not in self.kwargs and classes:
            self.kwargs["auto_wrap_policy"] = ModuleWrapPolicy(set(classes))
        return super()._setup_model(model)
