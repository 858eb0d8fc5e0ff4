"""How fast does a backbone start to use the audio? The quickstart's clip phase from an image-phase checkpoint, with
the mouth's error measured along the way, then the quickstart's evaluation.

    python benchmarks/audio_uptake.py <quickstart output>/images/checkpoints/last.ckpt [--steps 450] [--every 50]
        [--videos 4 --seconds 4] [overrides of the clip phase, e.g. model/backbone=wan_tiny]

Every ``--every`` steps, on 8 held-out clips: the mean squared error inside the mouth (``lip_mask``) of the clean
frames implied by one denoising step at noise levels 600 and 900, with the audio as trained and with it zeroed (as
condition dropout zeroes it). ``gap`` = zeroed − as trained: how much the model already uses the audio for the
mouth. A backbone whose gap stays at 0 has not found a way from the audio to the mouth, however long the run.

The loop is the clip phase's (``experiment=tiny``: the same data, loss, condition dropout, AdamW and a 0.995 EMA of
the trained weights, which the final evaluation uses), without Lightning's trainer, so that the probe can run in it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings

import lightning.pytorch as pl
import torch
from einops import rearrange
from learning_diagnostics import held_out, predicted_sample, to_images
from torch import Tensor

from emo_lightning.evaluation.synthetic_benchmark import score_held_out_videos
from emo_lightning.lightning_cli import EmoLightningCLI, fit_config
from emo_lightning.training import EMOLightningModule
from emo_lightning.training.draws import SampleDraws

PROBE_LEVELS = (600, 900)
EMA_DECAY = 0.995


def clip_phase(image_checkpoint: str, overrides: list[str]) -> tuple[EMOLightningModule, pl.LightningDataModule]:
    cfg = fit_config(["experiment=tiny", "resume=false", f"model.init_from={image_checkpoint}",
                      "trainer.default_root_dir=runs/audio_uptake", *overrides])
    for key in ("ckpt_path", "weights_only"):  # fit's own arguments; this loop runs no trainer
        cfg.pop(key, None)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    cli = EmoLightningCLI(EMOLightningModule, pl.LightningDataModule, subclass_mode_data=True, args=cfg, run=False,
                          save_config_callback=None, auto_configure_optimizers=False)
    cli.model.setup("fit")
    cli.datamodule.setup("fit")
    return cli.model, cli.datamodule


@torch.no_grad()
def mouth_errors(module: EMOLightningModule, batch: dict[str, Tensor]) -> dict[str, float]:
    """Mouth error of one denoising step at each probe level, with the audio and with it zeroed."""
    module.eval()
    trained = module.conditions(batch, training=False)
    silent = dataclasses.replace(trained, audio=torch.zeros_like(trained.audio))
    target = module._latents(batch, "frames")
    truth = rearrange(batch["frames"], "b c f h w -> (b f) c h w")
    mouth = rearrange(batch["lip_mask"].float(), "b c f h w -> (b f) c h w")
    out = {}
    for t in PROBE_LEVELS:
        noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(t))
        timesteps = torch.full((target.shape[0],), t)
        noisy = module.train_scheduler.add_noise(target, noise, timesteps)
        for name, conditions in (("audio", trained), ("zeroed", silent)):
            prediction = module.model.denoise(noisy, timesteps, conditions, temporal=True)
            error = (to_images(module, predicted_sample(module, prediction, noisy, t)) - truth) ** 2
            out[f"{name}_{t}"] = float((error * mouth).sum() / (mouth.sum() * error.shape[1]))
        out[f"gap_{t}"] = out[f"zeroed_{t}"] - out[f"audio_{t}"]
    module.train()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="an image-phase checkpoint (quickstart: images/checkpoints/last.ckpt)")
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--videos", type=int, default=4, help="held-out videos of the final evaluation")
    parser.add_argument("--seconds", type=float, default=4.0)
    args, overrides = parser.parse_known_args()

    module, data = clip_phase(args.checkpoint, overrides)
    _, probe_batch = held_out(module, 8)
    params = [p for p in module.parameters() if p.requires_grad]
    average = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=module.hparams.lr, weight_decay=module.hparams.weight_decay)
    step, start, losses = 0, time.perf_counter(), []
    module._draws = lambda batch, training: SampleDraws.for_batch(batch, step, training, module.device)
    module.train()
    while step < args.steps:
        for batch in data.train_dataloader():
            loss = module.diffusion_loss(batch, training=True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for p, a in zip(params, average, strict=True):
                    a.lerp_(p, 1 - EMA_DECAY)
            losses.append(loss.item())
            step += 1
            if step % args.every == 0 or step == args.steps:
                row = {"step": step, "loss": sum(losses) / len(losses), **mouth_errors(module, probe_batch),
                       "minutes": (time.perf_counter() - start) / 60}
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
                losses = []
            if step == args.steps:
                break
    with torch.no_grad():
        for p, a in zip(params, average, strict=True):
            p.copy_(a)
    metrics, _ = score_held_out_videos(module.eval().pipeline(), num_videos=args.videos, seconds=args.seconds)
    print(json.dumps({"evaluation (EMA weights)": metrics}))


if __name__ == "__main__":
    main()
