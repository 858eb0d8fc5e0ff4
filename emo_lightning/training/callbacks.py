"""The checkpoint callback the configs use: periodic, atomic, and written on preemption."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from emo_lightning.training.checkpoint_io import AtomicCheckpointIO, remove_partial_files


class LastCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, made for runs that get killed.

    - Files are written atomically (:class:`~emo_lightning.training.checkpoint_io.AtomicCheckpointIO` replaces the
      strategy's default checkpoint IO): a kill during a save leaves the previous ``last.ckpt``.
    - SIGTERM saves ``last.ckpt`` at the end of the current step, then the run exits (status 143). SLURM's
      warning signal (``#SBATCH --signal=SIGUSR1@90``) does the same and then requeues the job
      (``scontrol requeue``), whose restart resumes from that checkpoint.
    - ``last.ckpt`` is also written when training stops between two periodic saves (``max_steps`` not a multiple
      of ``every_n_train_steps``).
    - The loggers are flushed after each save, so that the offline logs (CSV) hold every step the checkpoint has
      seen; the W&B run id is kept in the checkpoint, so that a resumed run continues the same W&B run.

    Keeping older checkpoints: ``save_top_k=k`` with ``monitor: step`` and ``mode: max`` (conf/callbacks) keeps the
    ``k`` most recent periodic ones (``step=N.ckpt``) beside ``last.ckpt``; ``-1`` keeps all.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flush_pending = False
        self._requeue = False
        self._validated_at_step = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if trainer.is_global_zero and self.dirpath and os.path.isdir(self.dirpath):
            remove_partial_files(self.dirpath)
        # Lightning installs its SIGTERM handler after this hook; it then leaves an existing SIGUSR1 handler alone
        is_main = threading.current_thread() is threading.main_thread()
        if stage == "fit" and is_main and SLURMEnvironment.detect():
            signal.signal(signal.SIGUSR1, self._on_preemption_warning)

    def _on_preemption_warning(self, signum: int, frame: Any) -> None:
        """SLURM's warning before the time limit: stop like SIGTERM (save, exit), then requeue."""
        self._requeue = True
        os.kill(os.getpid(), signal.SIGTERM)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._flush_pending = True

    def _flush_loggers(self, trainer: pl.Trainer) -> None:
        if self._flush_pending:
            for logger in trainer.loggers:
                logger.save()
            self._flush_pending = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # the saved step's own log row reaches the loggers after the save: flush it at the next step
        self._flush_loggers(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_loggers(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._validated_at_step = trainer.global_step

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.version:
                checkpoint["wandb_run_id"] = logger.version

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._flush_loggers(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Lightning raises SIGTERMException at the end of the step in which SIGTERM arrived: save there."""
        if not isinstance(exception, SIGTERMException) or not self.save_last:
            return
        if trainer.global_step != self._last_global_step_saved:
            self._save_sigterm_checkpoint(trainer)
        self._flush_loggers(trainer)
        rank_zero_info(f"SIGTERM: saved {self.last_model_path} at step {trainer.global_step}")
        if self._requeue and trainer.is_global_zero:
            requeue_slurm_job()

    def _save_sigterm_checkpoint(self, trainer: pl.Trainer) -> None:
        """Save ``last.ckpt`` where SIGTERM stopped the run, with the loggers' step counter as a restart expects it.

        Lightning raises SIGTERMException after a step's end, when its counter of logged steps has already moved
        on. A restart from a step that validated skips that validation and moves the counter on once more (it
        expects a checkpoint from the validation's end, before the move), so its steps would be logged one too
        far; the counter is saved one back in that case.
        """
        epoch_loop = trainer.fit_loop.epoch_loop
        moved_on = int(trainer.global_step == self._validated_at_step)
        epoch_loop._batches_that_stepped -= moved_on
        try:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        finally:
            epoch_loop._batches_that_stepped += moved_on


def requeue_slurm_job() -> None:
    """``scontrol requeue`` this SLURM job (an array task: ``<array job>_<task>``)."""
    job = os.environ.get("SLURM_JOB_ID", "")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        rank_zero_warn(f"could not requeue SLURM job {job}: {err}")
        return
    if result.returncode:
        rank_zero_warn(f"scontrol requeue {job} failed: {result.stderr.strip()}")
    else:
        rank_zero_info(f"requeued SLURM job {job}")
