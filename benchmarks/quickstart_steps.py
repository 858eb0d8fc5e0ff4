"""CPU time of one training step of each `emo quickstart` phase (`tiny_images`, then `tiny`), for today's configs and
for the same with ``--against`` overrides, measured in one process: the ratios hold on a shared CPU.

    python benchmarks/quickstart_steps.py [--against model.backbone.config.attention_head_dim=8] [--steps 20]

A step is the diffusion loss, its backward pass and an AdamW step on a fixed synthetic batch (1 thread; the median
of ``--steps``); ``data`` is the CPU time of rendering one batch of synthetic faces. The phases' step counts come
from their configs, so the totals weigh each phase as the quickstart does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import default_collate

from emo_lightning.config import compose_config
from emo_lightning.data import SyntheticTalkingFaces
from emo_lightning.training import EMOLightningModule


def phase(experiment: str, overrides: list[str], steps: int) -> dict[str, float]:
    config = compose_config("fit", [f"experiment={experiment}", *overrides])
    torch.manual_seed(0)
    module = EMOLightningModule(**config["model"]).train()
    hp, size = module.hparams, config["data"]["batch_size"]
    data = SyntheticTalkingFaces(size * 4, stage=hp.stage, resolution=hp.resolution, num_frames=hp.num_frames,
                                 motion_frames=hp.motion_frames)
    start = time.process_time()
    items = [data[i] for i in range(size * 4)]
    data_s = (time.process_time() - start) / 4
    batch = default_collate(items[:size])
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], 1e-3)
    times = []
    for _ in range(steps):
        start = time.process_time()
        module.diffusion_loss(batch, training=True).backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.process_time() - start)
    return {"step": statistics.median(times), "data": data_s, "max_steps": config["trainer"]["max_steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", nargs="*", default=["model.backbone.config.attention_head_dim=8"])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    totals = {"today": 0.0, "against": 0.0}
    for experiment in ("tiny_images", "tiny"):
        now, then = phase(experiment, [], args.steps), phase(experiment, args.against, args.steps)
        for name, run in (("today", now), ("against", then)):
            totals[name] += run["max_steps"] * (run["step"] + run["data"])
        print(f"{experiment}: step {now['step'] * 1000:.0f} ms CPU vs {then['step'] * 1000:.0f} ms with "
              f"{' '.join(args.against)} ({now['step'] / then['step']:.2f}x); data {now['data'] * 1000:.0f} ms per "
              f"batch; {now['max_steps']} steps", flush=True)
    print(f"quickstart training, steps x (step + data): {totals['today'] / 60:.1f} CPU minutes vs "
          f"{totals['against'] / 60:.1f} ({totals['today'] / totals['against']:.2f}x)")


if __name__ == "__main__":
    main()
