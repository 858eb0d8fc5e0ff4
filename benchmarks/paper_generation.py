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
import resource
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.flop_counter import FlopCounterMode
from train_memory import PAPER_COMPONENTS, SD15_UNET

from emo_lightning.components.backbone.sd_unet.attention import AudioAttnProcessor, ReferenceAttnProcessor, _sdpa
from emo_lightning.components.base import Conditions
from emo_lightning.components.temporal_block.animatediff import AnimateDiffTemporalBlock
from emo_lightning.config import compose_config
from emo_lightning.model.audio_windows import encode_audio
from emo_lightning.pipeline.fast_sampling import GuidanceInterval, autocast, prepare_backbone
from emo_lightning.training import EMOLightningModule

TEXT_TOKENS = 77  # SD 1.5's CLIP context: what the bare UNet's cross-attention sees


def matmul_peak(dtype: torch.dtype, size: int = 2048, calls: int = 8) -> float:
    """Best FLOP per CPU second (of this process, summed over its threads) of a square matmul over ``calls``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    return 2 * size ** 3 / timed(lambda: torch.mm(a, b), calls)["cpu"]


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


def cpu_seconds() -> float:
    """This process's CPU time (user + system): less sensitive than the wall clock to other processes on the CPU."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Best wall and CPU seconds of ``run`` over ``repeats`` calls (after the caller's warm-up call)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - start_cpu)
    return {"wall": min(wall), "cpu": min(cpu)}


class TodaysReferenceAttention(ReferenceAttnProcessor):
    """Reference-attention as it was: the reference tokens repeated for every frame and projected at every call."""

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, **kwargs: Any) -> torch.Tensor:
        reference = self.state.reference.get(self.name) if self.state.reference else None
        if reference is None:
            return _sdpa(attn, hidden_states, None, attention_mask)
        reference = reference.to(hidden_states.dtype).repeat_interleave(hidden_states.shape[0] // reference.shape[0], 0)
        return _sdpa(attn, hidden_states, torch.cat([hidden_states, reference], dim=1), attention_mask)


class TodaysAudioAttention(AudioAttnProcessor):
    """Audio-attention as it was: SD's cross-attention, the query and output projections at every position."""

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, **kwargs: Any) -> torch.Tensor:
        return _sdpa(attn, hidden_states, encoder_hidden_states, attention_mask)


class TodaysTemporalBlock(AnimateDiffTemporalBlock):
    """The temporal block as it was: every motion frame through the whole transformer, the speed keys and values
    projected at every position."""

    def forward(self, x: torch.Tensor, motion: torch.Tensor | None = None,
                speed: torch.Tensor | None = None) -> torch.Tensor:
        b, _, f, h, w = x.shape
        frames = x if motion is None else torch.cat([motion.to(x.dtype), x], dim=2)
        total = frames.shape[2]
        out = self.motion(rearrange(frames, "b c f h w -> (b f) c h w"), num_frames=total)
        out = rearrange(out, "(b f) c h w -> b c f h w", b=b)[:, :, total - f:]
        if speed is None:
            return out
        tokens = rearrange(out, "b c f h w -> (b h w) f c")
        context = speed.to(x.dtype).repeat_interleave(h * w, dim=0)
        tokens = tokens + self.speed_attn(self.speed_norm(tokens), encoder_hidden_states=context)
        return rearrange(tokens, "(b h w) f c -> b c f h w", b=b, h=h, w=w)


@contextmanager
def todays_backbone(model: torch.nn.Module) -> Any:
    """EMO's backbone as before the exact shortcuts of issue 14 (same weights, same outputs)."""
    backbone = model.backbone
    swapped = [(m, type(m)) for m in backbone.temporal_blocks.values()]
    before = {AnimateDiffTemporalBlock: TodaysTemporalBlock, ReferenceAttnProcessor: TodaysReferenceAttention,
              AudioAttnProcessor: TodaysAudioAttention}
    swapped += [(p, type(p)) for p in backbone.unet.attn_processors.values() if type(p) in before]
    for obj, cls in swapped:
        obj.__class__ = before[cls]
    try:
        yield
    finally:
        for obj, cls in swapped:
            obj.__class__ = cls


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
        self.reference_latents = torch.randn(1, c, 1, side, side, generator=generator)
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
    def run() -> Any:
        with torch.no_grad(), autocast(precision, torch.device("cpu")):
            return step()
    return run


