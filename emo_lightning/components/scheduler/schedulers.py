"""diffusers' schedulers under short names; every one takes diffusers' own config keywords."""

from __future__ import annotations

from typing import Any

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from emo_lightning.registry import register

register("scheduler", "ddpm")(DDPMScheduler)
register("scheduler", "ddim")(DDIMScheduler)
register("scheduler", "euler")(EulerDiscreteScheduler)


@register("scheduler", "dpmsolver++")
def dpm_solver_pp(**config: Any) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2nd order, multistep): good samples in 20–25 steps."""
    return DPMSolverMultistepScheduler(**{"algorithm_type": "dpmsolver++", "solver_order": 2, **config})
