"""Every registered backbone, inside EMO: the Backbone contract, shapes through EMO.denoise, which groups each stage
trains, and the config round trip. A new backbone is tested here the moment it registers (its ``tiny`` config, with
the tiny experiment's other components: the weight-free pixel VAE, the mel audio encoder)."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
import torch
import yaml
from conftest import tiny_batch, tiny_config
from torch import nn
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from emo_lightning import contract, registry
from emo_lightning.components.base import Backbone
from emo_lightning.model.stages import GROUPS, STAGE_GROUPS, parameter_group_names
from emo_lightning.training import EMOLightningModule
from emo_lightning.training.fsdp import BackboneFSDPStrategy

BACKBONES = registry.entries("backbone")
BACKBONE_GROUPS = ("backbone", "reference_net", "audio", "temporal", "speed")


def module_with(entry: registry.Entry, *overrides: str) -> EMOLightningModule:
    cfg = tiny_config(*overrides)["model"]
    return EMOLightningModule(**{**cfg, "backbone": {"name": entry.name, **entry.tiny_config()}})


def _randomise_zero_parameters(module: nn.Module) -> None:
    """Zero-initialised output layers (identity at start) would give every layer before them a zero gradient."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)


@pytest.fixture(params=BACKBONES, ids=lambda e: e.name)
def entry(request) -> registry.Entry:
    return request.param


def test_the_backbone_contract(entry):
    backbone = contract.build_tiny(entry)  # runs Backbone.check_contract
    assert isinstance(backbone, Backbone)
    assert isinstance(backbone.size_multiple, int) and backbone.size_multiple >= 1
    assert isinstance(backbone.audio_dim, int) and backbone.audio_dim >= 1
    assert backbone.latent_channels == registry.KINDS["backbone"].derived["latent_channels"]
    groups = backbone.parameter_groups()
    assert set(groups) <= set(BACKBONE_GROUPS)
    own = {id(m) for m in backbone.modules()} | {id(p) for p in backbone.parameters()}
    assert all(id(member) in own for members in groups.values() for member in members), \
        "parameter_groups() lists modules that are not the backbone's"
    assert all(isinstance(c, type) and issubclass(c, nn.Module) for c in backbone.fsdp_wrap_classes)
    assert all(any(isinstance(m, c) for m in backbone.modules()) for c in backbone.fsdp_wrap_classes), \
        "an FSDP wrap class has no instance in the backbone"
    backbone.set_gradient_checkpointing(False)
    # shapes, gradient flow and the component's own config round trip: tests/test_components.py, over every kind


def test_shapes_through_emo_denoise(entry):
    torch.manual_seed(0)
    module = module_with(entry).eval()
    model, batch = module.model, tiny_batch(stage=3)
    with torch.no_grad():
        conditions = module.conditions(batch, training=False)
        latents = model.vae.encode_video(batch["frames"])
        out = model.denoise(torch.randn_like(latents), torch.tensor([10, 900]), conditions)
        assert out.shape == latents.shape and torch.isfinite(out).all()
        image = model.vae.encode_video(batch["frames"][:, :, :1])  # the image stage: one frame, no temporal layers
        out = model.denoise(image, torch.tensor([10, 900]), replace(conditions, motion=None, audio=None, speed=None),
                            temporal=False)
        assert out.shape == image.shape
    assert module.pipeline().size_multiple == model.vae.downsample * model.backbone.size_multiple
    assert module.fsdp_wrap_classes == tuple(model.backbone.fsdp_wrap_classes)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_trains_its_groups_and_freezes_the_others(entry, stage):
    """Gradients reach every group the stage trains that the backbone has, and no frozen group gets one."""
    torch.manual_seed(0)
    module = module_with(entry, f"model.stage={stage}", "model.trainable=null")
    _randomise_zero_parameters(module)
    group_of = parameter_group_names(module.model)
    module.training_step(tiny_batch(stage=stage, batch_size=2, num_frames=4), 0).backward()
    reached = {g: 0.0 for g in GROUPS}
    for name, param in module.model.named_parameters():
        group = group_of[name]
        if group not in STAGE_GROUPS[stage]:
            assert not param.requires_grad and param.grad is None, f"stage {stage}: frozen {name} ({group}) trains"
        elif param.grad is not None:
            reached[group] += float(param.grad.abs().sum())
    present = {group_of[n] for n, p in module.model.named_parameters() if p.requires_grad}
    assert present == {g for g, n in module.trainable_counts.items() if n}
    assert present <= set(STAGE_GROUPS[stage])
    assert {"face_locator"} & set(STAGE_GROUPS[stage]) <= present  # EMO's own modules always exist
    for group in present:
        assert reached[group] > 0, f"stage {stage}: no gradient reaches group {group}"


def test_config_round_trip(entry, tmp_path):
    """Built from the tiny spec, its hyper-parameters saved as YAML and rebuilt: the same weights' names and shapes."""
    module = module_with(entry)
    path = tmp_path / "hparams.yaml"
    path.write_text(yaml.safe_dump(dict(module.hparams)))
    rebuilt = EMOLightningModule(**yaml.safe_load(path.read_text()))
    assert rebuilt.hparams["backbone"] == module.hparams["backbone"]
    ours, theirs = module.state_dict(), rebuilt.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_fsdp_wraps_the_blocks_the_backbone_names(entry):
    """`trainer.strategy=fsdp` takes its wrap policy from the backbone (the wrapping itself needs a GPU:
    tests/test_gpu.py)."""
    module = module_with(entry)
    strategy = BackboneFSDPStrategy(parallel_devices=[torch.device("cpu")])
    strategy.connect(module)
    with contextlib.suppress(RuntimeError, ValueError):  # no accelerator / no process group here
        strategy._setup_model(module)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy)
    assert policy._module_classes == set(module.model.backbone.fsdp_wrap_classes)
