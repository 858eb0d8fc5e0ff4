"""EMO's backbone on diffusers' ``WanTransformer3DModel`` (Wan2.1's video DiT), after Wan-S2V's recipe.

    reference latent ─► prefix pass (t = 0) ─(each layer's self-attention keys/values, once per video)──┐
    motion latents ──► prefix pass (t = 0) ─(each layer's keys/values and output, once per clip)─────┤
    noisy latents ─► patch embedding ─► Wan blocks: self-attention over [reference, motion, clip] ◄───┤
                                                    text cross-attention (one fixed null token)     │
                                                    feed-forward                                    │
                                        audio-attention per latent frame ◄── audio tokens           │
                                        temporal block (motion frames ◄─────────────────────────────┘, speed)
                     timestep embedding + speed embedding (zero-initialised) ─► every block's modulation
                     audio, per latent frame ─► + that frame's scales and gates (zero-initialised)

The DiT is diffusers' own, unmodified (Wan2.1 weights load as they are): the prefix path is an attention processor
on each block's self-attention, the audio-attention and the temporal block modules run after each block, the rest
this class's loop over diffusers' modules (what ``WanTransformer3DModel.forward`` does, with prefixes, audio and speed;
each block's own forward is :func:`modulated_block`, which takes one modulation per latent frame).

Design decisions:

* The reference and motion frames are prefixes along the frame axis that the clip's tokens attend to in every
  self-attention (in-context, Wan-S2V's way), but they do not attend to the clip: a prefix is encoded by its own
  pass at timestep 0 (clean latents), once per video / clip, and its per-layer keys/values are reused at every
  denoising step (this is the ReferenceNet's job, with the DiT's own weights).
* RoPE frame positions: the clip's latent frames are 0 … F'−1 (as in plain Wan), motion frames −N … −1 (they are
  the frames just before the clip), the reference ``reference_position`` (far from both, so it reads as "who",
  not "what came just before").
* Text: EMO has no prompt. The text cross-attention keeps its pretrained weights and sees one fixed all-zero text
  token (close to Wan's empty, zero-padded prompt); attention over one key is its value, so it costs one
  projection per layer (:class:`NullTextAttention`), and its query/key projections and input norm, on which
  nothing depends then, are frozen. The audio gets its own attention instead of reusing it, so
  that the added path can start at zero and a pretrained DiT starts unchanged.
* Audio: after each block, each latent frame's tokens attend to the audio tokens of the video frames it covers:
  with a causal VAE compressing time k×, latent frame 0 covers video frame 0 and latent frame j ≥ 1 frames
  1 + (j−1)k … jk. Frame 0's tokens are repeated k times (attention over repeated keys equals attention over one
  copy), and a learned position per covered frame tells the k frames apart.
* Audio modulation (``audio_modulation``): each latent frame's audio tokens, averaged, also set the scales and
  gates of every block's modulation for that frame's tokens, through a zero-initialised linear layer per block
  (Wan 2.2 TI2V's per-token modulation, here per latent frame). With one audio token per frame the audio-attention's
  output is the same vector for every token of the frame, which a frozen DiT does not turn into a mouth movement;
  a scale multiplies each token's own normalised features, so the same per-frame signal changes the mouth's tokens
  differently from the rest. No shifts: a shift would again be one vector for every token.
* Temporal blocks: the DiT's self-attention already spans frames, but it is also the layer that draws each frame
  and reads the reference, so it must train in stage 1 (images). To give EMO's stages the same meaning as with
  the UNet, a configured ``temporal_block`` (zero-initialised, AnimateDiff-style: attention along the frame axis
  over [motion frames, clip frames], then speed attention) follows each Wan block on the clip's tokens; its motion
  frames are the motion prefix pass's output at that block. ``temporal_block: null`` places none.
* Speed: ``conditions.speed`` (B, F, speed_dim) averaged over the clip, a zero-initialised linear layer, added
  to the timestep embedding (Wan-S2V's way: it modulates every block); the temporal blocks' speed attention sees it
  per latent frame (averaged over the frames each covers).
* Groups (what EMO's stages train): ``backbone`` the DiT (self-attention included); ``reference_net`` the reference
  prefix's type embedding (the reference path otherwise is the DiT itself); ``audio`` the audio-attention layers,
  their frame positions and the audio modulation; ``temporal`` the temporal blocks (without their speed path)
  and the motion prefix's type embedding; ``speed`` the speed projection and the temporal blocks' speed path.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanTransformerBlock
from einops import rearrange
from torch import Tensor, nn

from emo_lightning.components.backbone.wan.attention import (
    AudioAttention,
    NullTextAttention,
    PrefixSelfAttention,
    SelfAttentionInputs,
    rotary_embedding,
)
from emo_lightning.components.base import Backbone, Conditions, TemporalBlockFactory
from emo_lightning.components.diffusers_models import load_diffusers_model
from emo_lightning.registry import register

# which of a Wan block's six modulation rows (shift, scale, gate of the self-attention; shift, scale, gate of the
# feed-forward) the audio modulation sets
AUDIO_MODULATED = (1, 2, 4, 5)

TINY_WAN = {"patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 16, "text_dim": 16,
            "freq_dim": 32, "ffn_dim": 64, "num_layers": 2, "cross_attn_norm": True, "rope_max_seq_len": 64}


def load_transformer(pretrained: str | None, subfolder: str | None, config: dict[str, Any] | None,
                     latent_channels: int) -> WanTransformer3DModel:
    """From a Wan2.1 hub id / ``-Diffusers`` folder (its ``transformer`` subfolder), or randomly initialised from a
    config dict (whose ``in_channels`` / ``out_channels`` default to the VAE's latent channels)."""
    model = load_diffusers_model(WanTransformer3DModel, "backbone 'wan'", pretrained, subfolder, config,
                                 in_channels=latent_channels, out_channels=latent_channels)
    cfg = model.config
    if cfg.in_channels != latent_channels or cfg.out_channels != latent_channels:
        raise ValueError(f"the Wan transformer takes {cfg.in_channels} latent channels and makes {cfg.out_channels}, "
                         f"but the VAE's latents have {latent_channels}: choose a VAE with {cfg.in_channels} (Wan2.1's "
                         "is vae=wan) or set model.backbone.config.in_channels/out_channels")
    if cfg.patch_size[0] != 1:
        raise ValueError(f"backbone 'wan' needs a temporal patch size of 1, got patch_size {list(cfg.patch_size)}")
    if cfg.added_kv_proj_dim is not None or cfg.image_dim is not None:
        raise ValueError("backbone 'wan' takes text-to-video Wan2.1 weights (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers); "
                         "image-to-video ones carry a CLIP image path it does not use")
    return model


def modulated_block(block: WanTransformerBlock, hidden: Tensor, context: Tensor, modulation: Tensor,
                    inputs: SelfAttentionInputs) -> Tensor:
    """``WanTransformerBlock.forward`` with a modulation per latent frame: ``hidden`` (B, F'·n, dim), ``modulation``
    (B, F' or 1, 6, dim), broadcast over each frame's n tokens (diffusers' per-token form would hold 6 copies of the
    hidden states). The same operations and casts as diffusers' forward."""
    b, length, dim = hidden.shape
    rows = (block.scale_shift_table[None] + modulation.float()).unsqueeze(3)  # (B, F'|1, 6, 1, dim)
    shift, scale, gate, c_shift, c_scale, c_gate = rows.unbind(2)
    frames = modulation.shape[1]

    def per_frame(x: Tensor) -> Tensor:
        return x.reshape(b, frames, -1, dim)

    def tokens(x: Tensor) -> Tensor:
        return x.reshape(b, length, dim)

    x = tokens(per_frame(block.norm1(hidden.float())) * (1 + scale) + shift).type_as(hidden)
    hidden = tokens(per_frame(hidden.float()) + per_frame(block.attn1(x, None, None, inputs)) * gate).type_as(hidden)
    hidden = hidden + block.attn2(block.norm2(hidden.float()).type_as(hidden), context, None, None)
    x = tokens(per_frame(block.norm3(hidden.float())) * (1 + c_scale) + c_shift).type_as(hidden)
    return tokens(per_frame(hidden.float()) + per_frame(block.ffn(x).float()) * c_gate).type_as(hidden)


@register("backbone", "wan", tiny={"config": TINY_WAN})
class WanBackbone(Backbone):
    """Wan2.1's DiT with EMO's reference and motion prefixes, audio-attention and speed (see the module docstring).

    Args:
        latent_channels, temporal_downsample, speed_dim, temporal_block: derived by EMO (see :class:`Backbone`);
            one ``temporal_block(dim, "blocks.<i>")`` follows each Wan block (None: none).
        pretrained: a Wan2.1 text-to-video hub id or local ``-Diffusers`` folder; its ``subfolder`` holds the DiT.
        config: ``WanTransformer3DModel`` arguments for a randomly initialised DiT (instead of ``pretrained``).
        reference_position: the RoPE frame position of the reference latent frame (below −motion frames).
        audio_modulation: also let each latent frame's audio scale and gate the blocks' modulation (see the module
            docstring).

    ``audio_dim`` is the DiT's width (1536 for Wan2.1 1.3B); ``size_multiple`` its spatial patch size.
    """

    def __init__(self, latent_channels: int, temporal_downsample: int = 1, speed_dim: int = 0,
                 temporal_block: TemporalBlockFactory | None = None, pretrained: str | None = None,
                 subfolder: str | None = "transformer", config: dict[str, Any] | None = None,
                 reference_position: int = -32, audio_modulation: bool = True):
        super().__init__()
        self.transformer = load_transformer(pretrained, subfolder, config, latent_channels)
        cfg = self.transformer.config
        dim = cfg.num_attention_heads * cfg.attention_head_dim
        for layer, block in enumerate(self.transformer.blocks):
            block.attn1.set_processor(PrefixSelfAttention(layer))
            block.attn2.set_processor(NullTextAttention())
            # what the null text's attention does not depend on (its queries, keys, input norm): never trained
            for unused in (block.norm2, block.attn2.to_q, block.attn2.to_k, block.attn2.norm_q, block.attn2.norm_k):
                unused.requires_grad_(False)
        self.audio_attention = nn.ModuleList(AudioAttention(dim, cfg.num_attention_heads, cfg.eps)
                                             for _ in self.transformer.blocks)
        self.temporal_blocks = (nn.ModuleList(temporal_block(dim, f"blocks.{i}") for i in range(cfg.num_layers))
                                if temporal_block is not None else None)
        self.audio_modulation = (nn.ModuleList(nn.Linear(dim, len(AUDIO_MODULATED) * dim)
                                               for _ in self.transformer.blocks) if audio_modulation else None)
        for linear in self.audio_modulation or []:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
        self.audio_frame_positions = (nn.Parameter(torch.randn(temporal_downsample, dim))
                                      if temporal_downsample > 1 else None)
        self.speed_embedding = nn.Linear(speed_dim, dim) if speed_dim else None
        if self.speed_embedding is not None:
            nn.init.zeros_(self.speed_embedding.weight)
            nn.init.zeros_(self.speed_embedding.bias)
        self.reference_embedding = nn.Parameter(torch.zeros(dim))
        self.motion_embedding = nn.Parameter(torch.zeros(dim))
        self.register_buffer("null_text", torch.zeros(1, 1, cfg.text_dim), persistent=False)
        self.latent_channels, self.temporal_downsample, self.speed_dim = latent_channels, temporal_downsample, speed_dim
        self.audio_dim = dim
        self.size_multiple = cfg.patch_size[1]
        self.reference_position = reference_position
        self.fsdp_wrap_classes = (WanTransformerBlock,
                                  *sorted({type(b) for b in self.temporal_blocks or []}, key=str))

    def parameter_groups(self) -> dict[str, list[nn.Module | nn.Parameter]]:
        temporal = list(self.temporal_blocks or [])
        groups: dict[str, list[nn.Module | nn.Parameter]] = {
            "backbone": [self.transformer],
            "reference_net": [self.reference_embedding],
            "audio": [self.audio_attention],
            "temporal": [*temporal, self.motion_embedding],
            "speed": [child for block in temporal for name, child in block.named_children()
                      if name.startswith("speed")],
        }
        if self.audio_frame_positions is not None:
            groups["audio"].append(self.audio_frame_positions)
        if self.audio_modulation is not None:
            groups["audio"].append(self.audio_modulation)
        if self.speed_embedding is not None:
            groups["speed"].append(self.speed_embedding)
        return groups

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """diffusers' switch: each Wan block (with its audio-attention) is recomputed in the backward pass."""
        if enabled:
            self.transformer.enable_gradient_checkpointing()
        elif self.transformer.is_gradient_checkpointing:
            self.transformer.disable_gradient_checkpointing()

    # ---- prefixes -------------------------------------------------------------------------------------------
    def reference_features(self, latents: Tensor) -> dict[str, Tensor]:
        """``{"keys", "values"}``: ``(B, layers, L, heads, head_dim)``, the reference frame(s)' self-attention inputs
        at every layer, at RoPE frame position ``reference_position``."""
        positions = torch.arange(latents.shape[2], device=latents.device) + self.reference_position
        keys, values, _ = self._prefix(latents, positions, self.reference_embedding)
        return {"keys": keys, "values": values}

    def motion_features(self, latents: Tensor) -> dict[str, Tensor]:
        """Like :meth:`reference_features` for the N motion latent frames, at frame positions −N … −1, plus
        ``"hidden"`` (B, layers, N, h'·w', dim): each block's output, the temporal blocks' motion frames."""
        n = latents.shape[2]
        if -n <= self.reference_position:
            raise ValueError(f"{n} motion latent frames reach the reference's RoPE position {self.reference_position}:"
                             f" set model.backbone.reference_position below {-n}")
        keys, values, hidden = self._prefix(latents, torch.arange(-n, 0, device=latents.device), self.motion_embedding)
        return {"keys": keys, "values": values, "hidden": hidden.unflatten(2, (n, -1))}

    def _prefix(self, latents: Tensor, positions: Tensor, type_embedding: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self._check_size(latents)
        hidden, inputs = self._tokens(latents, positions)
        inputs.record = []
        outputs: list[Tensor] = []
        timesteps = torch.zeros(latents.shape[0], device=latents.device, dtype=torch.long)
        self._blocks(hidden + type_embedding.to(hidden.dtype), timesteps, inputs, self._grid(latents), outputs=outputs)
        keys, values = zip(*inputs.record, strict=True)
        return torch.stack(keys, 1), torch.stack(values, 1), torch.stack(outputs, 1)

    # ---- denoising ------------------------------------------------------------------------------------------
    def denoise(self, latents: Tensor, timesteps: Tensor, conditions: Conditions, temporal: bool = True) -> Tensor:
        self._check_size(latents)
        b, _, f, h, w = latents.shape
        timesteps = timesteps.to(latents.device).expand(b)
        audio = speed_tokens = speed = None
        if conditions.audio is not None:
            audio = self._per_latent_frame(conditions.audio, f)
            if self.audio_frame_positions is not None:
                audio = audio + self.audio_frame_positions[:, None].to(audio.dtype)
            audio = audio.flatten(2, 3)  # (B, F', k·T, D)
        if conditions.speed is not None:
            speed_tokens = self._per_latent_frame(conditions.speed, f).mean(2)  # (B, F', speed_dim)
            speed = conditions.speed.mean(1) if self.speed_embedding is not None else None
        prefix = [p for p in (conditions.reference, conditions.motion) if p is not None]
        motion = conditions.motion["hidden"] if conditions.motion is not None and temporal else None
        if not temporal:  # independent images: every latent frame is its own sample at frame position 0
            latents = latents.transpose(1, 2).reshape(b * f, -1, 1, h, w)
            timesteps = timesteps.repeat_interleave(f)
            audio = None if audio is None else audio.flatten(0, 1)[:, None]
            speed = None if speed is None else speed.repeat_interleave(f, 0)
            prefix = [{k: v.repeat_interleave(f, 0) for k, v in p.items() if k != "hidden"} for p in prefix]
        hidden, inputs = self._tokens(latents, torch.arange(latents.shape[2], device=latents.device))
        if prefix:
            inputs.prefix_keys = torch.cat([p["keys"] for p in prefix], 2)
            inputs.prefix_values = torch.cat([p["values"] for p in prefix], 2)
            # a prefix zeroed by condition dropout (or the first clip's zero motion) is left out of the attention
            present = inputs.prefix_keys[:, 0].flatten(2).abs().amax(-1) > 0
            inputs.prefix_mask = None if bool(present.all()) else present
        temporal_inputs = (motion, speed_tokens) if temporal and self.temporal_blocks is not None else None
        out = self._blocks(hidden, timesteps, inputs, self._grid(latents), audio, speed, temporal_inputs)
        out = self._unpatchify(out, latents.shape)
        return out if temporal else out.reshape(b, f, -1, h, w).transpose(1, 2)

    def _per_latent_frame(self, rows: Tensor, latent_frames: int) -> Tensor:
        """``(B, F, ...)`` per video frame → ``(B, F', k, ...)``: the k video frames each latent frame covers (frame
        0 repeated k times for latent frame 0; the last frame repeated where a clip ends inside a latent frame)."""
        k, frames = self.temporal_downsample, rows.shape[1]
        covered = 1 + (latent_frames - 1) * k
        if not covered - k < frames <= covered:
            raise ValueError(f"{latent_frames} latent frames cover {max(1, covered - k + 1)} to {covered} video frames,"
                             f" but the audio / speed has {frames} frames")
        last, first = rows[:, -1:], rows[:, :1]
        rows = torch.cat([first.expand(-1, k - 1, *rows.shape[2:]), rows,
                          last.expand(-1, covered - frames, *rows.shape[2:])], 1)
        return rows.unflatten(1, (latent_frames, k))

    # ---- the DiT, on diffusers' modules ---------------------------------------------------------------------
    def _check_size(self, latents: Tensor) -> None:
        if latents.ndim != 5:
            raise ValueError(f"backbone 'wan' takes latents (B, C, F, h, w), got shape {tuple(latents.shape)}")
        if latents.shape[-1] % self.size_multiple or latents.shape[-2] % self.size_multiple:
            raise ValueError(f"latent height and width must be multiples of {self.size_multiple}, got "
                             f"{latents.shape[-2]}x{latents.shape[-1]}")

    def _grid(self, latents: Tensor) -> tuple[int, int, int]:
        """(frames, patch rows, patch columns) of ``latents``' tokens."""
        return latents.shape[2], latents.shape[3] // self.size_multiple, latents.shape[4] // self.size_multiple

    def _tokens(self, latents: Tensor, positions: Tensor) -> tuple[Tensor, SelfAttentionInputs]:
        hidden = self.transformer.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
        cos, sin = rotary_embedding(self.transformer.rope, positions, *self._grid(latents)[1:])
        return hidden, SelfAttentionInputs(cos.to(latents.device), sin.to(latents.device))

    def _blocks(self, hidden: Tensor, timesteps: Tensor, inputs: SelfAttentionInputs, grid: tuple[int, int, int],
                audio: Tensor | None = None, speed: Tensor | None = None,
                temporal: tuple[Tensor | None, Tensor | None] | None = None,
                outputs: list[Tensor] | None = None) -> Tensor:
        """Every Wan block (+ audio-attention, + temporal block) over ``hidden`` (B, frames·n, dim), then the output
        norm; ``temporal``: (motion hidden states (B, layers, N, n, dim) | None, speed tokens (B, F', speed_dim) |
        None) for the temporal blocks; ``outputs`` collects each layer's output."""
        tr = self.transformer
        embedder = tr.condition_embedder
        time = embedder.timesteps_proj(timesteps).to(next(embedder.time_embedder.parameters()).dtype)
        temb = embedder.time_embedder(time).type_as(hidden)
        if speed is not None:
            temb = temb + self.speed_embedding(speed.to(temb.dtype))
        modulation = embedder.time_proj(embedder.act_fn(temb)).unflatten(1, (6, -1))
        context = embedder.text_embedder(self.null_text.to(hidden.dtype))
        checkpointing = torch.is_grad_enabled() and tr.gradient_checkpointing
        for layer, block in enumerate(tr.blocks):
            args = (layer, block, hidden, context, modulation, inputs, grid, audio, temporal)
            hidden = tr._gradient_checkpointing_func(self._layer, *args) if checkpointing else self._layer(*args)
            if outputs is not None:
                outputs.append(hidden)
        shift, scale = (tr.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        return (tr.norm_out(hidden.float()) * (1 + scale) + shift).type_as(hidden)

    def _layer(self, layer: int, block: WanTransformerBlock, hidden: Tensor, context: Tensor, modulation: Tensor,
               inputs: SelfAttentionInputs, grid: tuple[int, int, int], audio: Tensor | None,
               temporal: tuple[Tensor | None, Tensor | None] | None) -> Tensor:
        frames, rows, columns = grid
        modulation = modulation[:, None]  # (B, 1, 6, dim): the same for every latent frame
        if audio is not None and self.audio_modulation is not None:
            modulation = modulation + self._audio_modulation(layer, audio)
        hidden = modulated_block(block, hidden, context, modulation, inputs)
        if audio is not None:
            hidden = hidden + self.audio_attention[layer](hidden.unflatten(1, (frames, -1)), audio).flatten(1, 2)
        if temporal is not None:
            motion, speed = temporal
            if motion is not None:
                motion = rearrange(motion[:, layer], "b n (h w) c -> b c n h w", h=rows).to(hidden.dtype)
            x = rearrange(hidden, "b (f h w) c -> b c f h w", f=frames, h=rows)
            x = self.temporal_blocks[layer](x, motion, speed)
            hidden = rearrange(x, "b c f h w -> b (f h w) c")
        return hidden

    def _audio_modulation(self, layer: int, audio: Tensor) -> Tensor:
        """(B, F', 6, dim): the modulation rows that audio (B, F', A, dim) adds per latent frame (zero where
        :data:`AUDIO_MODULATED` has none)."""
        rows = self.audio_modulation[layer](audio.mean(2)).unflatten(-1, (len(AUDIO_MODULATED), -1))
        out = rows.new_zeros(*rows.shape[:2], 6, rows.shape[-1])
        out[:, :, list(AUDIO_MODULATED)] = rows
        return out

    def _unpatchify(self, hidden: Tensor, shape: torch.Size) -> Tensor:
        b, _, f, h, w = shape
        p = self.size_multiple
        out = self.transformer.proj_out(hidden)
        out = out.reshape(b, f, h // p, w // p, p, p, -1).permute(0, 6, 1, 2, 4, 3, 5)
        return out.reshape(b, -1, f, h, w)
