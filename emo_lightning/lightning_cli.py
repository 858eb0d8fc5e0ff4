"""``emo fit / validate / test / predict`` through LightningCLI: the Hydra config in LightningCLI's layout, and the
run. ``predict`` runs a :class:`~emo_lightning.pipeline.predict.GenerationModule` (the pipeline of the checkpoint,
read once); the others the training module.
"""

from __future__ import annotations

import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.errors import ConfigCompositionException
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from emo_lightning.components.kinds import EVALUATED_KINDS
from emo_lightning.config import compose_config, to_lightning_cli
from emo_lightning.model.checkpoint import CheckpointError, check_architecture, read_checkpoint
from emo_lightning.pipeline.predict import GenerationModule, report_jobs
from emo_lightning.pipeline.settings import CONTROL_HELP, CONTROLS
from emo_lightning.training import EMOLightningModule


class SaveResolvedConfig(SaveConfigCallback):
    """Writes the fully resolved config to ``<trainer.default_root_dir>/config.yaml`` whatever the logger."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        path = Path(trainer.default_root_dir) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=False)


class EmoLightningCLI(LightningCLI):
    """LightningCLI whose reading of a ``ckpt_path``'s hyper-parameters into the model config goes through
    :func:`~emo_lightning.model.checkpoint.read_checkpoint` (memory-mapped, with its clear errors)."""

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return
        hparams = dict(read_checkpoint(ckpt_path).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        if hparams:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)


def run_lightning_cli(args: list[str] | dict[str, Any]) -> LightningCLI:
    """LightningCLI over the training module, or, for ``predict``, over the pipeline of a checkpoint."""
    subcommand = args["subcommand"] if isinstance(args, dict) else args[0]
    # sys.argv stays as it is (DDP re-launches the command from it); LightningCLI warns about that
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    model_class = GenerationModule if subcommand == "predict" else EMOLightningModule
    return EmoLightningCLI(
        model_class, pl.LightningDataModule, subclass_mode_data=True, args=args,
        save_config_callback=SaveResolvedConfig, save_config_kwargs={"save_to_log_dir": False},
        auto_configure_optimizers=False,
    )


def run_checkpoint(root_dir: str | Path) -> Path | None:
    """The checkpoint a restarted run continues from: the newer of ``<root>/checkpoints/last.ckpt`` and SLURM's
    ``<root>/hpc_ckpt_N.ckpt``, if any."""
    root = Path(root_dir)
    candidates = [p for p in [root / "checkpoints" / "last.ckpt", *root.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def fit_config(overrides: list[str], command: str = "fit") -> dict[str, Any]:
    """A LightningCLI fit/validate/test config; a ``ckpt_path`` (and the base model of LoRA adapters) must match the
    configured components. ``emo fit`` resumes from the run's own last checkpoint unless ``resume=false`` or a
    ``ckpt_path`` is given."""
    composed = compose_config("fit", overrides)
    resume = composed.get("resume", True)
    cfg = to_lightning_cli(composed)
    if command == "fit" and resume and not cfg.get("ckpt_path"):
        found = run_checkpoint(cfg["trainer"]["default_root_dir"])
        if found:
            print(f"emo fit: resuming from {found} (resume=false starts over)", file=sys.stderr)
            cfg["ckpt_path"] = str(found)
    lora_base = cfg["model"].get("init_from") if cfg["model"].get("lora") else None
    if lora_base:
        check_architecture(read_checkpoint(lora_base).get("hyper_parameters") or {}, cfg["model"], lora_base)
    if cfg.get("ckpt_path") and cfg["ckpt_path"] not in ("last", "hpc"):
        checkpoint = read_checkpoint(cfg["ckpt_path"])
        try:
            check_architecture(checkpoint.get("hyper_parameters") or {}, cfg["model"], cfg["ckpt_path"])
        except CheckpointError as err:
            if composed.get("ckpt_path"):
                raise
            raise CheckpointError(f"{err} This checkpoint was found in the run folder "
                                  f"{cfg['trainer']['default_root_dir']}: resume=false starts a new run there, "
                                  "or choose another trainer.default_root_dir.") from err
        _continue_wandb_run(cfg["trainer"], checkpoint.get("wandb_run_id"))
    return cfg


def _continue_wandb_run(trainer: dict[str, Any], run_id: str | None) -> None:
    """A resumed run logs into the W&B run of the checkpoint (unless a run id is configured)."""
    logger = trainer.get("logger")
    if run_id and isinstance(logger, dict) and logger.get("class_path", "").endswith("WandbLogger"):
        args = logger.setdefault("init_args", {})
        if not args.get("id"):
            args.update(id=run_id, resume="allow")


EVALUATE_PREFIX = "evaluate."


def test_config(overrides: list[str]) -> dict[str, Any]:
    """``emo test``: the fit config plus the held-out evaluation callback, whose components are those of
    ``conf/evaluate.yaml``, changed with ``evaluate.<key>=…`` overrides (``evaluate.frame_features=random_conv``)."""
    own = [o[len(EVALUATE_PREFIX):] for o in overrides if o.startswith(EVALUATE_PREFIX)]
    cfg = fit_config([o for o in overrides if not o.startswith(EVALUATE_PREFIX)], "test")
    output = str(Path(cfg["trainer"].get("default_root_dir") or ".") / "test_evaluation")
    evaluation = compose_config("evaluate", ["videos=none", f"output={output}", *own])
    callback = {"class_path": "emo_lightning.evaluation.test_callback.HeldOutEvaluation",
                "init_args": {"output": evaluation["output"], "options": evaluation["options"],
                              "components": {kind: evaluation.get(kind) for kind in EVALUATED_KINDS},
                              "steps": evaluation.get("steps"), "max_items": evaluation.get("max_items"),
                              "seed": cfg.get("seed_everything") or 0}}
    cfg["trainer"]["callbacks"] = [*cfg["trainer"].get("callbacks", []), callback]
    return cfg


def predict_config(overrides: list[str]) -> dict[str, Any]:
    """A LightningCLI ``predict`` config: a :class:`~emo_lightning.pipeline.predict.GenerationModule` that builds the
    model and its settings from the checkpoint alone (Lightning itself gets no ``ckpt_path`` to read again)."""
    try:
        cfg = compose_config("predict", overrides)
    except ConfigCompositionException as err:
        raise ValueError(_control_error(err)) from err
    model = {"checkpoint": cfg.pop("ckpt_path"), "lora": cfg.pop("lora")}
    data = {key: cfg.pop(key) for key in ("image", "audio", "output", "jobs", "face_detector", "landmarks",
                                          "pose_video", "resolution")}
    data["generation"] = {key: cfg.pop(key) for key in CONTROLS}
    data["class_path"] = "emo_lightning.pipeline.predict.PredictDataModule"
    return to_lightning_cli({**cfg, "model": model, "data": data})


def _control_error(err: ConfigCompositionException) -> str:
    """Hydra's error, with the reason a generation control's value was refused and that control's help."""
    reason = str(err.__cause__).splitlines()[0] if err.__cause__ else ""
    control = next((c for c in CONTROLS if f"override {c}=" in str(err)), None)
    if control is None or not reason:
        return str(err)
    return f"{err}: {reason} ({control}: {CONTROL_HELP[control]})"


def run_subcommand(command: str, args: list[str]) -> None:
    """Run ``emo <command> <args>``: Hydra overrides, or LightningCLI's own arguments when any starts with ``-``;
    ``predict`` then reports its jobs. SIGTERM during a fit saves the last checkpoint and exits with status 143."""
    try:
        if any(arg.startswith("-") for arg in args):
            run_lightning_cli([command, *args])
            return
        if command == "predict":
            cfg = predict_config(args)
        elif command == "test":
            cfg = test_config(args)
        else:
            cfg = fit_config(args, command)
        cli = run_lightning_cli({"subcommand": command, command: cfg})
        if command == "predict":
            report_jobs([r for batch in cli.trainer.predict_loop.predictions for r in batch])
    except SIGTERMException:
        print(f"emo {command}: stopped by SIGTERM after saving the last checkpoint; the same command resumes",
              file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
