"""Why a trained tiny EMO does or does not lip-sync: the measurements behind issue 5's findings.

    python benchmarks/learning_diagnostics.py <quickstart output>/video/checkpoints/last.ckpt [--clips 8]

A checkpoint of the image phase (``<quickstart output>/images/...``) gets the reference rows only.

All errors are mean squared pixel errors in [-1, 1] on held-out clips (test split: unseen identities and audio).

* ``x0_error``: one denoising step from a correctly noised latent, per noise level, with the conditions as
  trained, with another clip's reference (``shuffled_reference``) and with the audio zeroed. The gap to
  ``as_trained`` is how much the model uses that condition.
* ``audio_share``: the error between the clip's frames and the same frames drawn with the clip's mean mouth
  opening, all else equal. It is all the error that using the audio could remove; compare it with the
  x0 errors to see whether the audio can matter to the loss yet.
* ``sampling``: the x0 error of the whole DDIM trajectory's end, from pure noise, for several step counts.
  If more steps give a worse result, sampling drifts away from what the model was trained on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from torch.utils.data import default_collate

from emo_lightning.data.synthetic import SyntheticTalkingFaces, render_faces
from emo_lightning.model import Conditions
from emo_lightning.training import EMOLightningModule

NOISE_LEVELS = (200, 400, 600, 800, 950)
SAMPLING_STEPS = (2, 5, 10, 25)


def held_out(module: EMOLightningModule, clips: int) -> tuple[SyntheticTalkingFaces, dict[str, Tensor]]:
    hp = module.hparams
    data = SyntheticTalkingFaces(clips, stage=hp.stage, resolution=hp.resolution, num_frames=hp.num_frames,
                                 motion_frames=hp.motion_frames, fps=hp.fps, seed=1, split="test")
    return data, default_collate([data[i] for i in range(clips)])


def to_images(module: EMOLightningModule, latents: Tensor) -> Tensor:
    return module.model.vae.decode(rearrange(latents, "b c f h w -> (b f) c h w"))


def predicted_sample(module: EMOLightningModule, prediction: Tensor, noisy: Tensor, t: int) -> Tensor:
    """The clean latents implied by the model's prediction at noise level ``t``."""
    alpha = module.train_scheduler.alphas_cumprod[t]
    kind = module.train_scheduler.config.prediction_type
    if kind == "epsilon":
        return (noisy - (1 - alpha).sqrt() * prediction) / alpha.sqrt()
    if kind == "v_prediction":
        return alpha.sqrt() * noisy - (1 - alpha).sqrt() * prediction
    return prediction


def x0_errors(module: EMOLightningModule, batch: dict[str, Tensor], conditions: Conditions) -> list[float]:
    scheduler, target = module.train_scheduler, module._latents(batch, "frames")
    truth = rearrange(batch["frames"], "b c f h w -> (b f) c h w")
    errors = []
    for t in NOISE_LEVELS:
        noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(t))
        timesteps = torch.full((target.shape[0],), t)
        noisy = scheduler.add_noise(target, noise, timesteps)
        prediction = module.model.denoise(noisy, timesteps, conditions, temporal=module.uses_video)
        x0 = predicted_sample(module, prediction, noisy, t)
        errors.append(float(((to_images(module, x0) - truth) ** 2).mean()))
    return errors


def audio_share(data: SyntheticTalkingFaces, clips: int) -> float:
    errors = []
    for index in range(clips):
        identity, clip = data.clip(index)
        target = slice(data.motion_frames, None)
        mouth = clip["mouth_open"][target]
        flat = render_faces(identity, np.full_like(mouth, mouth.mean()), clip["pose"][target], data.resolution)
        errors.append(np.mean(((flat.astype(np.float32) - clip["frames"][target]) / 127.5) ** 2))
    return float(np.mean(errors))


def sampling_errors(module: EMOLightningModule, batch: dict[str, Tensor], conditions: Conditions) -> dict[int, float]:
    """One clip denoised by the sampler's own loop (no guidance), from the same noise for every step count."""
    target, truth = module._latents(batch, "frames"), rearrange(batch["frames"], "b c f h w -> (b f) c h w")
    errors, pipeline = {}, module.pipeline()
    for steps in SAMPLING_STEPS:
        latents = pipeline.denoise_clip(conditions, target[:, :, :1], target.shape[2], [(True, True, 1.0)],
                                        pipeline.scheduler, steps, torch.Generator().manual_seed(0))
        errors[steps] = float(((to_images(module, latents) - truth) ** 2).mean())
    return errors


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()

    module = EMOLightningModule.load_from_checkpoint(args.checkpoint, map_location="cpu", weights_only=True).eval()
    data, batch = held_out(module, args.clips)
    trained = module.conditions(batch, training=False)
    shuffled = module.conditions({**batch, "reference": batch["reference"].roll(1, 0)}, training=False)
    report = {"noise_levels": list(NOISE_LEVELS),
              "x0_error": {"as_trained": x0_errors(module, batch, trained),
                           "shuffled_reference": x0_errors(module, batch, shuffled)}}
    if module.uses_video:
        silent = dataclasses.replace(trained, audio=torch.zeros_like(trained.audio))  # as condition dropout does
        report["x0_error"]["audio_zeroed"] = x0_errors(module, batch, silent)
        report["audio_share"] = audio_share(data, args.clips)
        report["sampling"] = sampling_errors(module, batch, trained)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
