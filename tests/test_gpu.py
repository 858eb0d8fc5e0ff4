"""GPU-only paths: bf16 components and training, gradient checkpointing, FSDP. Skipped where no CUDA GPU is present."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_batch, tiny_module

from emo_lightning import contract, registry

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("entry", [e for e in registry.entries() if e.kind in
                                   ("audio_encoder", "speed_encoder", "face_locator", "temporal_block")],
                         ids=lambda e: f"{e.kind}-{e.name}")
def test_components_run_in_bf16_on_the_gpu(entry):
    """The interface's probe (its inputs on the component's device and dtype) on the tiny component in bf16."""
    component = contract.build_tiny(entry).to("cuda", torch.bfloat16)
    with torch.autocast("cuda", torch.bfloat16):
        results = contract.probe(entry, component)
    assert all(r.output.is_cuda and r.output.shape == r.shape and torch.isfinite(r.output.float()).all()
               for r in results)


def test_bf16_training_step_on_the_gpu():
    module = tiny_module().cuda()
    batch = {k: v.cuda() for k, v in tiny_batch(stage=3).items()}
    with torch.autocast("cuda", torch.bfloat16):
        loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for n, p in module.model.named_parameters()
               if p.requires_grad and not n.startswith("backbone.reference_net.up_blocks."))


def test_fsdp_bf16_fit():
    devices = min(torch.cuda.device_count(), 2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "EMO_CONFIG_DIR": str(REPO / "conf")}
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"emo-fsdp-{os.getpid()}"
    subprocess.run([sys.executable, "-m", "emo_lightning.cli", "fit", "experiment=tiny", "trainer.accelerator=gpu",
                    f"trainer.devices={devices}", "trainer.strategy=fsdp", "trainer.precision=bf16-mixed",
                    "trainer.max_steps=3", "logger=csv", "~callbacks.ema", f"trainer.default_root_dir={root}"],
                   env=env, check=True, timeout=600)
    assert (root / "checkpoints" / "last.ckpt").exists()


def test_gradient_checkpointing_in_bf16_on_the_gpu():
    """Checkpointed recomputation under bf16 autocast on the GPU gives the gradients of the plain step."""
    torch.manual_seed(0)
    module = tiny_module("model.stage=2", "model.trainable=null", "model/audio_encoder=wav2vec2_tiny").cuda()
    batch = {k: v.cuda() for k, v in tiny_batch(stage=2, batch_size=1, num_frames=4).items()}
    grads = []
    for checkpointing in (False, True):
        module.model.set_gradient_checkpointing(checkpointing)
        module.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        with torch.autocast("cuda", torch.bfloat16):
            loss = module.diffusion_loss(batch, training=True)
        loss.backward()
        assert torch.isfinite(loss)
        grads.append(torch.cat([p.grad.float().flatten() for p in module.parameters() if p.grad is not None]))
    plain, checkpointed = grads
    assert plain.shape == checkpointed.shape and plain.abs().sum() > 0
    assert (checkpointed - plain).norm() <= 1e-2 * plain.norm()  # GPU attention backward kernels are not bitwise


def test_bf16_fit_with_checkpointing_and_cached_audio_features_on_the_gpu():
    """`trainer.precision=bf16-mixed model.gradient_checkpointing=true` trains; cached audio features go through the
    encoder's trainable part in bf16."""
    import lightning.pytorch as pl

    from emo_lightning.data import SyntheticDataModule

    module = tiny_module("model/audio_encoder=wav2vec2_tiny", "model.audio_encoder.freeze=true",
                         "model.gradient_checkpointing=true")
    trainer = pl.Trainer(max_steps=2, precision="bf16-mixed", accelerator="gpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0)
    trainer.fit(module, SyntheticDataModule(stage=3, batch_size=2, num_frames=4, train_samples=4, val_samples=1))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    batch = {k: v.cuda() for k, v in tiny_batch(stage=3, batch_size=1, num_frames=4).items()}
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
        batch["audio_features"] = module.model.audio_encoder.features(batch["audio"], 4)
        assert torch.isfinite(module.diffusion_loss(batch, training=False))