def measured(name: str, run: Callable[[], Any], repeats: int, count: bool = False) -> dict[str, Any]:
    """A warm-up call (FLOP counted when ``count``), then the timed calls; printed as it goes."""
    with counting_flops() if count else nullcontext() as flops:
        run()
    entry = {**timed(run, repeats), **({"flops": flops} if count else {})}
    print(f"  measured {name}: {entry['wall']:.1f} s wall, {entry['cpu']:.1f} s CPU", flush=True)
    return entry


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"peak": {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}}
    frames, side = args.frames, args.resolution // 8
    result["bare"] = measure_bare(frames, side, args.repeats)

    module = paper_module()
    model, setup = module.model, Setup(module, args.resolution, frames)
    with todays_backbone(model):
        result["today"] = measured("EMO step before", run_step(setup.step, "32"), args.repeats, count=True)
    result["exact"] = measured("EMO step", run_step(setup.step, "32"), args.repeats, count=True)
    for precision in args.precisions:
        result[f"exact_{precision}"] = measured(f"EMO step {precision}", run_step(setup.step, precision), args.repeats)
    if args.channels_last:
        prepare_backbone(model.backbone, channels_last=True)
        result["exact_channels_last"] = measured("EMO step channels-last", run_step(setup.step, "32"), args.repeats)
        model.backbone.to(memory_format=torch.contiguous_format)
    if args.compile:
        start = time.perf_counter()
        prepare_backbone(model.backbone, compile=True)
        run_step(setup.step, "32")()
        result["compile_s"] = time.perf_counter() - start
        result["exact_compiled"] = measured("EMO step compiled", run_step(setup.step, "32"), args.repeats)
    if args.profile:
        result["profile"] = {p: profile_categories(run_step(setup.step, p)) for p in ("32", *args.precisions)}
    one = torch.randn(1, model.vae.latent_channels, side, side)
    for precision in ("32", *args.precisions):
        result[f"motion_pass_{precision}"] = measured(
            f"ReferenceNet over the motion frames {precision}",
            run_step(lambda: model.motion_features(setup.motion_latents), precision), 1)
        result[f"vae_decode_{precision}"] = measured(f"VAE decode of one frame {precision}",
                                                     run_step(lambda: model.vae.decode(one), precision), 1)
    result["scheduler"] = module.pipeline().scheduler_for(args.fast_sampler)
    result["num_train_timesteps"] = module.noise_schedule["num_train_timesteps"]
    return result


CATEGORIES = {  # profiler op name -> where the time goes
    "matmul/conv": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
                    "aten::_mkldnn_convolution", "aten::convolution", "mkldnn::_linear_pointwise", "aten::linear"),
    "attention cores": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
    "norms": ("aten::native_group_norm", "aten::native_layer_norm"),
    "dtype casts": ("aten::_to_copy", "aten::to", "aten::copy_"),
}


def profile_categories(run: Callable[[], Any]) -> dict[str, float]:
    """Self CPU seconds of one call by category (see CATEGORIES; everything else: elementwise, layout, other)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    totals = dict.fromkeys([*CATEGORIES, "elementwise and the rest"], 0.0)
    for event in prof.key_averages():
        category = next((c for c, names in CATEGORIES.items() if event.key in names), "elementwise and the rest")
        totals[category] += event.self_cpu_time_total / 1e6
    return totals


def measure_bare(frames: int, side: int, repeats: int) -> dict[str, Any]:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(frames, 4, side, side, generator=generator)
    text = torch.randn(frames, TEXT_TOKENS, SD15_UNET["cross_attention_dim"], generator=generator)
    return measured("bare UNet step", run_step(lambda: unet(sample, torch.tensor([500]), text).sample, "32"),
                    repeats, count=True)


def per_frame(passes: float, pass_s: float, precision: str, result: dict[str, Any], frames: int) -> float:
    """CPU seconds per frame: the clip's backbone passes plus its per-clip work (motion frames, VAE decode)."""
    clip = result[f"motion_pass_{precision}"]["cpu"] + frames * result[f"vae_decode_{precision}"]["cpu"]
    return (passes * pass_s + clip) / frames


