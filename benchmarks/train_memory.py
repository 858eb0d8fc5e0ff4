"""Peak memory and step time of one paper-size EMO training step (stage 2) on the CPU, with and without gradient
checkpointing and bf16 autocast, at two resolutions; extrapolated to the paper's 512².

    python benchmarks/train_memory.py [--resolutions 32 48] [--configs off-fp32,on-fp32,on-bf16] [--threads 2]

The model has the paper's structure with random weights, built offline from configs: SD 1.5 UNets (backbone and
ReferenceNet, 860 M parameters each), AnimateDiff-structured temporal blocks at all 21 places, wav2vec2-base and
the SD VAE (2.43 B parameters). The step is stage 2's (backbone, ReferenceNet, face locator, temporal and audio
layers train: 2.14 B parameters; 12 frames + 4 motion frames, batch 1) on VAE latents computed beforehand, as
`emo preprocess cache_vae=…` stores them; the waveform goes through the frozen wav2vec2 in the step. bf16 is
autocast as Lightning's ``bf16-mixed`` does it (fp32 master weights, no cast cache).

Each configuration runs in a fresh process, which builds the model and measures its first step. Memory is the resident
set: ``setup`` once the model and batch are ready (freed heap returned with malloc_trim), ``peak`` the high-water mark
during the step (Linux's VmHWM, reset before the step through /proc/self/clear_refs), ``step`` their difference:
activations plus gradients in flight. To fit 2.4 B fp32 parameters in this machine's memory, each gradient is dropped as
soon as it is complete (a post-accumulate hook) and no optimiser step runs: the gradients (4 bytes per trainable
parameter) and AdamW's moments (8 bytes) do not depend on resolution, checkpointing or autocast and are added by count
in the extrapolation. That is an upper bound: the step memory already holds some gradients, as the ReferenceNet runs
twice (reference, then motion frames) and its weights' gradients wait for both passes before they are complete (4 bytes
per ReferenceNet weight, at any resolution). Time is the step's wall clock and its CPU time (user + system, less
sensitive to other processes on a shared machine; ratios use it). Step memory and time are fitted as ``a + b·pixels``
through the two resolutions: torch's memory-efficient attention keeps memory linear in the tokens, but the attention's
compute is quadratic, so the time at 512² is a lower bound. bf16 without checkpointing keeps a bf16 copy of every weight
for the backward pass (+2 bytes per parameter, ~4.3 GB here): add ``off-bf16`` to ``--configs`` on a machine with ~20 GB
free.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
PAPER_RESOLUTION = 512

SD15_UNET = {"sample_size": 64, "cross_attention_dim": 768}  # diffusers' defaults are SD 1.5's structure otherwise
SD15_VAE = {"block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4, "latent_channels": 4, "layers_per_block": 2,
            "sample_size": 512}
PAPER_COMPONENTS = {
    "backbone": {"name": "sd_unet", "config": SD15_UNET},
    "vae": {"name": "sd", "config": SD15_VAE, "scaling_factor": 0.18215},
    "audio_encoder": {"name": "wav2vec2", "config": {}, "layers": None, "window": 2},  # {}: wav2vec2-base
    "temporal_block": {"name": "animatediff", "num_attention_heads": 8, "norm_num_groups": 32, "max_seq_length": 32},
}
CONFIGS = [(False, "fp32"), (True, "fp32"), (False, "bf16"), (True, "bf16")]  # (checkpointing, autocast)
DEFAULT_CONFIGS = "off-fp32,on-fp32,on-bf16"


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e9


def peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


def reset_peak_rss() -> None:
    """Return freed heap to the system, then reset VmHWM to the current RSS (Linux ≥ 4.0)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(checkpointing: bool) -> Any:
    from emo_lightning.config import compose_config
    from emo_lightning.training import EMOLightningModule

    model = compose_config("fit", ["experiment=stage2"])["model"]
    model.update(PAPER_COMPONENTS, gradient_checkpointing=checkpointing)
    torch.manual_seed(0)
    return EMOLightningModule(**model).train()


def batch_at(module: Any, resolution: int) -> dict[str, torch.Tensor]:
    """A stage-2 batch (12 + 4 frames) with its VAE latents computed beforehand."""
    from torch.utils.data import default_collate

    from emo_lightning.data import SyntheticTalkingFaces

    hp = module.hparams
    data = SyntheticTalkingFaces(1, stage=2, resolution=resolution, num_frames=hp.num_frames,
                                 motion_frames=hp.motion_frames, seed=0)
    batch = default_collate([data[0]])
    with torch.no_grad():
        for key in ("reference", "motion", "frames"):
            batch[f"{key}_latents"] = module._latents(batch, key)
    return batch


def measure(resolution: int, checkpointing: bool, precision: str) -> dict[str, Any]:
    """One configuration, in this (fresh) process."""
    start = time.perf_counter()
    module = build(checkpointing)
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:  # drop each gradient once complete: see the module docstring
        p.register_post_accumulate_grad_hook(lambda param: setattr(param, "grad", None))
    batch = batch_at(module, resolution)
    build_s = time.perf_counter() - start

    reset_peak_rss()
    setup = rss_gb()
    torch.manual_seed(0)
    began, began_cpu = time.perf_counter(), cpu_seconds()
    with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16", cache_enabled=False):
        loss = module.diffusion_loss(batch, training=True)
    loss.backward()
    step_s, step_cpu_s = time.perf_counter() - began, cpu_seconds() - began_cpu
    peak = peak_rss_gb()
    return {"resolution": resolution, "checkpointing": checkpointing, "precision": precision,
            "parameters": sum(p.numel() for p in module.parameters()), "trainable": sum(p.numel() for p in trainable),
            "setup_gb": setup, "peak_gb": peak, "step_gb": peak - setup, "step_s": step_s, "step_cpu_s": step_cpu_s,
            "build_s": build_s, "loss": loss.item()}


