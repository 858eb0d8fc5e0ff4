"""diffusers' schedulers under short names; every one takes diffusers' own config keywords."""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from emo_lightning.registry import register

register("scheduler", "ddpm")(DDPMScheduler)
register("scheduler", "euler")(EulerDiscreteScheduler)


@register("scheduler", "ddim")
def ddim(**config: Any) -> DDIMScheduler:
    """DDIM (the paper's sampler, 40 steps), without clipping the predicted sample: latents are not in [-1, 1]."""
    return DDIMScheduler(**{"clip_sample": False, **config})


@register("scheduler", "dpmsolver++")
def dpm_solver_pp(**config: Any) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2nd order, multistep): good samples in 20–25 steps."""
    return DPMSolverMultistepScheduler(**{"algorithm_type": "dpmsolver++", "solver_order": 2, **config})


@register("scheduler", "unipc")
def unipc(**config: Any) -> UniPCMultistepScheduler:
    """UniPC (multistep predictor-corrector, order 2): few-step sampling, 10–20 steps."""
    return UniPCMultistepScheduler(**{"solver_order": 2, **config})
