"""Which parameters train in which stage (EMO §3.3).

Parameter groups, by module (``EMO.parameter_groups``: the backbone's groups plus EMO's own modules):
    backbone       the backbone network, except its audio layers
    reference_net  the ReferenceNet (or whatever the backbone encodes references with apart from the backbone)
    face_locator   the face locator
    audio          the backbone's audio-attention layers, the audio encoder's head and the audio window positions
    temporal       the temporal blocks, except their speed path
    speed          the speed encoder and the temporal blocks' speed path

Stage 1 (images) trains backbone, reference_net and face_locator; stage 2 (video) adds temporal and
audio; stage 3 trains only temporal and speed (the audio layers stay frozen on purpose).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from torch import nn


class Stage(IntEnum):
    """EMO's training stages, by number or name: images (1), video with audio (2), and head speed (3)."""

    IMAGES = 1
    VIDEO = 2
    SPEED = 3

    @classmethod
    def of(cls, value: int | str) -> Stage:
        """The stage ``value`` names: 1, 2, 3 or ``images``, ``video``, ``speed`` (any case)."""
        if isinstance(value, str) and not value.strip().isdigit():
            named = cls.__members__.get(value.strip().upper())
        else:
            named = cls._value2member_map_.get(int(value))
        if named is None:
            raise ValueError(f"stage must be 1 (images), 2 (video) or 3 (speed), got {value!r}")
        return named


GROUPS = ("backbone", "reference_net", "face_locator", "audio", "temporal", "speed")

STAGE_GROUPS: dict[Stage, tuple[str, ...]] = {
    Stage.IMAGES: ("backbone", "reference_net", "face_locator"),
    Stage.VIDEO: ("backbone", "reference_net", "face_locator", "temporal", "audio"),
    Stage.SPEED: ("temporal", "speed"),
}


def parameter_group_names(model: nn.Module) -> dict[str, str | None]:
    """Every parameter name of ``model`` → its group, or None for parts that never train here (the VAE).

    ``model.parameter_groups()`` lists modules (and single parameters) per group; groups may nest, and a parameter
    belongs to the innermost listed module that holds it. Modules added later inside a listed one (LoRA layers)
    belong to its group.
    """
    listed = {id(member): group for group, members in model.parameter_groups().items() for member in members}
    module_groups: dict[str, str | None] = {}
    names: dict[str, str | None] = {}
    for name, module in model.named_modules():
        inherited = module_groups.get(name.rpartition(".")[0]) if name else None
        group = module_groups[name] = listed.get(id(module), inherited)
        for param_name, param in module.named_parameters(recurse=False):
            names[f"{name}.{param_name}" if name else param_name] = listed.get(id(param), group)
    return names


def apply_trainable(model: nn.Module, groups: Iterable[str]) -> dict[str, int]:
    """Set ``requires_grad`` by group; returns trainable parameter counts per group.

    Parameters a component froze itself (a pretrained wav2vec2, the VAE, the ReferenceNet's unused audio
    layers) stay frozen: ``model._always_frozen`` lists them, recorded once at build time.
    """
    groups = set(groups)
    unknown = groups - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown parameter groups {sorted(unknown)}; groups are {', '.join(GROUPS)}")
    always_frozen: set[str] = model._always_frozen
    group_of = parameter_group_names(model)
    counts = dict.fromkeys(GROUPS, 0)
    for name, param in model.named_parameters():
        group = group_of[name]
        train = group in groups and name not in always_frozen
        param.requires_grad_(train)
        if train:
            counts[group] += param.numel()
    return counts
