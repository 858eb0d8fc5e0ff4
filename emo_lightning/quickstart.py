"""`emo quickstart`: train the tiny EMO on procedural talking faces on the CPU, then generate and score
held-out videos: ``sample.mp4``, ``metrics.json`` and ``sync.png`` land in ``output``.

Training follows EMO's stages at tiny size: ``experiment=tiny_images`` (single frames: the backbone,
ReferenceNet and face locator learn to draw the reference's identity) into ``<output>/images``, then
``experiment=tiny`` from its checkpoint (clips: audio, temporal and speed layers) into ``<output>/video``.

SIGINT or SIGTERM during training ends the phase at the end of its step with ``last.ckpt`` saved (the same command
resumes), later ones at once; without a terminal, training reports plain progress lines (see
:mod:`emo_lightning.progress`).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.exceptions import SIGTERMException

from emo_lightning import interrupt
from emo_lightning.evaluation.plot import plot_sync
from emo_lightning.evaluation.synthetic_benchmark import score_held_out_videos
from emo_lightning.lightning_cli import fit_config, run_lightning_cli
from emo_lightning.media import Mp4Writer
from emo_lightning.pipeline.loading import load_pipeline
from emo_lightning.progress import ProgressLog, on_terminal


def _max_steps(steps: int | None) -> list[str]:
    return [f"trainer.max_steps={steps}"] if steps else []


PHASES = ("images", "video")


class StopWhenAsked(pl.Callback):
    """End training at the end of the step in which SIGINT or SIGTERM arrived. SIGINT ends it as any run ends (the
    validation Lightning runs on an early stop, then ``last.ckpt``); SIGTERM takes Lightning's own stop, which saves
    ``last.ckpt`` at once."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if interrupt.requested() is not None:
            trainer.should_stop = True


class TrainingLog(pl.Callback):
    """Plain progress lines of a training run (step, rate, time left, loss), for logs that a bar does not reach."""

    def __init__(self, desc: str):
        self.desc = desc
        self.log: ProgressLog | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = trainer.max_steps if trainer.max_steps > 0 else None
        self.log = ProgressLog(self.desc, total, "step", initial=trainer.global_step)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:  # validation makes sample videos: minutes without a step
            print(f"{self.desc}: validating at step {trainer.global_step}", file=sys.stderr, flush=True)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if self.log is not None:
            self.log.set_postfix_str(f"loss {float(loss):.4f}" if loss is not None else "")
            self.log.update(trainer.global_step - self.log.n)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.log is not None:
            self.log.close()


def _fit(phase: str, cfg: dict[str, Any]) -> Any:
    """Run one training phase; a signal stops it at the end of a step, with its checkpoint saved."""
    callbacks = [{"class_path": f"{__name__}.StopWhenAsked"}]
    if not (on_terminal(sys.stdout) and on_terminal()):  # Lightning's bar goes to stdout, these lines to stderr
        cfg["trainer"]["enable_progress_bar"] = False
        callbacks.append({"class_path": f"{__name__}.TrainingLog", "init_args": {"desc": f"emo quickstart {phase}"}})
    cfg["trainer"]["callbacks"] = [*cfg["trainer"].get("callbacks", []), *callbacks]
    saved = f"after saving {Path(cfg['trainer']['default_root_dir']) / 'checkpoints' / 'last.ckpt'}; " \
            "the same command resumes"
    with interrupt.deferred(saved):
        try:
            return run_lightning_cli({"subcommand": "fit", "fit": cfg})
        except SIGTERMException:  # Lightning's own stop on SIGTERM, at the end of a step (LastCheckpoint saved)
            raise interrupt.Interrupted(signal.SIGTERM, saved) from None


def _phase(override: str) -> tuple[str | None, str]:
    """``video.model.lip_loss_weight=20`` → ("video", ``model.lip_loss_weight=20``); Hydra's ``+``/``~`` prefixes
    stay in front."""
    sign = override[:len(override) - len(override.lstrip("+~"))]
    phase, dot, rest = override[len(sign):].partition(".")
    return (phase, sign + rest) if dot and phase in PHASES else (None, override)


def parse_arguments(args: list[str]) -> tuple[str, list[str], dict[str, Any]]:
    """``emo quickstart``'s arguments → (output, Hydra overrides, keyword arguments of `quickstart`):
    ``output=``, ``videos=``, ``seconds=``, ``image_steps=``, ``video_steps=``; overrides prefixed ``images.`` or
    ``video.`` go to that phase only (``video.model.lip_loss_weight=20``); the rest are overrides of both phases."""
    own = {k: v for k, _, v in (a.partition("=") for a in args)
           if k in ("output", "videos", "seconds", "image_steps", "video_steps")}
    kwargs: dict[str, Any] = {k: int(own[k]) for k in ("image_steps", "video_steps") if k in own}
    kwargs.update(num_videos=int(own.get("videos", 4)), seconds=float(own.get("seconds", 4.0)))
    overrides, per_phase = [], {phase: [] for phase in PHASES}
    for arg in args:
        if arg.partition("=")[0] in own:
            continue
        phase, override = _phase(arg)
        (per_phase[phase] if phase else overrides).append(override)
    kwargs.update(image_overrides=per_phase["images"], video_overrides=per_phase["video"])
    return own.get("output", "quickstart"), overrides, kwargs


def quickstart(output: str | Path = "quickstart", overrides: list[str] | None = None, num_videos: int = 4,
               seconds: float = 4.0, image_steps: int | None = None, video_steps: int | None = None,
               image_overrides: list[str] | None = None, video_overrides: list[str] | None = None
               ) -> dict[str, Any]:
    """Fit both phases (each + ``overrides``, then its own ``image_overrides``/``video_overrides``;
    ``image_steps``/``video_steps`` set one phase's length), evaluate, write the three files."""
    start = time.perf_counter()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides or [])
    images = fit_config(["experiment=tiny_images", f"trainer.default_root_dir={out / 'images'}", *overrides,
                         *(image_overrides or []), *_max_steps(image_steps)])
    image_run = _fit("images", images)
    video = fit_config(["experiment=tiny", f"trainer.default_root_dir={out / 'video'}",
                        f"model.init_from={out / 'images' / 'checkpoints' / 'last.ckpt'}", *overrides,
                        *(video_overrides or []), *_max_steps(video_steps)])
    video_run = _fit("video", video)
    pipeline = load_pipeline(out / "video" / "checkpoints" / "last.ckpt")  # as `emo predict` would load it

    metrics, videos = score_held_out_videos(pipeline, num_videos=num_videos, seconds=seconds)
    first, fps = videos[0], pipeline.settings.fps
    with interrupt.deferred():  # the three files are written whole
        with Mp4Writer(out / "sample.mp4", fps=fps, width=first["frames"].shape[2],
                       height=first["frames"].shape[1], audio=first["example"].clip["audio"],
                       sample_rate=pipeline.sample_rate) as writer:
            writer.write(first["frames"])
        plot_sync(first["series"], fps, metrics, out / "sync.png")
        metrics["minutes"] = (time.perf_counter() - start) / 60
        metrics["train_steps"] = {"images": int(image_run.model.global_step), "video": int(video_run.model.global_step)}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
