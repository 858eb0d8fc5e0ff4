"""The Wan2.1 backbone and VAE: frame arithmetic, weight loading, and what the added paths may and may not change."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from emo_lightning import registry
from emo_lightning.components.backbone.wan.attention import rotary_embedding
from emo_lightning.components.backbone.wan.backbone import TINY_WAN, WanBackbone
from emo_lightning.components.base import Conditions
from emo_lightning.components.vae.wan import TINY_WAN_VAE, WanVAE

C = 12  # latent channels of the tiny backbone here (vae=pixel's)


def temporal_block(channels: int, location: str) -> torch.nn.Module:
    tiny = registry.entry("temporal_block", "animatediff").tiny_config()
    return registry.build("temporal_block", "animatediff", **tiny, channels=channels, speed_dim=8, location=location)


def backbone(**kwargs) -> WanBackbone:
    torch.manual_seed(0)
    args = {"latent_channels": C, "temporal_downsample": 4, "speed_dim": 8, "temporal_block": temporal_block,
            "config": TINY_WAN, **kwargs}
    return WanBackbone(**args)


def randomise_added_paths(model: WanBackbone) -> None:
    """Give the zero-initialised audio, speed and prefix-type paths weights, so their effect shows."""
    with torch.no_grad():
        for module in (*model.audio_attention, *(model.audio_modulation or []), *(model.temporal_blocks or []),
                       model.speed_embedding):
            for name, param in module.named_parameters():
                if "norm" not in name:
                    param.normal_(0, 0.3)
        model.reference_embedding.normal_()
        model.motion_embedding.normal_()


@pytest.fixture(scope="module")
def vae() -> WanVAE:
    torch.manual_seed(0)
    return WanVAE(config=TINY_WAN_VAE)


def test_autoencoder_kl_wan_drops_a_remainder_that_the_vae_keeps(vae):
    video = torch.rand(1, 3, 7, 16, 16) * 2 - 1  # 1 + 4 + 2 frames
    with torch.no_grad():
        raw = vae.model.encode(video).latent_dist.mode()
    assert raw.shape[2] == 2  # diffusers codes 1 + 4 frames and drops the last 2
    latents = vae.encode_video(video)
    assert latents.shape[2] == vae.latent_frames(7) == 3
    assert vae.decode_video(latents).shape[2] == vae.frames(3) == 9 >= 7


@pytest.mark.parametrize("frames", [1, 2, 4, 5, 6, 9])
def test_latent_frames_tell_the_truth(vae, frames):
    latents = vae.encode_video(torch.rand(1, 3, frames, 16, 16) * 2 - 1)
    assert latents.shape == (1, 4, vae.latent_frames(frames), 4, 4)
    assert vae.latent_frames(frames) == 1 + -(-(frames - 1) // 4)
    assert vae.decode_video(latents).shape[2] == vae.frames(latents.shape[2]) >= frames


def test_vae_is_causal_and_images_are_one_frame_videos(vae):
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    whole, first_five = vae.encode_video(video), vae.encode_video(video[:, :, :5])
    torch.testing.assert_close(whole[:, :, :2], first_five, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(vae.encode(video[:, :, 0]), whole[:, :, 0], atol=1e-5, rtol=1e-4)


def test_vae_normalises_with_the_model_statistics():
    config = {**TINY_WAN_VAE, "latents_mean": [0.5, -1.0, 2.0, 0.0], "latents_std": [2.0, 0.5, 1.0, 4.0]}
    torch.manual_seed(0)
    model = WanVAE(config=config)
    video = torch.rand(1, 3, 1, 16, 16)
    with torch.no_grad():
        raw = model.model.encode(video).latent_dist.mode()
    mean, std = torch.tensor(config["latents_mean"]), torch.tensor(config["latents_std"])
    torch.testing.assert_close(model.encode_video(video), (raw - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1))


def test_pretrained_folders_load_weight_for_weight(tmp_path):
    torch.manual_seed(1)
    transformer = WanTransformer3DModel(**{**TINY_WAN, "in_channels": C, "out_channels": C})
    autoencoder = AutoencoderKLWan(**TINY_WAN_VAE)
    transformer.save_pretrained(tmp_path / "transformer")
    autoencoder.save_pretrained(tmp_path / "vae")
    loaded = WanBackbone(C, 4, 8, pretrained=str(tmp_path))
    loaded_vae = WanVAE(pretrained=str(tmp_path))
    for source, copy in ((transformer, loaded.transformer), (autoencoder, loaded_vae.model)):
        expected, actual = source.state_dict(), copy.state_dict()
        assert expected.keys() == actual.keys()
        for key in expected:
            assert torch.equal(expected[key], actual[key]), key
    assert loaded_vae.pretrained_submodules == ("model",)
    with pytest.raises(ValueError, match="latent channels"):
        WanBackbone(16, 4, 8, pretrained=str(tmp_path))


def test_starts_as_the_pretrained_dit():
    """Zero-initialised audio and speed paths: without prefixes, the prediction is diffusers' own forward with one
    zero text token."""
    model = backbone()
    latents, t = torch.randn(2, C, 3, 8, 8), torch.tensor([10, 500])
    with torch.no_grad():
        ours = model.denoise(latents, t, Conditions(None, audio=torch.randn(2, 9, 1, model.audio_dim),
                                                    speed=torch.randn(2, 9, 8)))
        for block in model.transformer.blocks:
            block.attn1.set_processor(WanAttnProcessor())
            block.attn2.set_processor(WanAttnProcessor())
        plain = model.transformer(latents, t, torch.zeros(2, 1, TINY_WAN["text_dim"])).sample
    torch.testing.assert_close(ours, plain, atol=1e-5, rtol=1e-4)


def test_rotary_positions_match_diffusers_and_extend_below_zero():
    model = backbone()
    rope = model.transformer.rope
    cos, sin = rotary_embedding(rope, torch.arange(3), 4, 5)
    expected_cos, expected_sin = rope(torch.zeros(1, C, 3, 8, 10))
    torch.testing.assert_close(cos, expected_cos.float())
    torch.testing.assert_close(sin, expected_sin.float())
    below, _ = rotary_embedding(rope, torch.tensor([-2]), 4, 5)
    assert not torch.allclose(below, cos[:, :20])


def audio_changed_at_frame_5(model: WanBackbone) -> tuple[torch.Tensor, ...]:
    """Audio of 9 frames (3 latent frames), the same with frame 5 changed, and the predictions for both."""
    latents, t = torch.randn(1, C, 3, 4, 4), torch.tensor([300])
    audio = torch.randn(1, 9, 1, model.audio_dim)
    changed = audio.clone()
    changed[:, 5] += 1
    with torch.no_grad():
        return (audio, changed, model.denoise(latents, t, Conditions(None, audio=audio)),
                model.denoise(latents, t, Conditions(None, audio=changed)))


def test_audio_reaches_only_the_latent_frame_that_covers_it():
    """One block and no temporal blocks, so that nothing spreads it further: video frame 5 is in latent frame 2
    (frames 5-8 with 4x temporal compression), frame 0 alone in latent frame 0."""
    model = backbone(config={**TINY_WAN, "num_layers": 1}, temporal_block=None, audio_modulation=False)
    randomise_added_paths(model)
    _, _, before, after = audio_changed_at_frame_5(model)
    differs = (before - after).abs().amax(dim=(0, 1, 3, 4)) > 1e-6
    assert differs.tolist() == [False, False, True]


def test_audio_modulation_scales_each_token_by_its_own_features():
    """The audio-attention alone adds one vector to every token of a latent frame; the audio modulation (its
    cross-attention zeroed here) changes a frame's tokens by different amounts. It sets only the scales and gates of
    the latent frame that covers the audio (the self-attention then spreads it, as it spreads everything)."""
    model = backbone(config={**TINY_WAN, "num_layers": 1}, temporal_block=None)
    randomise_added_paths(model)
    with torch.no_grad():
        model.audio_attention[0].attention.to_out[0].weight.zero_()
        model.audio_attention[0].attention.to_out[0].bias.zero_()
    audio, changed, before, after = audio_changed_at_frame_5(model)
    per_pixel = (after - before)[:, :, 2].abs().mean(1).flatten()
    assert per_pixel.mean() > 1e-3
    assert per_pixel.std() > 0.1 * per_pixel.mean()  # not one shift for the whole frame
    with torch.no_grad():
        rows = [model._audio_modulation(0, model._per_latent_frame(a, 3).flatten(2, 3)) for a in (audio, changed)]
    moved = (rows[1] - rows[0]).abs().amax(dim=(0, 3))  # (latent frame, modulation row)
    assert moved[:2].amax() == 0 and bool((moved[2, [1, 2, 4, 5]] > 0).all())
    assert rows[0][:, :, [0, 3]].abs().amax() == 0  # no shifts


def test_clips_that_are_not_one_plus_four_k_frames_take_their_audio():
    model = backbone()
    latents, t = torch.randn(1, C, 3, 4, 4), torch.tensor([300])
    for frames in (6, 9):  # 3 latent frames cover 6 to 9 video frames
        out = model.denoise(latents, t, Conditions(None, audio=torch.randn(1, frames, 2, model.audio_dim)))
        assert out.shape == latents.shape
    with pytest.raises(ValueError, match="has 10 frames"):
        model.denoise(latents, t, Conditions(None, audio=torch.randn(1, 10, 2, model.audio_dim)))


def test_prefixes_condition_the_clip_and_zeroed_ones_are_left_out():
    """Without temporal blocks (which see zeroed motion frames as zeros), a zeroed motion prefix is no prefix."""
    model = backbone(temporal_block=None)
    randomise_added_paths(model)
    latents, t = torch.randn(2, C, 2, 4, 4), torch.tensor([300, 700])
    with torch.no_grad():
        reference = model.reference_features(torch.randn(2, C, 1, 4, 4))
        motion = model.motion_features(torch.randn(2, C, 2, 4, 4))
        assert reference["keys"].shape[:3] == (2, TINY_WAN["num_layers"], 4)
        plain = model.denoise(latents, t, Conditions(reference))
        with_motion = model.denoise(latents, t, Conditions(reference, motion=motion))
        dropped = {k: v * torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1) for k, v in motion.items()}
        one_dropped = model.denoise(latents, t, Conditions(reference, motion=dropped))
    assert not torch.allclose(plain, with_motion)
    torch.testing.assert_close(one_dropped[0], plain[0])
    torch.testing.assert_close(one_dropped[1], with_motion[1])


def test_image_stage_denoises_frames_as_independent_images():
    model = backbone()
    randomise_added_paths(model)
    latents, t = torch.randn(1, C, 2, 4, 4), torch.tensor([400])
    with torch.no_grad():
        reference = model.reference_features(torch.randn(1, C, 1, 4, 4))
        both = model.denoise(latents, t, Conditions(reference), temporal=False)
        second = model.denoise(latents[:, :, 1:], t, Conditions(reference), temporal=False)
    torch.testing.assert_close(both[:, :, 1:], second)


def test_stage_groups_split_the_dit_from_the_added_layers():
    model = backbone()
    groups = model.parameter_groups()
    assert groups["backbone"] == [model.transformer]
    assert all(block in groups["temporal"] for block in model.temporal_blocks)
    assert model.speed_embedding in groups["speed"]
    assert all(block.speed_attn in groups["speed"] for block in model.temporal_blocks)
    with torch.no_grad():
        motion = model.motion_features(torch.randn(2, C, 3, 4, 4))
    assert motion["hidden"].shape == (2, TINY_WAN["num_layers"], 3, 4, model.audio_dim)


def test_gradient_checkpointing_keeps_the_gradients():
    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = backbone()
        randomise_added_paths(model)
        model.set_gradient_checkpointing(checkpointing)
        torch.manual_seed(2)
        latents = torch.randn(1, C, 3, 4, 4)
        conditions = Conditions(model.reference_features(torch.randn(1, C, 1, 4, 4)),
                                motion=model.motion_features(torch.randn(1, C, 2, 4, 4)),
                                audio=torch.randn(1, 9, 1, model.audio_dim), speed=torch.randn(1, 9, 8))
        model.denoise(latents, torch.tensor([500]), conditions).square().mean().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 50
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-4)
