"""Which parameters train in which stage (EMO §3.3).

Parameter groups:
    backbone       the backbone UNet, except its audio layers
    reference_net  the ReferenceNet
    face_locator   the face locator
    audio          the backbone's audio-attention layers (attn2 + its norm), the audio encoder's head and the
                   audio window's position embedding
    temporal       the temporal blocks, except their speed path
    speed          the speed encoder and the temporal blocks' speed cross-attention

Stage 1 (images) trains backbone, reference_net and face_locator; stage 2 (video) adds temporal and
audio; stage 3 trains only temporal and speed (the audio layers stay frozen on purpose).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

GROUPS = ("backbone", "reference_net", "face_locator", "audio", "temporal", "speed")

STAGE_GROUPS: dict[int, tuple[str, ...]] = {
    1: ("backbone", "reference_net", "face_locator"),
    2: ("backbone", "reference_net", "face_locator", "temporal", "audio"),
    3: ("temporal", "speed"),
}

_AUDIO_LAYER = re.compile(r"transformer_blocks\.\d+\.(attn2|norm2)\.")


def group_of(name: str) -> str | None:
    """The group of an EMO parameter name, or None for parts that never train here (the VAE)."""
    top, _, rest = name.partition(".")
    if top == "backbone":
        return "audio" if _AUDIO_LAYER.search(rest) else "backbone"
    if top == "temporal_blocks":
        return "speed" if rest.partition(".")[2].startswith("speed") else "temporal"
    return {"reference_net": "reference_net", "face_locator": "face_locator", "audio_encoder": "audio",
            "audio_positions": "audio", "speed_encoder": "speed"}.get(top)


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
    counts = dict.fromkeys(GROUPS, 0)
    for name, param in model.named_parameters():
        group = group_of(name)
        train = group in groups and name not in always_frozen
        param.requires_grad_(train)
        if train:
            counts[group] += param.numel()
    return counts
