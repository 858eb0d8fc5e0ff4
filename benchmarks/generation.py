"""Generation speed and memory: frames/s and peak RSS for short vs long audio, measured in the same run, and
the time with reference/motion features cached (the sampler) vs recomputed at every denoising step.

    python benchmarks/generation.py [--short 5] [--long 60] [--steps 4] [--threads 1] [--wav2vec2-base]

Uses the tiny EMO with random weights (speed and memory do not depend on training). Each length runs in its
own process, so its peak RSS (ru_maxrss) is its own; "model" is the RSS once the model is built and warmed
up, before generation starts. ``--wav2vec2-base`` also measures a wav2vec2-base audio encoder (random
weights from its config, ~95 M parameters) on the long audio in one pass vs in windows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from emo_lightning.config import compose_config
from emo_lightning.pipeline import EMOPipeline
from emo_lightning.training import EMOLightningModule


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speech_like(seconds: float, rate: int, seed: int = 0) -> torch.Tensor:
    """Noise under a syllable-rate (4 Hz) envelope: the audio encoders' cost does not depend on the words."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    return 0.2 * torch.randn(t.shape, generator=generator) * torch.sin(torch.pi * 4 * t).abs()


def tiny_model() -> EMOLightningModule:
    torch.manual_seed(0)
    return EMOLightningModule(**compose_config("fit", ["experiment=tiny"])["model"]).eval()


def generation_run(seconds: float, steps: int) -> dict[str, Any]:
    """One video of ``seconds`` through the whole path (sampler, VAE decode, H.264/AAC streaming)."""
    pipeline = tiny_model().pipeline()
    image, mask = torch.rand(1, 3, 32, 32) * 2 - 1, torch.ones(1, 1, 32, 32)
    rate = pipeline.sample_rate
    with tempfile.TemporaryDirectory() as folder:
        pipeline.write_video(Path(folder) / "warm.mp4", image, speech_like(1.0, rate), mask, steps=steps)
        model_mb = peak_rss_mb()
        start = time.perf_counter()
        pipeline.write_video(Path(folder) / "out.mp4", image, speech_like(seconds, rate), mask, steps=steps)
        elapsed = time.perf_counter() - start
    frames = round(seconds * pipeline.settings.fps)
    return {"seconds": seconds, "frames": frames, "fps": frames / elapsed, "model_mb": model_mb,
            "peak_mb": peak_rss_mb()}


class RecomputingPipeline(EMOPipeline):
    """The pipeline without its feature cache: ReferenceNet passes over the reference image and the motion
    frames at every denoising step, as a naive implementation would run them (the output is the same)."""

    def _motion(self, history: torch.Tensor | None, ref_latents: torch.Tensor, copies: int) -> dict:
        self._motion_inputs = (history, ref_latents, copies)
        return super()._motion(history, ref_latents, copies)

    def denoise_clip(self, conditions, ref_latents, latent_frames, branches, scheduler, steps, generator,
                     on_step=lambda step: None):
        b = ref_latents.shape[0]
        rows = torch.cat([torch.arange(b) + (b if use_ref else 0) for use_ref, _, _ in branches])

        def recompute_then_report(step: int) -> None:
            features = self.model.reference_features(torch.cat([torch.zeros_like(ref_latents), ref_latents]))
            conditions.reference = {k: v[rows] for k, v in features.items()}
            conditions.motion = super(RecomputingPipeline, self)._motion(*self._motion_inputs)
            on_step(step)

        return super().denoise_clip(conditions, ref_latents, latent_frames, branches, scheduler, steps, generator,
                                    recompute_then_report)


