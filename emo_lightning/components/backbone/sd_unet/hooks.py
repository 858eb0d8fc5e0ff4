"""Where EMO rides on diffusers' UNet: processor installation and the temporal-block hooks.

Temporal blocks follow every resolution unit of the backbone (each attention of a cross-attention block,
each resnet of a plain block, and the mid block), as AnimateDiff's motion modules do. They are applied by
forward hooks, so the UNet's module tree and state-dict keys stay exactly SD's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import UNet2DConditionModel
from einops import rearrange
from torch import Tensor, nn

from emo_lightning.components.backbone.sd_unet.attention import (
    AudioAttnProcessor,
    CaptureReferenceProcessor,
    DisabledProcessor,
    ReferenceAttnProcessor,
)
from emo_lightning.components.backbone.sd_unet.state import UNetState, checkpoint


def temporal_locations(unet: UNet2DConditionModel) -> dict[str, int]:
    """UNet module path → channel width, for every place a temporal block follows."""
    locations: dict[str, int] = {}
    for prefix, blocks in (("down_blocks", unet.down_blocks), ("up_blocks", unet.up_blocks)):
        for i, block in enumerate(blocks):
            attentions = getattr(block, "attentions", None)
            units, kind = (attentions, "attentions") if attentions else (block.resnets, "resnets")
            for j, unit in enumerate(units):
                locations[f"{prefix}.{i}.{kind}.{j}"] = unit.out_channels
    if unet.mid_block is not None:
        locations["mid_block"] = unet.mid_block.resnets[-1].out_channels
    return locations


def block_key(location: str) -> str:
    """``nn.ModuleDict`` keys may not contain dots."""
    return location.replace(".", "__")


def _split(output: Tensor | tuple) -> tuple[Tensor, Callable[[Tensor], Tensor | tuple]]:
    if isinstance(output, tuple):
        return output[0], lambda hidden: (hidden, *output[1:])
    return output, lambda hidden: hidden


class TemporalHook:
    """Applies a temporal block to a backbone unit's output (a class, not a closure: deep-copyable)."""

    def __init__(self, location: str, block: nn.Module, state: UNetState):
        self.location, self.block, self.state = location, block, state

    def __call__(self, module: nn.Module, args: tuple, output: Tensor | tuple) -> Tensor | tuple | None:
        if not self.state.temporal:
            return None
        hidden, rebuild = _split(output)
        video = rearrange(hidden, "(b f) c h w -> b c f h w", f=self.state.num_frames)
        motion = self.state.motion.get(self.location) if self.state.motion else None
        if self.state.gradient_checkpointing and torch.is_grad_enabled():
            video = checkpoint(self.state, self.block, video, motion, self.state.speed)
        else:
            video = self.block(video, motion, self.state.speed)
        return rebuild(rearrange(video, "b c f h w -> (b f) c h w"))


class MotionCaptureHook:
    """Records a ReferenceNet unit's output during a motion-frame pass."""

    def __init__(self, location: str, state: UNetState):
        self.location, self.state = location, state

    def __call__(self, module: nn.Module, args: tuple, output: Tensor | tuple) -> None:
        if self.state.capture == "motion":
            self.state.captured[self.location] = _split(output)[0]


def install_backbone(unet: UNet2DConditionModel, blocks: nn.ModuleDict, state: UNetState) -> None:
    """Reference-attention on attn1, audio-attention on attn2, temporal blocks after each unit.

    Audio-attention is a new layer in EMO (SD's attn2 was text cross-attention), so its output projection
    starts at zero: switching it on at stage 2 leaves a trained stage-1 backbone's output unchanged, as the
    zero-initialised temporal blocks do. A checkpoint loaded afterwards restores trained weights.
    """
    processors = {}
    for key in unet.attn_processors:
        name = key.removesuffix(".processor")
        cls = ReferenceAttnProcessor if name.endswith("attn1") else AudioAttnProcessor
        processors[key] = cls(name, state)
        if cls is AudioAttnProcessor:
            out = unet.get_submodule(name).to_out[0]
            nn.init.zeros_(out.weight)
            if out.bias is not None:
                nn.init.zeros_(out.bias)
    unet.set_attn_processor(processors)

    for location in temporal_locations(unet):
        unet.get_submodule(location).register_forward_hook(
            TemporalHook(location, blocks[block_key(location)], state))


def install_reference_net(unet: UNet2DConditionModel, state: UNetState) -> None:
    """attn1 records reference tokens, attn2 is off, unit outputs are recorded as motion features."""
    processors = {}
    for key in unet.attn_processors:
        name = key.removesuffix(".processor")
        processors[key] = CaptureReferenceProcessor(name, state) if name.endswith("attn1") else DisabledProcessor()
    unet.set_attn_processor(processors)

    for location in temporal_locations(unet):
        unet.get_submodule(location).register_forward_hook(MotionCaptureHook(location, state))
    # never used by the ReferenceNet: keep them out of the optimiser (and out of DDP's unused set)
    for name, param in unet.named_parameters():
        if ".attn2." in name or name.startswith(("conv_norm_out", "conv_out")) or \
                (".transformer_blocks." in name and ".norm2." in name):
            param.requires_grad_(False)
