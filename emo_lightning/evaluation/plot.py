"""The mouth-opening-vs-loudness plot written by `emo quickstart` and `emo evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_sync(series: dict[str, np.ndarray], fps: float, metrics: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(series["loudness"])) / fps
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
    ax.fill_between(t, 0, series["loudness"], color="0.85", label="audio loudness")
    ax.plot(t, series["ground_truth"], color="tab:green", lw=1.2, label="ground truth mouth")
    ax.plot(t, series["generated"], color="tab:blue", lw=1.8,
            label=f"generated mouth (Pearson {metrics['sync_pearson']:.2f} over all held-out videos)")
    ax.plot(t, series["audio_zeroed"], color="tab:red", lw=1.2, ls="--",
            label=f"generated, audio zeroed ({metrics['sync_pearson_audio_zeroed']:.2f})")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mouth opening / loudness")
    ax.set_ylim(0, 1.05)
    ax.set_title("Held-out identity and audio: mouth opening measured from the pixels vs. audio loudness")
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
