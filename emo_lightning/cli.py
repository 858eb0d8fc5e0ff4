"""The ``emo`` command: fit / validate / test / predict through LightningCLI (:mod:`emo_lightning.lightning_cli`,
imported only by them and the quickstart: the other commands start without Lightning), plus ``plugins``,
``preprocess``, ``evaluate`` and ``quickstart``.

Arguments are Hydra overrides of ``conf/`` (``experiment=tiny trainer.max_steps=20``). Arguments that
start with ``-`` go to LightningCLI unchanged, so a saved run reproduces with
``emo fit --config runs/t/config.yaml``.
"""

from __future__ import annotations

import json
import os
import sys

from emo_lightning.config import compose_config
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
    from emo_lightning.model.checkpoint import CheckpointError
    from emo_lightning.registry import PluginContractError, RegistryError

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
        else:
            from emo_lightning.lightning_cli import run_subcommand

            run_subcommand(command, rest)
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
