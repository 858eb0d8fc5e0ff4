"""GPU-only paths: bf16 components and training, FSDP. Skipped where no CUDA GPU is present."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_batch, tiny_module

from emo_lightning import registry

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("entry", [e for e in registry.entries() if e.kind in
                                   ("audio_encoder", "speed_encoder", "face_locator", "temporal_block")],
                         ids=lambda e: f"{e.kind}-{e.name}")
def test_components_run_in_bf16_on_the_gpu(entry):
    from test_components import DERIVED, outputs

    component = registry.build(entry.kind, entry.name, **entry.tiny_config(), **DERIVED.get(entry.kind, {}))
    component = component.to("cuda", torch.bfloat16)
    with torch.autocast("cuda", torch.bfloat16):
        results = outputs(entry, _Cuda(component))
    assert all(r.is_cuda and torch.isfinite(r.float()).all() for r in results)


class _Cuda:
    """Moves the contract test's CPU inputs to the GPU."""

    def __init__(self, component):
        self.component = component

    def __getattr__(self, name):
        return getattr(self.component, name)

    def __call__(self, *args):
        return self.component(*[a.cuda() if isinstance(a, torch.Tensor) else a for a in args])


def test_bf16_training_step_on_the_gpu():
    module = tiny_module().cuda()
    batch = {k: v.cuda() for k, v in tiny_batch(stage=3).items()}
    with torch.autocast("cuda", torch.bfloat16):
        loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for n, p in module.model.named_parameters()
               if p.requires_grad and not n.startswith("reference_net.up_blocks."))


def test_fsdp_bf16_fit():
    devices = min(torch.cuda.device_count(), 2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "EMO_CONFIG_DIR": str(REPO / "conf")}
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"emo-fsdp-{os.getpid()}"
    subprocess.run([sys.executable, "-m", "emo_lightning.cli", "fit", "experiment=tiny", "trainer.accelerator=gpu",
                    f"trainer.devices={devices}", "trainer.strategy=fsdp", "trainer.precision=bf16-mixed",
                    "trainer.max_steps=3", "logger=csv", "~callbacks.ema", f"trainer.default_root_dir={root}"],
                   env=env, check=True, timeout=600)
    assert (root / "checkpoints" / "last.ckpt").exists()
