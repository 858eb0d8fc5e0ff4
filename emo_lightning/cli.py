"""The ``emo`` command: fit / validate / test / predict through LightningCLI, plus ``plugins``.

Arguments are Hydra overrides of ``conf/`` (``experiment=tiny trainer.max_steps=20``). Arguments that
start with ``-`` go to LightningCLI unchanged, so a saved run reproduces with
``emo fit --config runs/t/config.yaml``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from emo_lightning.config import compose_config, to_lightning_cli
from emo_lightning.interrupt import Interrupted, stop_handlers

USAGE = """usage: emo {fit,validate,test,predict,quickstart,preprocess,evaluate} [overrides ...]
       emo <subcommand> --config FILE
       emo plugins [check <kind>.<name>]

  emo fit experiment=tiny trainer.max_steps=20 trainer.default_root_dir=runs/t
  emo fit experiment=tiny model/audio_encoder=mel      swap a component by its config group
  emo fit --config runs/t/config.yaml                  reproduce a run from its saved config
  emo predict ckpt_path=runs/t/checkpoints/last.ckpt image=portrait.jpg audio=speech.wav output=out.mp4
  emo predict ckpt_path=runs/t/checkpoints/last.ckpt jobs=jobs.csv   one video per row (image,audio,output)
  emo preprocess input=videos/ output=data/v workers=2  videos → streaming data set (data=preprocessed)
  emo evaluate videos=out/ [reference=portraits/] [ground_truth=real/] output=scores
                                                       score videos: metrics.json, metrics.md, per_video.csv
  emo test ckpt_path=… data=preprocessed data.path=…   generate the held-out items and score them the same way
        [evaluate.frame_features=random_conv …]        (into <trainer.default_root_dir>/test_evaluation)
  emo plugins                                          list every registered component
  emo plugins check audio_encoder.whisper              run one component's contract checks (plugin authors)
  emo quickstart output=quickstart [videos=4 seconds=4] tiny model on synthetic faces → sample.mp4, metrics.json,
        [image_steps=N video_steps=N]                  sync.png (other arguments: overrides of both phases)
  emo fit --help                                       LightningCLI's full reference
"""

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class SaveResolvedConfig(SaveConfigCallback):
    """Writes the fully resolved config to ``<trainer.default_root_dir>/config.yaml`` whatever the logger."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        path = Path(trainer.default_root_dir) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=False)


