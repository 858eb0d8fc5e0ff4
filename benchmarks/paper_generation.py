"""Paper-size generation speed: per-frame time, FLOP per frame and achieved FLOP/s of EMO with SD 1.5's structure
(random weights, stage 3 components) against the bare diffusers UNet, and every fast-generation option as a ratio
to today's defaults. Run through ``python benchmarks/generation.py --paper-size``.

Everything is measured in one process, so ratios hold on a shared CPU where absolute seconds do not: the fp32 and
bf16 matmul peaks, one denoising step of one guidance branch (``--frames`` frames at ``--resolution``², the best of
``--repeats``) for the bare UNet (SD 1.5's structure, 77 text tokens: the baseline) and for EMO in each backbone
configuration, and the per-clip work (ReferenceNet pass over the motion frames, VAE decode). FLOP are counted with
``torch.utils.flop_counter`` plus the attention cores it counts as zero on the CPU (4·B·H·Lq·Lk·d per
``scaled_dot_product_attention`` call, counted here by hand).

A whole video at 40 steps × 3 branches would take an hour here, so per-frame times are extrapolated, explicitly:
(backbone passes of the schedule × the measured time of one pass + per-clip work) / frames per clip. The passes of a
schedule come from the sampler's own plan (steps, guidance branches, guidance interval).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from train_memory import PAPER_COMPONENTS, SD15_UNET

from emo_lightning.config import compose_config
from emo_lightning.model.audio_windows import encode_audio
from emo_lightning.model.emo import Conditions
from emo_lightning.training import EMOLightningModule

TEXT_TOKENS = 77  # SD 1.5's CLIP context: what the bare UNet's cross-attention sees


def matmul_peak(dtype: torch.dtype, size: int = 2048, seconds: float = 1.5) -> float:
    """Best FLOP/s of a square matmul over ``seconds``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


@contextmanager
def counting_flops() -> Any:
    """FlopCounterMode, plus the attention cores it misses on the CPU (counted per call of F.sdpa)."""
    original, attention = F.scaled_dot_product_attention, [0]

    def counted(query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        *batch, lq, d = query.shape
        attention[0] += 4 * batch_numel(batch) * lq * key.shape[-2] * d
        return original(query, key, *args, **kwargs)

    F.scaled_dot_product_attention = counted
    try:
        with FlopCounterMode(display=False) as mode:
            result = {}
            yield result
        result.update(counted=mode.get_total_flops(), attention=attention[0])
        result["total"] = result["counted"] + result["attention"]
    finally:
        F.scaled_dot_product_attention = original


def batch_numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def best_time(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def paper_module() -> EMOLightningModule:
    model = compose_config("fit", ["experiment=stage3"])["model"]
    model.update(PAPER_COMPONENTS)
    torch.manual_seed(0)
    return EMOLightningModule(**model).eval()


def bare_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**SD15_UNET).eval()


class Setup:
    """One clip's inputs at the paper's structure: reference and motion features, audio, speed and face."""

    def __init__(self, module: EMOLightningModule, resolution: int, frames: int):
        model, hp = module.model, module.hparams
        self.model, self.frames = model, frames
        side = resolution // model.vae.downsample
        c = model.vae.latent_channels
        generator = torch.Generator().manual_seed(0)
        self.noisy = torch.randn(1, c, frames, side, side, generator=generator)
        self.reference_latents = torch.randn(1, c, side, side, generator=generator)
        self.motion_latents = torch.randn(1, c, hp.motion_frames, side, side, generator=generator)
        self.t = torch.tensor([500])
        rate = model.audio_encoder.sample_rate
        waveform = 0.1 * torch.randn(1, int(frames / hp.fps * rate), generator=generator)
        with torch.no_grad():
            self.conditions = Conditions(
                model.reference_features(self.reference_latents),
                face=model.face_locator(torch.ones(1, 1, resolution, resolution)),
                motion=model.motion_features(self.motion_latents),
                audio=encode_audio(model.audio_encoder, waveform, frames),
                speed=model.speed_encoder(torch.ones(1, frames)))

    def step(self) -> torch.Tensor:
        return self.model.denoise(self.noisy, self.t, self.conditions)


def run_step(step: Callable[[], Any], precision: str) -> Callable[[], Any]:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def run() -> Any:
        context = torch.autocast("cpu", dtype, cache_enabled=False) if dtype else nullcontext()
        with torch.no_grad(), context:
            return step()
    return run


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"peak": {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}}
    frames, side = args.frames, args.resolution // 8

    unet = bare_unet()
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(frames, 4, side, side, generator=generator)
    text = torch.randn(frames, TEXT_TOKENS, SD15_UNET["cross_attention_dim"], generator=generator)
    bare = run_step(lambda: unet(sample, torch.tensor([500]), text).sample, "fp32")
    with counting_flops() as flops:
        bare()
    result["bare"] = {"flops": flops, "seconds": best_time(bare, args.repeats)}
    del unet

    module = paper_module()
    setup = Setup(module, args.resolution, frames)
    result["emo"] = {}
    for precision in args.precisions:
        step = run_step(setup.step, precision)
        entry = {"seconds": best_time(step, args.repeats)}
        if precision == "fp32":
            with counting_flops() as flops:
                step()
            entry["flops"] = flops
        result["emo"][precision] = entry
    model = module.model
    with torch.no_grad():
        result["motion_pass"] = best_time(lambda: model.motion_features(setup.motion_latents), 1)
        one = torch.randn(1, model.vae.latent_channels, side, side)
        result["vae_decode_frame"] = best_time(lambda: model.vae.decode(one), 1)
    result["bare"]["peak_fraction"] = result["bare"]["flops"]["total"] / result["bare"]["seconds"] / \
        result["peak"]["fp32"]
    return result