def report(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    frames, peak, bare = args.frames, result["peak"], result["bare"]
    today, exact = result["today"], result["exact"]
    lines = [f"paper-size EMO (SD 1.5 structure, random weights, stage 3), {frames} frames at {args.resolution}², "
             f"one guidance branch, {args.threads} thread(s); times are CPU seconds (user + system) of this process, "
             "best of the timed calls",
             f"  matmul peak: fp32 {peak['fp32'] / 1e9:.0f}, bf16 {peak['bf16'] / 1e9:.0f} GFLOP per CPU second "
             f"({peak['bf16'] / peak['fp32']:.2f}x)"]
    for name, entry in (("bare UNet", bare), ("EMO step before", today), ("EMO step", exact)):
        f = entry["flops"]
        rate = f["total"] / entry["cpu"]
        lines.append(f"  {name}: {entry['cpu']:.1f} s CPU, {f['total'] / 1e12:.2f} TFLOP "
                     f"({f['counted'] / 1e12:.2f} counted + {f['attention'] / 1e12:.2f} attention cores) = "
                     f"{f['total'] / frames / 1e9:.0f} GFLOP per frame per pass; {rate / 1e9:.0f} GFLOP per CPU "
                     f"second = {rate / peak['fp32']:.0%} of the fp32 matmul peak")
    for key, entry in result.items():
        if key.startswith("exact_"):
            lines.append(f"  EMO step, {key[6:]}: {entry['cpu']:.1f} s = {exact['cpu'] / entry['cpu']:.2f}x faster "
                         "than fp32")
    if "compile_s" in result:
        lines.append(f"  torch.compile of the backbone: {result['compile_s']:.0f} s (wall) before the first step")

    for precision, categories in result.get("profile", {}).items():
        base = result["profile"]["32"]
        lines.append(f"  where the time goes, {precision} (self CPU s; x: fp32 / this): " + ", ".join(
            f"{name} {seconds:.1f}" + (f" ({base[name] / seconds:.2f}x)" if precision != "32" and seconds else "")
            for name, seconds in categories.items()))
    scheduler, num_train = result["scheduler"], result["num_train_timesteps"]
    scheduler.set_timesteps(args.fast_steps)
    fast_precision = args.precisions[0] if args.precisions else "32"
    fast_pass = result.get(f"exact_{fast_precision}", exact)["cpu"]
    default = per_frame(40 * 3, today["cpu"], "32", result, frames)
    options = [("exact shortcuts (reference K/V once, motion rows skipped, speed K/V once, audio and speed "
                "projections folded onto their keys)",
                per_frame(120, exact["cpu"], "32", result, frames)),
               (f"+ {fast_precision} autocast", per_frame(120, fast_pass, fast_precision, result, frames)),
               (f"+ {args.fast_sampler} {args.fast_steps} steps",
                per_frame(args.fast_steps * 3, fast_pass, fast_precision, result, frames))]
    if args.guidance_interval:
        interval = GuidanceInterval(*args.guidance_interval)
        fast_passes = interval.passes(scheduler.timesteps, num_train, 3)
        options.append((f"+ guidance only at noise levels [{interval.low}, {interval.high}] ({fast_passes} passes)",
                        per_frame(fast_passes, fast_pass, fast_precision, result, frames)))
    lines.append(f"  per frame, extrapolated (passes x measured pass + per-clip work, / {frames} frames); "
                 f"default = 40 DDIM steps x 3 branches (audio + reference guidance) = 120 passes: "
                 f"{default:.1f} s CPU per frame")
    for name, seconds in options:
        lines.append(f"    {name}: {seconds:.1f} s per frame = {seconds / default:.2f}x default")
    lines.append(f"fast/default time ratio: {options[-1][1] / default:.2f}")
    lines.append(f"EMO-step/bare-UNet time ratio: before {today['cpu'] / bare['cpu']:.2f}, now "
                 f"{exact['cpu'] / bare['cpu']:.2f} (FLOP ratio before "
                 f"{today['flops']['total'] / bare['flops']['total']:.2f}, now "
                 f"{exact['flops']['total'] / bare['flops']['total']:.2f})")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per configuration after a warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", nargs="*", default=["bf16"], help="autocast precisions to time besides 32")
    parser.add_argument("--channels-last", action="store_true", help="also time the backbone in channels-last")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the backbone")
    parser.add_argument("--profile", action="store_true", help="where a step's time goes, fp32 against autocast")
    parser.add_argument("--fast-sampler", default="unipc")
    parser.add_argument("--fast-steps", type=int, default=12)
    parser.add_argument("--guidance-interval", type=float, nargs=2, metavar=("HIGH", "LOW"),
                        help="also the guidance interval (not in the recommended settings: quality-check it first)")
    args = parser.parse_args(argv)
    print("\n".join(report(measure(args), args)))


if __name__ == "__main__":
    main()
