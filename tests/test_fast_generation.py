"""Fast generation: the shortcuts that must not change a single output (features projected once, motion-frame rows
skipped) and the sampler options that trade exactness for speed."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange
from torch import nn

from emo_lightning.components.backbone.sd_unet.attention import AudioAttnProcessor, ReferenceAttnProcessor
from emo_lightning.components.backbone.sd_unet.state import UNetState
from emo_lightning.components.few_key_attention import folds
from emo_lightning.components.temporal_block.animatediff import AnimateDiffTemporalBlock
from emo_lightning.pipeline import GenerationSettings


def _randomise(module: nn.Module) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.2)


def _full_temporal(block: AnimateDiffTemporalBlock, x: torch.Tensor, motion: torch.Tensor,
                   speed: torch.Tensor) -> torch.Tensor:
    """Every frame through diffusers' AnimateDiff transformer, speed keys and values at every position."""
    b, _, f, h, w = x.shape
    frames = torch.cat([motion, x], 2)
    out = block.motion(rearrange(frames, "b c f h w -> (b f) c h w"), num_frames=frames.shape[2])
    out = rearrange(out, "(b f) c h w -> b c f h w", b=b)[:, :, -f:]
    tokens = rearrange(out, "b c f h w -> (b h w) f c")
    context = speed.repeat_interleave(h * w, 0)
    tokens = tokens + block.speed_attn(block.speed_norm(tokens), encoder_hidden_states=context)
    return rearrange(tokens, "(b h w) f c -> b c f h w", b=b, h=h, w=w)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_temporal_block_skips_motion_rows_exactly(num_layers: int) -> None:
    block = AnimateDiffTemporalBlock(16, 8, num_attention_heads=2, norm_num_groups=4, speed_heads=2,
                                     num_layers=num_layers).eval()
    _randomise(block)
    x, motion, speed = torch.randn(2, 16, 3, 4, 5), torch.randn(2, 16, 2, 4, 5), torch.randn(2, 3, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x, motion, speed), _full_temporal(block, x, motion, speed))


def test_reference_attention_projects_the_reference_once_per_video() -> None:
    torch.manual_seed(0)
    attn = Attention(16, heads=2, dim_head=8).eval()
    state = UNetState()
    processor = ReferenceAttnProcessor("attn1", state)
    hidden, reference = torch.randn(6, 10, 16), torch.randn(2, 7, 16)  # 2 videos of 3 frames
    expected = AttnProcessor2_0()(attn, hidden, torch.cat([hidden, reference.repeat_interleave(3, 0)], 1))
    with torch.no_grad(), state.use(reference={"attn1": reference}):
        torch.testing.assert_close(processor(attn, hidden), expected)
        cached = processor._cache[2]
        processor(attn, hidden + 1)
        assert processor._cache[2] is cached  # the next step reuses the projection
        attn.to_k.weight.mul_(2)  # new weights (a training step, a loaded checkpoint): projected again
        processor(attn, hidden)
        assert processor._cache[2] is not cached
    with state.use(reference={"attn1": reference.requires_grad_()}):
        processor(attn, hidden).sum().backward()
    assert reference.grad is not None and reference.grad.abs().sum() > 0


@pytest.mark.parametrize("num_keys", [1, 5, 40])
def test_audio_attention_folds_its_projections_onto_a_few_keys(num_keys: int) -> None:
    """With heads × keys under the layer's width the audio-attention folds its query and output projections onto
    the keys (40 keys do not fold): the output and every gradient equal diffusers' attention, up to rounding."""
    torch.manual_seed(0)
    attn = Attention(32, cross_attention_dim=12, heads=4, dim_head=8, out_bias=True)
    _randomise(attn)
    state = UNetState()
    hidden, audio = torch.randn(6, 20, 32, requires_grad=True), torch.randn(6, num_keys, 12, requires_grad=True)
    assert folds(attn, num_keys) == (num_keys < 8)
    expected = AttnProcessor2_0()(attn, hidden, audio)
    grads = torch.autograd.grad(expected.square().sum(), [hidden, audio, *attn.parameters()])
    with state.use(audio=True):
        out = AudioAttnProcessor("attn2", state)(attn, hidden, audio)
    torch.testing.assert_close(out, expected)
    for ours, theirs in zip(torch.autograd.grad(out.square().sum(), [hidden, audio, *attn.parameters()]), grads,
                            strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)  # gradients up to ~10, rounded otherwise


def _video(module, **controls) -> torch.Tensor:
    audio = torch.randn(1, 8000, generator=torch.Generator().manual_seed(9)) * 0.1
    return module.pipeline()(torch.zeros(1, 3, 32, 32), audio, torch.ones(1, 1, 32, 32), total_frames=8, steps=4,
                             **controls)


@pytest.mark.slow
def test_guidance_interval_and_step_cache_in_the_pipeline() -> None:
    from conftest import tiny_module

    from emo_lightning.pipeline.fast_sampling import GuidanceInterval

    module = tiny_module().eval()
    _randomise(module.model.backbone.temporal_blocks)
    counts = {"backbone": 0}
    module.model.backbone.unet.register_forward_hook(lambda *args: counts.update(backbone=counts["backbone"] + 1))
    conditional = _video(module)  # guidance 1/1: the fully conditioned branch alone
    # guidance outside every step's noise level: the same single branch, with audio guidance 3 set
    torch.testing.assert_close(_video(module, guidance_audio=3.0, guidance_max_noise=0.0), conditional)
    guided = _video(module, guidance_audio=3.0)
    assert not torch.allclose(guided, conditional)
    counts["backbone"] = 0
    half = _video(module, guidance_audio=3.0, guidance_min_noise=0.5)
    scheduler = module.pipeline().scheduler
    scheduler.set_timesteps(4)
    assert counts["backbone"] == 4  # one forward per step, batched branches only where guided
    assert GuidanceInterval(1.0, 0.5).passes(scheduler.timesteps, 1000, 2) == 2 * 2 + 2
    assert not torch.equal(half, guided) and not torch.equal(half, conditional)

    counts["backbone"] = 0
    cached = _video(module, cache_threshold=100.0)  # every step after the first reuses the first prediction
    assert counts["backbone"] == 1 and not torch.allclose(cached, conditional)


@pytest.mark.slow
def test_precision_and_a_sampler_named_in_the_model_config() -> None:
    from conftest import tiny_module

    module = tiny_module().eval()
    full, bf16 = _video(module), _video(module, precision="bf16")
    assert bf16.dtype == torch.float32 and (bf16 - full).abs().mean() < 0.05
    unipc = tiny_module("+model.generation.sampler=unipc").pipeline()
    assert type(unipc.scheduler).__name__ == "UniPCMultistepScheduler" and unipc.settings.sampler == "unipc"


def test_generation_settings_controls() -> None:
    settings = GenerationSettings.from_hparams({"generation": {"sampler": "unipc", "precision": "bf16",
                                                               "compile": "false", "guidance_min_noise": 0.5}})
    assert (settings.sampler, settings.precision, settings.compile, settings.guidance_min_noise) == \
        ("unipc", "bf16", False, 0.5)
    assert settings.override(channels_last="yes").channels_last is True
    with pytest.raises(ValueError, match="precision"):
        settings.override(precision="int8")
    with pytest.raises(ValueError, match="guidance interval"):
        settings.override(guidance_min_noise=0.9, guidance_max_noise=0.2)
    with pytest.raises(ValueError, match="true or false"):
        settings.override(compile="maybe")
