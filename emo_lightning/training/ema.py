"""Exponential moving average of the trainable parameters.

Lightning's ``EMAWeightAveraging`` deep-copies the whole LightningModule: at EMO's size that is a second copy of the
frozen VAE, audio encoder and (stage 3) backbone, which need no average. This callback keeps one shadow tensor per
trainable parameter, on the parameter's device.

Checkpoint layout: ``state_dict`` holds the training weights (what a resumed run continues from) and
``checkpoint["ema"] = {"decay", "updates", "state_dict"}`` the averages of the trainable parameters, under the same
names. `emo predict`, the demo, validation and a next stage's ``init_from`` use the averages in place of those
weights (:func:`emo_lightning.model.checkpoint.generation_weights`).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import Tensor


class EMA(pl.Callback):
    """EMA of the parameters that train: ``ema = decay · ema + (1 − decay) · param`` after every
    ``update_every_n_steps`` optimizer steps from ``start_step`` on (the first update copies the parameters, as
    :class:`torch.optim.swa_utils.AveragedModel` does). The averages are swapped in for validation, saved in
    checkpoints, and copied into the module when fitting ends.

    ``warmup``: the n-th update uses ``min(decay, (1 + n) / (10 + n))``, so that early averages follow the
    training instead of staying near the initial weights (at decay 0.9999 they would for ~10,000 updates).
    """

    def __init__(self, decay: float = 0.999, update_every_n_steps: int = 1, start_step: int = 0,
                 warmup: bool = False):
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.update_every_n_steps, self.start_step = decay, update_every_n_steps, start_step
        self.warmup = warmup
        self.shadow: dict[str, Tensor] = {}
        self.loaded: dict[str, Tensor] = {}
        self.updates = 0
        self.last_step = 0
        self.swapped = False

    def _params(self, pl_module: pl.LightningModule) -> dict[str, Tensor]:
        return {name: p for name, p in pl_module.named_parameters() if name in self.shadow}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and isinstance(trainer.strategy, FSDPStrategy):
            raise ValueError("the EMA callback keeps whole parameters and does not run under FSDP: use "
                             "trainer.strategy=ddp, or drop it with callbacks.ema=null")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The shadow weights, on the parameters' devices (placed by now): loaded from the checkpoint being resumed,
        else a copy of the parameters."""
        self.shadow = {}
        for name, param in pl_module.named_parameters():
            if param.requires_grad:
                source = self.loaded.get(name, param.detach())
                self.shadow[name] = source.to(param.device, param.dtype, copy=True)
        self.loaded = {}

    @torch.no_grad()
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step <= self.last_step or step < self.start_step or step % self.update_every_n_steps:
            return
        self.last_step = step
        params = self._params(pl_module)
        shadow = [self.shadow[name] for name in params]
        if self.updates == 0:
            torch._foreach_copy_(shadow, list(params.values()))
        else:
            torch._foreach_lerp_(shadow, list(params.values()), 1 - self.current_decay())
        self.updates += 1

    def current_decay(self) -> float:
        """The decay of the next update."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def swap(self, pl_module: pl.LightningModule) -> None:
        """Exchange the module's trainable weights and the averages, one tensor at a time."""
        for name, param in self._params(pl_module).items():
            current = param.detach().clone()
            param.copy_(self.shadow[name])
            self.shadow[name].copy_(current)
        self.swapped = not self.swapped

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.shadow and not self.swapped:
            self.swap(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.swapped:
            self.swap(pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After the last checkpoint: the module in memory ends with the averages (what generation uses)."""
        if self.shadow and not self.swapped:
            self.swap(pl_module)
            self.shadow = {}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if not self.shadow:
            return
        params = self._params(pl_module)
        averages = {name: (params if self.swapped else self.shadow)[name] for name in self.shadow}
        if self.swapped:  # saved during validation: the training weights are in the shadow tensors
            checkpoint["state_dict"].update({name: self.shadow[name] for name in self.shadow})
        checkpoint["ema"] = {"decay": self.decay, "updates": self.updates, "state_dict": averages}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        ema = checkpoint.get("ema") or {}
        self.loaded = dict(ema.get("state_dict") or {})
        if self.shadow:  # strategies that restore after on_fit_start
            with torch.no_grad():
                for name, tensor in self.shadow.items():
                    tensor.copy_(self.loaded.get(name, tensor))
            self.loaded = {}
        self.updates = int(ema.get("updates", 1 if self.loaded else 0))
        self.last_step = int(checkpoint.get("global_step", 0))