def cache_run(steps: int, seconds: float = 2.0) -> dict[str, Any]:
    """Seconds per video with features cached vs recomputed per step (same seed: the same frames)."""
    cached = tiny_model().pipeline()
    recomputing = RecomputingPipeline(cached.model, cached.scheduler, cached.layout, cached.settings,
                                      cached.noise_schedule)
    waveform = speech_like(seconds, cached.sample_rate)[None]
    args = (torch.rand(1, 3, 32, 32) * 2 - 1, waveform, torch.ones(1, 1, 32, 32))
    result, videos = {}, []
    for name, pipeline in (("warm-up", cached), ("cached", cached), ("recomputed", recomputing)):
        start = time.perf_counter()
        videos.append(pipeline(*args, steps=steps, guidance_reference=1.0, guidance_audio=2.0, seed=0))
        result[name] = time.perf_counter() - start
    result["same_frames"] = all(torch.allclose(videos[0], v, atol=1e-5) for v in videos[1:])
    return result


def wav2vec2_run(seconds: float, windowed: bool) -> dict[str, Any]:
    from emo_lightning import registry
    from emo_lightning.model.audio_windows import encode_audio

    encoder = registry.build("audio_encoder", "wav2vec2", config={}, output_dim=768).eval()
    waveform, frames = speech_like(seconds, encoder.sample_rate)[None], round(seconds * 25)
    model_mb = peak_rss_mb()
    start = time.perf_counter()
    with torch.no_grad():
        encode_audio(encoder, waveform, frames) if windowed else encoder(waveform, frames)
    return {"seconds": seconds, "windowed": windowed, "time_s": time.perf_counter() - start, "model_mb": model_mb,
            "peak_mb": peak_rss_mb()}


def in_subprocess(args: argparse.Namespace, *worker: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--threads", str(args.threads), "--steps", str(args.steps), "--long",
               str(args.long), "--worker", *worker]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", type=float, default=5.0, help="seconds of audio of the short run")
    parser.add_argument("--long", type=float, default=60.0, help="seconds of audio of the long run")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per clip")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    parser.add_argument("--wav2vec2-base", action="store_true")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)  # internal: one measurement, as JSON
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        kind, value = args.worker
        if kind == "generate":
            print(json.dumps(generation_run(float(value), args.steps)))
        elif kind == "cache":
            print(json.dumps(cache_run(args.steps)))
        else:
            print(json.dumps(wav2vec2_run(args.long, windowed=value == "windowed")))
        return

    print(f"tiny EMO, random weights, {args.steps} steps, audio guidance 2 (2 backbone passes per step), "
          f"{args.threads} thread(s)")
    short, long = (in_subprocess(args, "generate", str(s)) for s in (args.short, args.long))
    for run in (short, long):
        print(f"  {run['seconds']:5.0f} s audio: {run['frames']:5d} frames at {run['fps']:5.1f} frames/s; "
              f"RSS model {run['model_mb']:.0f} MB, peak {run['peak_mb']:.0f} MB")
    grown = (long["peak_mb"] - long["model_mb"]) / max(short["peak_mb"] - short["model_mb"], 1e-9)
    print(f"  peak memory {args.long / args.short:.0f}x longer audio: {long['peak_mb'] / short['peak_mb']:.3f}x "
          f"(target <= 1.2x); above the model: {long['peak_mb'] - long['model_mb']:.0f} vs "
          f"{short['peak_mb'] - short['model_mb']:.0f} MB ({grown:.2f}x)")

    cache = in_subprocess(args, "cache", "-")
    print(f"  2 s of video: features cached {cache['cached']:.2f} s, recomputed at every step "
          f"{cache['recomputed']:.2f} s: {cache['recomputed'] / cache['cached']:.2f}x the time; "
          f"same frames: {cache['same_frames']}")

    if args.wav2vec2_base:
        one, windowed = (in_subprocess(args, "wav2vec2", mode) for mode in ("whole", "windowed"))
        for run in (one, windowed):
            print(f"  wav2vec2-base, {run['seconds']:.0f} s {'in windows' if run['windowed'] else 'in one pass'}: "
                  f"+{run['peak_mb'] - run['model_mb']:.0f} MB above the model, {run['time_s']:.1f} s")


if __name__ == "__main__":
    main()
