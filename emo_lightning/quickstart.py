"""`emo quickstart`: train the tiny EMO on procedural talking faces on the CPU, then generate and score
held-out videos: ``sample.mp4``, ``metrics.json`` and ``sync.png`` land in ``output``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from emo_lightning.evaluation.plot import plot_sync
from emo_lightning.evaluation.runner import evaluate
from emo_lightning.media import Mp4Writer


def quickstart(output: str | Path = "quickstart", overrides: list[str] | None = None, num_videos: int = 4,
               seconds: float = 4.0) -> dict[str, Any]:
    """Fit ``experiment=tiny`` (+ ``overrides``) into ``<output>/run``, evaluate, write the three files."""
    from emo_lightning.cli import fit_config, run_lightning_cli

    start = time.perf_counter()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    cfg = fit_config(["experiment=tiny", f"trainer.default_root_dir={out / 'run'}", *(overrides or [])])
    module = run_lightning_cli({"subcommand": "fit", "fit": cfg}).model.eval()

    metrics, videos = evaluate(module, num_videos=num_videos, seconds=seconds)
    first = videos[0]
    with Mp4Writer(out / "sample.mp4", fps=module.hparams.fps, width=first["frames"].shape[2],
                   height=first["frames"].shape[1], audio=first["example"].clip["audio"]) as writer:
        writer.write(first["frames"])
    plot_sync(first["series"], module.hparams.fps, metrics, out / "sync.png")
    metrics["minutes"] = (time.perf_counter() - start) / 60
    metrics["train_steps"] = int(module.global_step)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
