"""Training health scalars for every logger: learning rate, gradient norm, step time, frames/s, peak GPU memory."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch.optim import Optimizer


class TrainingMonitor(pl.Callback):
    """Logs, at the trainer's ``log_every_n_steps``:

    - ``train/lr``: the first parameter group's learning rate;
    - ``train/grad_norm``: the L2 norm of all gradients before clipping;
    - ``train/step_time``: seconds from one optimizer step's end to the next (data loading included);
    - ``train/frames_per_s``: target video frames trained per second over all ranks (batch × frames × ranks ×
      accumulated batches / step time);
    - ``train/peak_memory_gb``: the peak GPU memory allocated since the last log (CUDA only).
    """

    def __init__(self) -> None:
        self._last_end: float | None = None
        self._frames = 0
        self._last_step = -1

    def _should_log(self, trainer: pl.Trainer) -> bool:
        return trainer.global_step % max(trainer.log_every_n_steps, 1) == 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        frames = batch["frames"]
        self._frames += frames.shape[0] * frames.shape[2]

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Optimizer) -> None:
        pl_module.log("train/lr", float(optimizer.param_groups[0]["lr"]), batch_size=1)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and self._should_log_next(trainer):
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
            pl_module.log("train/grad_norm", norm, batch_size=1)

    def _should_log_next(self, trainer: pl.Trainer) -> bool:
        """Before the optimizer step: whether the step about to finish is one that gets logged."""
        return (trainer.global_step + 1) % max(trainer.log_every_n_steps, 1) == 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self._last_step:  # an accumulated batch: no optimizer step yet
            return
        self._last_step = trainer.global_step
        now = time.perf_counter()
        if self._last_end is not None and self._should_log(trainer):
            seconds = now - self._last_end
            pl_module.log("train/step_time", seconds, batch_size=1)
            pl_module.log("train/frames_per_s", self._frames * trainer.world_size / seconds, batch_size=1)
            if torch.cuda.is_available() and pl_module.device.type == "cuda":
                pl_module.log("train/peak_memory_gb", torch.cuda.max_memory_allocated(pl_module.device) / 2**30,
                              batch_size=1)
                torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._last_end, self._frames = now, 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = None  # the next step's time would include validation