def schedule_passes(steps: int, branches: int) -> int:
    """Backbone passes of one clip: every step runs every guidance branch."""
    return steps * branches


def report(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    frames, peak = args.frames, result["peak"]
    bare, emo = result["bare"], result["emo"]
    fp32 = emo["fp32"]
    lines = [f"paper-size EMO (SD 1.5 structure, random weights, stage 3), {frames} frames at "
             f"{args.resolution}², one guidance branch, best of {args.repeats}; {args.threads} thread(s)",
             f"  matmul peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s "
             f"({peak['bf16'] / peak['fp32']:.2f}x)"]
    for name, entry in (("bare UNet", bare), ("EMO step", fp32)):
        f = entry["flops"]
        lines.append(f"  {name}: {entry['seconds']:.1f} s, {f['total'] / 1e12:.2f} TFLOP "
                     f"({f['counted'] / 1e12:.2f} counted + {f['attention'] / 1e12:.2f} attention cores) = "
                     f"{f['total'] / frames / 1e9:.0f} GFLOP per frame; "
                     f"{f['total'] / entry['seconds'] / 1e9:.0f} GFLOP/s = "
                     f"{f['total'] / entry['seconds'] / peak['fp32']:.0%} of the fp32 peak")
    for precision, entry in emo.items():
        if precision != "fp32":
            lines.append(f"  EMO step {precision} autocast: {entry['seconds']:.1f} s = "
                         f"{fp32['seconds'] / entry['seconds']:.2f}x faster than fp32")
    per_clip = result["motion_pass"] + frames * result["vae_decode_frame"]
    lines.append(f"  per clip: ReferenceNet over the motion frames {result['motion_pass']:.1f} s, VAE decode "
                 f"{frames * result['vae_decode_frame']:.1f} s")
    default_s = (schedule_passes(40, 3) * fp32["seconds"] + per_clip) / frames
    lines.append(f"  default (40 DDIM steps x 3 branches = 120 passes): {default_s:.1f} s per frame "
                 "(extrapolated: passes x measured pass + per-clip work)")
    lines.append(f"  EMO-step/bare-UNet time ratio: {fp32['seconds'] / bare['seconds']:.2f} "
                 f"(FLOP ratio {fp32['flops']['total'] / bare['flops']['total']:.2f})")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per configuration (the best counts)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args(argv)
    result = measure(args)
    print("\n".join(report(result, args)))


if __name__ == "__main__":
    main()
