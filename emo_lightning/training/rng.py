"""The random state of training, per rank, kept in checkpoints so that a resumed run draws what the killed one would
have drawn."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn


def capture_rng() -> dict[str, Any]:
    """torch (CPU and the current CUDA device), numpy and Python random states, as tensors and plain containers
    (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, python_gauss = random.getstate()
    states = {"torch": torch.get_rng_state(),
              "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                        "has_gauss": int(has_gauss), "gauss": float(gauss)},
              "python": {"version": version, "state": list(state), "gauss": python_gauss}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_rng(states: dict[str, Any]) -> None:
    """Set the random states :func:`capture_rng` returned."""
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


class TrainingRandomState(pl.Callback):
    """Keeps the training steps on one random stream per rank, saved in every checkpoint.

    The state is captured at the end of every training step and set again at the start of the next, so whatever
    runs between two steps (validation, sample videos, a new data-loader iterator at an epoch start) draws from
    its own stream and a resumed run continues exactly where the checkpoint was taken. Checkpoints hold every
    rank's state (``checkpoint["rng_states"]``, one per rank); a run resumed on another number of ranks keeps its
    seeded state and says so.
    """

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.state is not None:
            restore_rng(self.state)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.state = capture_rng()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        state = self.state or capture_rng()
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(gathered, state)
            checkpoint["rng_states"] = gathered
        else:
            checkpoint["rng_states"] = [state]

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states and len(states) == trainer.world_size:
            self.state = states[trainer.global_rank]
        elif states:
            rank_zero_warn(f"the checkpoint holds the random state of {len(states)} ranks and this run has "
                           f"{trainer.world_size}: training continues from the seeded random state")
