"""The EMO assembly: stages, condition paths, feature reuse, sampling and checkpoints."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import tiny_batch, tiny_module

from emo_lightning.model.stages import STAGE_GROUPS, Stage, parameter_group_names


def count_reference_passes(model) -> dict[str, int]:
    counts = {"reference": 0, "motion": 0, "backbone": 0}

    def on_reference(module, args, output):
        counts[model.backbone.state.capture] += 1

    def on_backbone(module, args, output):
        counts["backbone"] += 1

    model.backbone.reference_net.register_forward_hook(on_reference)
    model.backbone.unet.register_forward_hook(on_backbone)
    return counts


def test_reference_features_are_computed_once_per_video():
    module = tiny_module().eval()
    counts = count_reference_passes(module.model)
    clips = list(module.pipeline().clips(torch.zeros(1, 3, 32, 32), torch.randn(1, 16000) * 0.1,
                                         torch.ones(1, 1, 32, 32), total_frames=20, steps=3, guidance_reference=1.0,
                                         guidance_audio=2.0))
    assert [c.shape[2] for c in clips] == [8, 8, 4]
    assert counts == {"reference": 1, "motion": 3, "backbone": 3 * 3}  # once; once per clip; every step


def test_sampling_is_deterministic_by_seed_and_varies_with_it():
    module = tiny_module().eval()

    def video(seed):
        audio = torch.randn(1, 8000, generator=torch.Generator().manual_seed(9))
        return module.pipeline()(torch.zeros(1, 3, 32, 32), audio, torch.ones(1, 1, 32, 32), total_frames=12, steps=2,
                                 seed=seed)

    first, again, other = video(1), video(1), video(2)
    assert first.shape == (1, 3, 12, 32, 32)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_stage_groups_set_what_trains():
    for stage, groups in STAGE_GROUPS.items():
        module = tiny_module(f"model.stage={stage.name.lower()}", "model.trainable=null")  # by name: images, ...
        assert module.hparams.stage == stage and type(module.hparams.stage) is int  # saved as its number
        group_of = parameter_group_names(module.model)
        trains = {group_of[n] for n, p in module.model.named_parameters() if p.requires_grad}
        assert trains == set(groups), stage
        assert {g for g, n in module.trainable_counts.items() if n} == set(groups)
    assert Stage.of("3") is Stage.of(3) is Stage.of(" Speed") is Stage.SPEED
    with pytest.raises(ValueError, match="stage must be 1 .images., 2 .video. or 3 .speed., got 'audio'"):
        Stage.of("audio")


def test_stage3_freezes_audio_layers_on_purpose():
    module = tiny_module("model.stage=3", "model.trainable=null")
    group_of = parameter_group_names(module.model)
    audio = [n for n, p in module.model.named_parameters() if group_of[n] == "audio"]
    assert any(".attn2." in n for n in audio)
    assert not any(p.requires_grad for n, p in module.model.named_parameters() if group_of[n] == "audio")


def test_training_step_updates_only_the_stage_parameters():
    torch.manual_seed(0)
    module = tiny_module("model.stage=3", "model.trainable=null")
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    optimizer = module.configure_optimizers()["optimizer"]
    loss = module.training_step(tiny_batch(stage=3), 0)
    loss.backward()
    optimizer.step()
    group_of = parameter_group_names(module.model)
    changed = {group_of[n] for n, p in module.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"temporal", "speed"}


def test_every_stage_trains_on_its_data_layout():
    for stage in (1, 2, 3):
        torch.manual_seed(0)
        module = tiny_module(f"model.stage={stage}", "model.trainable=null")
        loss = module.training_step(tiny_batch(stage=stage), 0)
        loss.backward()
        assert torch.isfinite(loss)
        no_grad = [n for n, p in module.model.named_parameters() if p.requires_grad and p.grad is None]
        if stage == 1:
            # without motion frames the ReferenceNet's layers after its last attn1 feed nothing (DDP is set
            # to find unused parameters; see conf/strategy/ddp.yaml)
            no_grad = [n for n in no_grad if not n.startswith("backbone.reference_net.up_blocks.")]
        assert not no_grad, f"stage {stage}: trainable parameters got no gradient: {no_grad[:5]}"


def test_stage1_does_not_run_temporal_or_audio_layers():
    module = tiny_module("model.stage=1", "model.trainable=null")
    calls = []
    for block in module.model.backbone.temporal_blocks.values():
        block.register_forward_hook(lambda *a: calls.append(1))
    module.training_step(tiny_batch(stage=1), 0)
    assert calls == []


def conditioned_module(*overrides: str):
    """A tiny module whose zero-initialised paths got some weight (so that the conditions matter), a stage-3
    batch, its conditions, noisy latents and timesteps."""
    torch.manual_seed(0)
    module = tiny_module(*overrides)
    with torch.no_grad():
        for p in module.model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    batch = tiny_batch(stage=3)
    conditions = module.conditions(batch, training=False)
    noisy = torch.randn_like(module.model.vae.encode_video(batch["frames"]))
    return module, batch, conditions, noisy, torch.tensor([500, 500])


def test_audio_changes_the_prediction_and_dropout_removes_it():
    module, batch, conditions, noisy, t = conditioned_module()
    with torch.no_grad():
        base = module.model.denoise(noisy, t, conditions)
        conditions.audio = conditions.audio.flip(0)
        swapped = module.model.denoise(noisy, t, conditions)
    assert not torch.allclose(base, swapped, atol=1e-5)
    module.dropout["audio"] = 1.0
    dropped = module.conditions(batch, training=True)
    assert torch.count_nonzero(dropped.audio) == 0


def test_audio_attention_tells_the_window_slots_apart():
    """Attention is blind to the order of its keys: only the audio positions let a frame tell its own audio
    from its neighbours'. Without them, reordering each frame's window changes nothing."""
    module, batch, conditions, noisy, t = conditioned_module("model.audio_encoder.window=2")
    assert module.model.audio_positions.shape == (5, module.model.backbone.audio_dim)

    def reorder_change() -> float:
        """How much reordering each frame's window moves the output, relative to the output's scale."""
        with torch.no_grad():
            base = module.model.denoise(noisy, t, conditions)
            reordered = module.model.denoise(noisy, t, replace(conditions, audio=conditions.audio.flip(2)))
        return ((reordered - base).abs().max() / base.abs().max()).item()

    assert reorder_change() > 1e-3
    positions, module.model.audio_positions = module.model.audio_positions, None
    assert reorder_change() < 1e-5  # only the summation order of the attention differs
    module.model.audio_positions = positions
    assert parameter_group_names(module.model)["audio_positions"] == "audio" and "audio" in module.hparams.trainable
    module.training_step(batch, 0).backward()
    assert module.model.audio_positions.grad.abs().sum() > 0


def test_audio_positions_exist_only_for_a_window():
    assert tiny_module("model.audio_encoder.window=0").model.audio_positions is None


def test_lip_loss_weight_weights_only_the_mouth_region():
    batch = tiny_batch(stage=3)

    def loss(*overrides: str, lips: float | None = None) -> float:
        torch.manual_seed(0)
        module = tiny_module(*overrides)
        torch.manual_seed(1)
        data = dict(batch) if lips is None else {**batch, "lip_mask": torch.full_like(batch["lip_mask"], lips)}
        return module.diffusion_loss(data, training=False).item()

    plain = loss("model.lip_loss_weight=1")
    assert loss("model.lip_loss_weight=4", lips=0.0) == pytest.approx(plain)  # no mouth: the plain loss
    assert loss("model.lip_loss_weight=4", lips=1.0) == pytest.approx(4 * plain, rel=1e-5)  # all mouth
    assert plain < loss("model.lip_loss_weight=4") < 4 * plain


def test_lip_loss_weight_without_a_lip_mask_says_what_to_do():
    batch = {k: v for k, v in tiny_batch(stage=3).items() if k != "lip_mask"}
    with pytest.raises(ValueError, match="lip_loss_weight=1"):
        tiny_module("model.lip_loss_weight=10").diffusion_loss(batch, training=False)
