"""Hallo's denoising path on diffusers' own ``UNet2DConditionModel`` (no forked UNet).

Two UNets of SD's structure: the reference UNet runs once per clip on the source and motion-frame latents and
records its attention bank (:mod:`.reference`); the denoising UNet runs on every frame of every guidance branch,
with frames folded into the batch. Hallo's additions ride on it:

* identity tokens as the cross-attention context of both UNets (SD's text tokens' place);
* the face locator's features added right after ``conv_in`` (a forward hook);
* after each spatial transformer of the cross-attention blocks and the mid block (a forward hook): Hallo's
  region-masked audio-attention, then the motion module over [the bank's motion-frame tokens, frames].

Hallo's plain blocks (``DownBlock``/``UpBlock``) also carry motion modules in its checkpoint, but its inference
path never runs them (its blocks stay in training mode with gradient checkpointing, a path that skips them): they
are held here, under ``plain_motion_modules``, only so that the checkpoint maps one to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from diffusers import UNet2DConditionModel
from einops import rearrange
from torch import Tensor, nn

from emo_lightning.components.backbone.hallo.audio_attention import HalloAudioAttention, region_masks
from emo_lightning.components.backbone.hallo.motion import HalloMotionModule
from emo_lightning.components.backbone.hallo.reference import ReadProcessor, ReadState, RecordProcessor, ReferenceBank


@dataclass
class HalloConditions:
    """One denoiser call's conditions, B guidance branches (Hallo: unconditional, conditional).

    ``context`` (B, tokens, D) identity tokens; ``audio`` (B, F, n, D_audio) audio tokens; ``masks`` per latent
    level (full, face, lip), each (B or 1, h·w); ``face`` (B, C, F, h, w) face-locator features or None;
    ``region_weights`` (3,) pose / face / lip; ``reads_reference`` (B,) whether a branch's self-attention sees the
    reference tokens (Hallo's unconditional branch does not).
    """

    context: Tensor
    audio: Tensor
    masks: list[tuple[Tensor, Tensor, Tensor]]
    face: Tensor | None
    region_weights: Tensor
    reads_reference: Tensor


def key(path: str) -> str:
    return path.replace(".", "__")


def attention_units(unet: UNet2DConditionModel) -> dict[str, tuple[int, int]]:
    """Spatial transformer path → (channels, audio-attention width), for every transformer Hallo follows with
    audio- and motion modules. Hallo sizes each audio-attention by its block's input width."""
    widths = list(unet.config.block_out_channels)
    units: dict[str, tuple[int, int]] = {}
    for i, block in enumerate(unet.down_blocks):
        block_in = widths[max(i - 1, 0)]
        for j in range(len(getattr(block, "attentions", None) or [])):
            units[f"down_blocks.{i}.attentions.{j}"] = (widths[i], block_in if j == 0 else widths[i])
    for j in range(len(unet.mid_block.attentions)):
        units[f"mid_block.attentions.{j}"] = (widths[-1], widths[-1])
    reversed_widths = widths[::-1]
    for i, block in enumerate(unet.up_blocks):
        block_in = reversed_widths[min(i + 1, len(widths) - 1)]
        for j in range(len(getattr(block, "attentions", None) or [])):
            units[f"up_blocks.{i}.attentions.{j}"] = (reversed_widths[i], block_in)
    return units


def plain_units(unet: UNet2DConditionModel) -> dict[str, int]:
    """Resnet path → channels, for the resnets of blocks without attention."""
    units = {}
    for prefix, blocks in (("down_blocks", unet.down_blocks), ("up_blocks", unet.up_blocks)):
        for i, block in enumerate(blocks):
            if not getattr(block, "attentions", None):
                for j, resnet in enumerate(block.resnets):
                    units[f"{prefix}.{i}.resnets.{j}"] = resnet.out_channels
    return units


class HalloDenoiser(nn.Module):
    """Reference UNet + denoising UNet + audio-attentions + motion modules, as Hallo computes them.

    ``bank_dtype``: the precision the reference bank is kept in. Hallo's pipeline copies the bank into its denoising
    UNet as float16 whatever the model's dtype (its ``ReferenceAttentionControl.update`` defaults to it), so the
    reference and motion-frame tokens its denoising UNet reads are float16-rounded; float16 reproduces that, None
    keeps the reference UNet's own precision.
    """

    def __init__(self, unet_config: dict, audio_dim: int, motion_heads: int = 8, motion_layers: int = 1,
                 motion_attentions: int = 2, motion_max_frames: int = 32, motion_norm_groups: int = 32,
                 bank_dtype: torch.dtype | None = torch.float16):
        super().__init__()
        self.bank_dtype = bank_dtype
        self.reference_unet = UNet2DConditionModel.from_config(unet_config)
        # Hallo's reference UNet has no output head: only its attention bank is used
        self.reference_unet.conv_norm_out = None
        self.reference_unet.conv_out = nn.Identity()
        self.denoising_unet = UNet2DConditionModel.from_config(unet_config)
        heads = self.denoising_unet.config.attention_head_dim
        groups = self.denoising_unet.config.norm_num_groups
        units = attention_units(self.denoising_unet)
        self.audio_modules = nn.ModuleDict({
            key(path): HalloAudioAttention(channels, dim, heads, audio_dim, groups)
            for path, (channels, dim) in units.items()})
        motion = {"heads": motion_heads, "layers": motion_layers, "attentions": motion_attentions,
                  "max_frames": motion_max_frames, "norm_groups": motion_norm_groups}
        self.motion_modules = nn.ModuleDict({
            key(path): HalloMotionModule(channels, **motion) for path, (channels, _) in units.items()})
        self.plain_motion_modules = nn.ModuleDict({
            key(path): HalloMotionModule(channels, **motion)
            for path, channels in plain_units(self.denoising_unet).items()})
        self._bank: list[ReferenceBank | None] = [None]
        self._images = [1]
        self._read = ReadState()
        self._conditions: HalloConditions | None = None
        self._install()

    def _install(self) -> None:
        record, read = {}, {}
        for name in self.reference_unet.attn_processors:
            path = name.removesuffix(".processor")
            record[name] = (RecordProcessor(path.removesuffix(".attn1"), self._bank, self._images)
                            if path.endswith("attn1") else self.reference_unet.attn_processors[name])
        for name in self.denoising_unet.attn_processors:
            path = name.removesuffix(".processor")
            read[name] = (ReadProcessor(path.removesuffix(".attn1"), self._read)
                          if path.endswith("attn1") else self.denoising_unet.attn_processors[name])
        self.reference_unet.set_attn_processor(record)
        self.denoising_unet.set_attn_processor(read)
        self.denoising_unet.conv_in.register_forward_hook(self._add_face)
        for path in attention_units(self.denoising_unet):
            self.denoising_unet.get_submodule(path).register_forward_hook(partial(self._after_attention, path))

    @torch.no_grad()
    def reference(self, latents: Tensor, context: Tensor) -> ReferenceBank:
        """Run the reference UNet at timestep 0 on ``latents`` (B, 4, n, h, w): the source image then the motion
        frames, per branch; ``context`` (B, tokens, D). Hallo hands the context to its reference blocks tiled over
        all B·n rows (row r gets branch r mod B's tokens), which is reproduced here."""
        b, _, n = latents.shape[:3]
        bank = ReferenceBank(recording=True, dtype=self.bank_dtype)
        self._bank[0], self._images[0] = bank, n
        try:
            self.reference_unet(rearrange(latents, "b c n h w -> (b n) c h w"), 0,
                                encoder_hidden_states=context.repeat(n, 1, 1), return_dict=False)
        finally:
            self._bank[0] = None
            bank.recording = False
        return bank

    def forward(self, noisy: Tensor, timestep: Tensor | float, bank: ReferenceBank,
                conditions: HalloConditions) -> Tensor:
        """``noisy`` (B, 4, F, h, w) → the model's prediction (B, 4, F, h, w)."""
        b, _, frames = noisy.shape[:3]
        self._read.bank, self._read.frames, self._read.reads_reference = bank, frames, conditions.reads_reference
        self._conditions = conditions
        self._frames, self._branches = frames, b
        self._masks = region_masks(conditions.masks, b, frames)
        try:
            out = self.denoising_unet(rearrange(noisy, "b c f h w -> (b f) c h w"), timestep,
                                      encoder_hidden_states=conditions.context.repeat_interleave(frames, dim=0),
                                      return_dict=False)[0]
        finally:
            self._read.bank, self._conditions = None, None
        return rearrange(out, "(b f) c h w -> b c f h w", b=b)

    def _add_face(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
        face = self._conditions.face if self._conditions is not None else None
        if face is None:
            return None
        return output + rearrange(face.to(output.dtype), "b c f h w -> (b f) c h w")

    def _after_attention(self, path: str, module: nn.Module, args: tuple, output: tuple) -> tuple:
        """Audio-attention, then the motion module over [the bank's motion-frame tokens, frames]."""
        conditions = self._conditions
        if conditions is None:
            return output
        hidden = rearrange(output[0], "(b f) c h w -> b c f h w", b=self._branches)
        h = hidden.shape[-2]
        masks = self._masks[h * hidden.shape[-1]].to(hidden.dtype)
        hidden = self.audio_modules[key(path)](hidden, conditions.audio.to(hidden.dtype), masks,
                                               conditions.region_weights)
        motion = rearrange(self._read.bank.motion_frames(f"{path}.transformer_blocks.0"),
                           "b n (h w) c -> b c n h w", h=h).to(hidden.dtype)
        hidden = self.motion_modules[key(path)](torch.cat([motion, hidden], dim=2))[:, :, motion.shape[2]:]
        return (rearrange(hidden, "b c f h w -> (b f) c h w"), *output[1:])
