"""A callback for the resume tests: the run sends itself SIGTERM at the end of a given training step, so that the
signal lands at a chosen point (a step that validates, or one that does not) rather than wherever a timer hits."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning.pytorch as pl


class SigtermAtStep(pl.Callback):
    """SIGTERM this process in the ``on_train_batch_end`` of the step that makes ``global_step == step``
    (Lightning then runs the rest of the step, its validation included, and stops)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