class EmoLightningCLI(LightningCLI):
    """LightningCLI whose reading of a ``ckpt_path``'s hyper-parameters into the model config goes through
    :func:`~emo_lightning.training.checkpoint.read_checkpoint` (memory-mapped, with its clear errors)."""

    def _parse_ckpt_path(self) -> None:
        from emo_lightning.training.checkpoint import read_checkpoint

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
    from emo_lightning.training import EMOLightningModule

    # sys.argv stays as it is (DDP re-launches the command from it); LightningCLI warns about that
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    return EmoLightningCLI(
        EMOLightningModule, pl.LightningDataModule, subclass_mode_data=True, args=args,
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
    from emo_lightning.training.checkpoint import CheckpointError, check_architecture, read_checkpoint

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
    from emo_lightning.components.kinds import EVALUATED_KINDS

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
    """A LightningCLI ``predict`` config: the model from the checkpoint's own hyper-parameters."""
    from emo_lightning.pipeline import CONTROLS
    from emo_lightning.training.checkpoint import model_hparams, read_checkpoint, with_adapter

    cfg = compose_config("predict", overrides)
    hparams = model_hparams(read_checkpoint(cfg["ckpt_path"]), cfg["ckpt_path"])
    lora, base = cfg.pop("lora"), cfg["ckpt_path"]
    if hparams.get("lora") and not lora:  # ckpt_path is an adapter: its base is the run's init_from
        lora, base = base, hparams["init_from"]
    if lora:  # the module loads the base (init_from) and the adapter itself: LightningCLI would replace the
        # configured model with a ckpt_path's saved hyper-parameters, dropping the adapter
        hparams = with_adapter(model_hparams(read_checkpoint(base), base), lora, base)
        cfg["ckpt_path"] = None
    data = {key: cfg.pop(key) for key in ("image", "audio", "output", "jobs", "face_detector", "landmarks",
                                          "pose_video", *CONTROLS)}
    data.update(resolution=cfg.pop("resolution") or hparams["resolution"],
                class_path="emo_lightning.pipeline.predict.PredictDataModule")
    return to_lightning_cli({**cfg, "model": hparams, "data": data})


def print_plugins() -> None:
    from emo_lightning import registry

    registry.discover()
    rows = []
    for entry in registry.entries():
        try:
            entry.load()
            status = "ok"
        except registry.RegistryError:
            status = f"import failed: {entry.error}"
        rows.append((entry.kind, entry.name, entry.source, status))
    widths = [max(len(r[i]) for r in rows + [("kind", "name", "source", "")]) for i in range(3)]
    print(f"{'kind':<{widths[0]}}  {'name':<{widths[1]}}  {'source':<{widths[2]}}  status")
    for kind, name, source, status in rows:
        print(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {source:<{widths[2]}}  {status}")


def check_plugin(args: list[str]) -> None:
    """``emo plugins check <kind>.<name> [image=<photo>]``: one component's contract checks; exit 1 on a failure."""
    from emo_lightning.contract import check_report

    targets = [a for a in args if "=" not in a]
    options = dict(a.split("=", 1) for a in args if "=" in a)
    if len(targets) != 1 or set(options) - {"image"}:
        raise SystemExit("usage: emo plugins check <kind>.<name> [image=<photo of one face>]")
    ok, report = check_report(targets[0], options.get("image"))
    print(report)
    if not ok:
        raise SystemExit(1)


def _friendly_errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from emo_lightning.media import MediaError
    from emo_lightning.registry import PluginContractError, RegistryError
    from emo_lightning.training.checkpoint import CheckpointError

    return (RegistryError, PluginContractError, CheckpointError, MediaError, HydraException,
            OmegaConfBaseException, FileNotFoundError, ValueError)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    # SIGINT/SIGTERM raise Interrupted, except in Lightning's loops, which stop themselves (fit: save, then exit)
    restore_signals = stop_handlers() if command not in ("fit", "validate", "test") else None
    try:
        if command == "plugins" and rest[:1] == ["check"]:
            check_plugin(rest[1:])
        elif command == "plugins":
            print_plugins()
        elif command == "quickstart":
            from emo_lightning.quickstart import parse_arguments, quickstart

            output, overrides, kwargs = parse_arguments(rest)
            metrics = quickstart(output, overrides, **kwargs)
            print(f"wrote {output}/sample.mp4, {output}/metrics.json, {output}/sync.png")
            print(json.dumps(metrics, indent=2))
        elif command == "preprocess":
            from emo_lightning.preprocess.runner import preprocess

            manifest = preprocess(compose_config("preprocess", rest))
            print(json.dumps(manifest["summary"]))
        elif command == "evaluate":
            from emo_lightning.evaluation.evaluate import evaluate
            from emo_lightning.evaluation.report import markdown_table

            cfg = compose_config("evaluate", rest)
            print(markdown_table(evaluate(cfg)) + f"\nwrote {cfg['output']}/metrics.json, metrics.md, per_video.csv")
        elif command not in SUBCOMMANDS:
            raise SystemExit(f"emo: unknown command {command!r}\n{USAGE}")
        elif any(arg.startswith("-") for arg in rest):
            run_lightning_cli([command, *rest])
        else:
            if command in ("predict", "test"):
                cfg = {"predict": predict_config, "test": test_config}[command](rest)
            else:
                cfg = fit_config(rest, command)
            cli = run_lightning_cli({"subcommand": command, command: cfg})
            if command == "predict":
                from emo_lightning.pipeline.predict import report_jobs

                report_jobs([r for batch in cli.trainer.predict_loop.predictions for r in batch])
    except SIGTERMException:
        print(f"emo {command}: stopped by SIGTERM after saving the last checkpoint; the same command resumes",
              file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except Interrupted as stop:
        print(f"emo {command}: {stop}", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    except _friendly_errors() as exc:
        if os.environ.get("EMO_DEBUG"):
            raise
        print(f"emo {command}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        if restore_signals is not None:
            restore_signals()


if __name__ == "__main__":
    main()
