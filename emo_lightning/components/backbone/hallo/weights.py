"""Hallo's ``net.pth`` keys → the state dict of :class:`HalloBackbone` modules; every tensor accounted for."""

from __future__ import annotations

import re

from torch import Tensor, nn

# net.pth prefix → our module prefix; ``audioproj.`` belongs to the audio encoder (hallo_wav2vec2), not here
PREFIXES = {"reference_unet.": "denoiser.reference_unet.", "face_locator.": "face_locator.",
            "imageproj.": "identity.", "denoising_unet.": "denoiser.denoising_unet."}
_ADDITION = re.compile(r"denoising_unet\.((?:down|up)_blocks\.\d+|mid_block)\.(audio|motion)_modules\.(\d+)\.(.*)")
_POSITIONS = re.compile(r"(transformer_blocks\.\d+)\.attention_blocks\.(\d+)\.pos_encoder\.pe")


def _addition_key(block: str, kind: str, index: str, rest: str, model_keys: set[str]) -> str:
    """A motion or audio module of Hallo's block → the module that follows the matching diffusers unit."""
    if kind == "motion":
        rest = _POSITIONS.sub(r"\1.positions_\2", rest.removeprefix("temporal_transformer."))
    attention = f"{block}.attentions.{index}".replace(".", "__")
    ours = f"denoiser.{kind}_modules.{attention}.{rest}"
    if ours in model_keys or kind == "audio":
        return ours
    plain = f"{block}.resnets.{index}".replace(".", "__")
    return f"denoiser.plain_motion_modules.{plain}.{rest}"


def map_hallo_weights(net: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename Hallo's tensors (all but ``audioproj.*``) to ``model``'s keys; raise naming every tensor of Hallo's
    left without a place and every tensor of ``model`` left without a value, or any shape that differs."""
    expected = model.state_dict()
    model_keys = set(expected)
    mapped: dict[str, Tensor] = {}
    leftover = []
    for name, tensor in net.items():
        if name.startswith("audioproj."):
            continue
        addition = _ADDITION.fullmatch(name)
        if addition:
            ours = _addition_key(*addition.groups(), model_keys)
        else:
            prefix = next((p for p in PREFIXES if name.startswith(p)), None)
            ours = PREFIXES[prefix] + name[len(prefix):] if prefix else None
        if ours is None or ours not in model_keys:
            leftover.append(name)
            continue
        if tuple(tensor.shape) != tuple(expected[ours].shape):
            raise ValueError(f"Hallo's {name} has shape {tuple(tensor.shape)}, ours ({ours}) "
                             f"{tuple(expected[ours].shape)}: the model was built with other sizes")
        mapped[ours] = tensor
    missing = sorted(model_keys - set(mapped))
    if leftover or missing:
        raise ValueError(f"Hallo's checkpoint does not map one to one: {len(leftover)} of its tensors have no place "
                         f"({', '.join(leftover)}); {len(missing)} of ours have no value ({', '.join(missing)})")
    return mapped
