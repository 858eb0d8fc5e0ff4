"""LoRA adapters on chosen parameter groups (:mod:`emo_lightning.model.stages`), through peft's own injection.

``model.lora={targets: [audio, temporal], rank: 4}`` wraps every ``nn.Linear`` of those groups in a peft LoRA
layer (``base_layer`` + ``lora_A`` / ``lora_B``); only the adapters train, and checkpoints hold only them (plus the
config), so an adapter is a few megabytes beside a base model of gigabytes. ``weights`` names an adapter checkpoint
to apply (``emo predict ckpt_path=<base> lora=<adapter>``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from emo_lightning.model.stages import GROUPS, STAGE_GROUPS, Stage, parameter_group_names

LORA_KEYS = ("targets", "rank", "alpha", "dropout", "weights")


def is_lora_key(key: str) -> bool:
    """Whether a state-dict key is an adapter weight."""
    return ".lora_" in key


def check_spec(spec: dict[str, Any], default_targets: Iterable[str]) -> dict[str, Any]:
    """``spec`` with its defaults (targets: the stage's trainable groups; alpha: rank; dropout: 0), validated."""
    if not isinstance(spec, dict):
        raise ValueError(f"model.lora must be a mapping like {{targets: [audio, temporal], rank: 4}}, got {spec!r}")
    unknown = set(spec) - set(LORA_KEYS)
    if unknown:
        raise ValueError(f"model.lora: unknown keys {sorted(unknown)}; keys are {', '.join(LORA_KEYS)}")
    spec = {"targets": list(default_targets), "rank": 8, "alpha": None, "dropout": 0.0, "weights": None, **spec}
    bad = set(spec["targets"]) - set(GROUPS)
    if bad or not spec["targets"]:
        raise ValueError(f"model.lora.targets {spec['targets']}: choose among the parameter groups {', '.join(GROUPS)}")
    if not isinstance(spec["rank"], int) or spec["rank"] < 1:
        raise ValueError(f"model.lora.rank must be a positive integer, got {spec['rank']!r}")
    return spec


def lora_spec(hparams: dict[str, Any]) -> dict[str, Any] | None:
    """The validated ``lora`` spec of a model's hyper-parameters (targets default to the run's trainable groups), or
    None for a model without adapters."""
    if not hparams.get("lora"):
        return None
    return check_spec(hparams["lora"], hparams.get("trainable") or STAGE_GROUPS[Stage.of(hparams.get("stage", 2))])


def target_modules(model: nn.Module, groups: Iterable[str]) -> list[str]:
    """Names of the ``nn.Linear`` layers of ``groups`` whose weights may train (not a frozen pretrained encoder)."""
    groups, always_frozen, group_of = set(groups), model._always_frozen, parameter_group_names(model)
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and group_of[f"{name}.weight"] in groups
            and f"{name}.weight" not in always_frozen]


def add_lora(model: nn.Module, spec: dict[str, Any]) -> dict[str, int]:
    """Wrap ``spec['targets']``' linear layers in LoRA adapters and train only those; returns adapter parameter
    counts per group."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = target_modules(model, spec["targets"])
    if not targets:
        raise ValueError(f"model.lora.targets {spec['targets']} hold no linear layer that can train")
    config = LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"] or spec["rank"], lora_dropout=spec["dropout"],
                        target_modules=targets)
    inject_adapter_in_model(config, model)
    for name in targets:  # diffusers calls some layers as layer(input=x); peft's LoRA layer takes x positionally
        model.get_submodule(name).register_forward_pre_hook(_input_positional, with_kwargs=True)
    counts, group_of = dict.fromkeys(GROUPS, 0), parameter_group_names(model)
    for name, param in model.named_parameters():
        param.requires_grad_(is_lora_key(name))
        if is_lora_key(name):
            counts[group_of[name]] += param.numel()
    return counts


def _input_positional(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    if args or "input" not in kwargs:
        return None
    kwargs = dict(kwargs)
    return (kwargs.pop("input"),), kwargs


def base_keys_to_wrapped(state_dict: dict[str, Any], expected: Iterable[str]) -> dict[str, Any]:
    """A state dict of the model without adapters, renamed to the adapted model's keys (``x.weight`` of a wrapped
    layer is ``x.base_layer.weight`` there)."""
    wrapped = {k.replace(".base_layer.", "."): k for k in expected if ".base_layer." in k}
    return {wrapped.get(k, k): v for k, v in state_dict.items()}
