"""Checkpoints of the layout before the backbone kind (hyper-parameters ``unet: {name: sd, ...}``; the UNet,
ReferenceNet and temporal blocks as EMO's own ``backbone`` / ``reference_net`` / ``temporal_blocks``) load: for
generation, as ``init_from``, to resume (optimizer state included) and through ``emo predict``. The checkpoint is
written by that code itself (commit OLD_COMMIT of this repository, run in a subprocess)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import REPO, tiny_config
from PIL import Image

from emo_lightning.cli import main
from emo_lightning.data import SyntheticDataModule
from emo_lightning.pipeline.loading import load_module
from emo_lightning.training import EMOLightningModule
from emo_lightning.training.checkpoint import (
    CheckpointError,
    check_architecture,
    load_weights,
    read_checkpoint,
    reorder_optimizer_states,
)

pytestmark = pytest.mark.slow
OLD_COMMIT = "fd44ced"  # the last commit with the `unet` kind
OVERRIDES = ("model.stage=2", "model.trainable=null")  # stage 2 trains parts of every old top-level module
OLD_TINY_HEADS = "model.backbone.config.attention_head_dim=8"  # the tiny backbone's heads at OLD_COMMIT
# old key prefix -> new (the only renames)
RENAMED = {"model.backbone.": "model.backbone.unet.", "model.reference_net.": "model.backbone.reference_net.",
           "model.temporal_blocks.": "model.backbone.temporal_blocks."}

OLD_RUN = """
import sys, torch, lightning.pytorch as pl
from emo_lightning.config import compose_config
from emo_lightning.data import SyntheticDataModule
from emo_lightning.training import EMOLightningModule
from emo_lightning.training.ema import EMA

root = sys.argv[1]
torch.manual_seed(0)
module = EMOLightningModule(**compose_config("fit", ["experiment=tiny", *sys.argv[2:]])["model"])
saved = pl.callbacks.ModelCheckpoint(dirpath=root, filename="old", every_n_train_steps=1)  # as emo fit saves
trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     limit_val_batches=0, accelerator="cpu", devices=1, callbacks=[EMA(decay=0.5), saved])
trainer.fit(module, SyntheticDataModule(stage=2, batch_size=1, num_frames=4, train_samples=2, val_samples=1))
state = trainer.optimizers[0].state
torch.save({n: state[p]["exp_avg"] for n, p in module.named_parameters() if p in state}, f"{root}/exp_avg.pt")
"""


def renamed(key: str) -> str:
    return next((new + key[len(old):] for old, new in RENAMED.items() if key.startswith(old)), key)


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    """``old.ckpt`` (one stage-2 step with EMA, by the old code) and ``exp_avg.pt`` (its AdamW first moments, by
    parameter name)."""
    root = tmp_path_factory.mktemp("old_layout")
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_COMMIT, "emo_lightning", "conf"],
                                 capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"needs git and this repository's history (commit {OLD_COMMIT}) to run the old code")
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(root / "code", filter="data")
    env = {**os.environ, "PYTHONPATH": str(root / "code"), "EMO_CONFIG_DIR": str(root / "code" / "conf"),
           "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", OLD_RUN, str(root), *OVERRIDES], cwd=root / "code", env=env, check=True,
                   timeout=600)
    return root


def test_an_old_checkpoint_generates_with_its_weights(old_run):
    raw = torch.load(old_run / "old.ckpt", weights_only=True, map_location="cpu")
    assert "unet" in raw["hyper_parameters"] and any(k.startswith("model.reference_net.") for k in raw["state_dict"])
    module = load_module(old_run / "old.ckpt")  # `emo predict` and the demo load through this
    assert module.hparams["backbone"]["name"] == "sd_unet" and "unet" not in module.hparams
    weights = {**raw["state_dict"], **raw["ema"]["state_dict"]}  # the EMA averages, where it has them
    ours = module.state_dict()
    assert weights and all(torch.equal(ours[renamed(k)], v) for k, v in weights.items())


def test_an_old_checkpoint_starts_a_new_stage(old_run):
    module = EMOLightningModule(**tiny_config("model.stage=3", "model.trainable=null")["model"])
    report = load_weights(module, old_run / "old.ckpt")
    assert " 0 new in this model, 0 in the checkpoint unused" in report, report
    raw = torch.load(old_run / "old.ckpt", weights_only=True, map_location="cpu")
    ours = module.state_dict()
    assert all(torch.equal(ours[renamed(k)], v) for k, v in raw["ema"]["state_dict"].items())


def test_an_old_checkpoint_resumes_with_its_optimizer_state(old_run, tmp_path):
    cfg = tiny_config(*OVERRIDES, OLD_TINY_HEADS)["model"]  # resuming takes the run's own config
    check_architecture(read_checkpoint(old_run / "old.ckpt")["hyper_parameters"], cfg, "old.ckpt")
    module = EMOLightningModule(**cfg)
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    checkpoint = read_checkpoint(old_run / "old.ckpt")
    reorder_optimizer_states(checkpoint, trainable)
    state = checkpoint["optimizer_states"][0]["state"]
    old = {renamed(k): v for k, v in torch.load(old_run / "exp_avg.pt", weights_only=True).items()}
    assert len(old) == len(trainable) == len(state)
    assert all(torch.equal(state[i]["exp_avg"], old[name]) for i, name in enumerate(trainable))

    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", devices=1,
                         default_root_dir=tmp_path)
    trainer.fit(module, SyntheticDataModule(stage=2, batch_size=1, num_frames=4, train_samples=2, val_samples=1),
                ckpt_path=old_run / "old.ckpt")
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    optimizer = trainer.optimizers[0]
    assert all(optimizer.state[p]["exp_avg"].shape == p.shape for p in module.parameters() if p.requires_grad)


def test_an_old_checkpoint_of_another_config_fails_with_the_clear_message(old_run):
    other = tiny_config(*OVERRIDES, "model.backbone.config.block_out_channels=[32,32]")["model"]
    with pytest.raises(CheckpointError, match="made by a different model config.*block_out_channels"):
        check_architecture(read_checkpoint(old_run / "old.ckpt")["hyper_parameters"], other, "old.ckpt")


def test_emo_predict_takes_an_old_checkpoint(old_run, tmp_path, monkeypatch):
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "face.png")
    with wave.open(str(tmp_path / "speech.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.sin(np.arange(8000) * 0.05) * 8000).astype("<i2").tobytes())
    monkeypatch.chdir(tmp_path)
    main(["predict", f"ckpt_path={old_run / 'old.ckpt'}", "image=face.png", "audio=speech.wav", "output=out.mp4",
          "face_detector=none", "steps=1", "fps=4"])
    assert (tmp_path / "out.mp4").stat().st_size > 0