def fit_linear(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """``(a, b)`` of ``y = a + b·x`` through two points."""
    (x0, x1), (y0, y1) = xs, ys
    slope = (y1 - y0) / (x1 - x0)
    return y0 - slope * x0, slope


def _name(checkpointing: bool, precision: str) -> str:
    return f"{'on' if checkpointing else 'off'}-{precision}"


def report(results: list[dict[str, Any]], resolutions: list[int]) -> str:
    """Markdown tables: measured runs with ratios to the fp32 run without checkpointing at the same resolution, then
    the extrapolation to 512²."""
    base = {r: next(x for x in results if x["resolution"] == r and _name(x["checkpointing"], x["precision"])
                    == "off-fp32") for r in resolutions}
    lines = ["| resolution | checkpointing | autocast | setup GB | peak GB | step GB | step s (wall) | step CPU s | "
             "peak × | step memory × | CPU time × |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in results:
        b = base[x["resolution"]]
        lines.append(f"| {x['resolution']}² | {'on' if x['checkpointing'] else 'off'} | {x['precision']} | "
                     f"{x['setup_gb']:.2f} | {x['peak_gb']:.2f} | {x['step_gb']:.2f} | {x['step_s']:.0f} | "
                     f"{x['step_cpu_s']:.0f} | {x['peak_gb'] / b['peak_gb']:.2f} | {x['step_gb'] / b['step_gb']:.2f} | "
                     f"{x['step_cpu_s'] / b['step_cpu_s']:.2f} |")
    params, trainable = results[0]["parameters"], results[0]["trainable"]
    static = {"weights": 4 * params / 1e9, "gradients": 4 * trainable / 1e9, "AdamW moments": 8 * trainable / 1e9}
    pixels = [r * r for r in resolutions]
    lines += ["", f"{params / 1e9:.2f} B parameters, {trainable / 1e9:.2f} B trainable in stage 2. Memory that does "
              "not depend on resolution (fp32): " + ", ".join(f"{k} {v:.1f} GB" for k, v in static.items())
              + f" = {sum(static.values()):.1f} GB.", "",
              f"Extrapolated to {PAPER_RESOLUTION}² (step memory and CPU time fitted as a + b·pixels through "
              f"{' and '.join(f'{r}²' for r in resolutions)}; peak = static + step memory, an upper bound; time a "
              "lower bound):", "",
              "| checkpointing | autocast | step GB | peak GB | step CPU s (≥) | step memory × | CPU time × |",
              "|---|---|---|---|---|---|---|"]
    extrapolated = {}
    for checkpointing, precision in CONFIGS:
        runs = [x for r in resolutions for x in results
                if x["resolution"] == r and (x["checkpointing"], x["precision"]) == (checkpointing, precision)]
        if len(runs) == len(resolutions):
            memory = fit_linear(pixels, [x["step_gb"] for x in runs])
            seconds = fit_linear(pixels, [x["step_cpu_s"] for x in runs])
            # a fit that does not grow with the resolution measured noise, not the scaling: no extrapolation
            extrapolated[checkpointing, precision] = [a + b * PAPER_RESOLUTION ** 2 if b > 0 else None
                                                      for a, b in (memory, seconds)]
    base_gb, base_s = extrapolated[False, "fp32"]
    for (checkpointing, precision), (gb, sec) in extrapolated.items():
        lines.append(f"| {'on' if checkpointing else 'off'} | {precision} | {_value(gb, '.1f')} | "
                     f"{_value(gb and gb + sum(static.values()), '.1f')} | {_value(sec, '.0f')} | "
                     f"{_value(gb and base_gb and gb / base_gb, '.2f')} | "
                     f"{_value(sec and base_s and sec / base_s, '.2f')} |")
    return "\n".join(lines)


def _value(x: float | None, spec: str) -> str:
    return "n/a (no growth measured)" if x is None else format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=int, nargs=2, default=[32, 48])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help=f"comma-separated, of {', '.join(_name(*c) for c in CONFIGS)}; must hold off-fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one configuration in this process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(**json.loads(args.one))), flush=True)
        return
    chosen = [c for c in CONFIGS if _name(*c) in args.configs.split(",")]
    if (False, "fp32") not in chosen:
        parser.error("--configs must hold the baseline off-fp32")
    results, started = [], time.perf_counter()
    for resolution in args.resolutions:
        for checkpointing, precision in chosen:
            one = json.dumps({"resolution": resolution, "checkpointing": checkpointing, "precision": precision})
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--one", one],
                                 capture_output=True, text=True, cwd=REPO, check=False)
            if out.returncode:
                sys.exit(f"configuration {one} failed:\n{out.stderr[-3000:]}")
            x = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(x)
            print(f"{resolution}² {_name(checkpointing, precision)}: peak {x['peak_gb']:.2f} GB, step "
                  f"{x['step_gb']:.2f} GB, {x['step_s']:.0f} s wall / {x['step_cpu_s']:.0f} s CPU, "
                  f"loss {x['loss']:.4f} (build {x['build_s']:.0f} s)", flush=True)
    print()
    print(report(results, args.resolutions))
    print(f"\ntotal {time.perf_counter() - started:.0f} s, {args.threads} threads")


if __name__ == "__main__":
    main()
