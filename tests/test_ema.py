"""EMA of the trainable parameters: kept in checkpoints beside the training weights, continued on resume, and
used by generation (load_pipeline: `emo predict`, the demo; Lightning's checkpoint loading: `emo validate`/`test`)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_module

from emo_lightning.data import SyntheticDataModule
from emo_lightning.model.checkpoint import read_checkpoint
from emo_lightning.pipeline.loading import load_pipeline
from emo_lightning.training.callbacks import LastCheckpoint
from emo_lightning.training.ema import EMA

DECAY = 0.5


def fit(root: Path, max_steps: int, ckpt_path: Path | None = None) -> pl.LightningModule:
    module = tiny_module()
    trainer = pl.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, accelerator="cpu", devices=1, default_root_dir=root,
                         callbacks=[EMA(decay=DECAY), LastCheckpoint(dirpath=root, every_n_train_steps=max_steps,
                                                                     save_last=True, save_top_k=0)])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer.fit(module, SyntheticDataModule(stage=3, batch_size=1, train_samples=8, val_samples=1),
                    ckpt_path=ckpt_path)
    finally:
        torch.set_num_threads(threads)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, pl.LightningModule]:
    root = tmp_path_factory.mktemp("ema")
    return root, fit(root, 3)


def trainable_names(module: pl.LightningModule) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def test_checkpoint_holds_training_weights_and_the_average_of_the_trainable_ones(run):
    root, module = run
    checkpoint = read_checkpoint(root / "last.ckpt")
    averages = checkpoint["ema"]["state_dict"]
    assert set(averages) == trainable_names(module)  # the frozen backbone and ReferenceNet have none
    assert len(averages) < len(checkpoint["state_dict"]) and checkpoint["ema"]["updates"] == 3
    assert any(not torch.equal(averages[k], checkpoint["state_dict"][k]) for k in averages)
    # after fit the module in memory holds the averages
    params = dict(module.named_parameters())
    torch.testing.assert_close({k: params[k].detach() for k in averages}, averages, rtol=0, atol=0)


def test_generation_uses_the_average_unless_told_not_to(run):
    root, _ = run
    path = root / "last.ckpt"
    checkpoint = read_checkpoint(path)
    averages, weights = checkpoint["ema"]["state_dict"], checkpoint["state_dict"]
    for ema, expected in ((True, averages), (False, weights)):
        params = {f"model.{k}": p for k, p in load_pipeline(path, ema=ema).model.named_parameters()}
        torch.testing.assert_close({k: params[k].detach() for k in averages}, {k: expected[k] for k in averages})

    # Lightning's own loading, as `emo validate` / `emo test` do it
    module = tiny_module()
    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               limit_val_batches=1).validate(module, SyntheticDataModule(stage=3, batch_size=1, val_samples=1),
                                             ckpt_path=path, weights_only=True)
    params = dict(module.named_parameters())
    torch.testing.assert_close({k: params[k].detach() for k in averages}, averages)


def test_resume_continues_the_average(run, tmp_path):
    root, _ = run
    fit(tmp_path, 4, ckpt_path=root / "last.ckpt")
    before, after = read_checkpoint(root / "last.ckpt"), read_checkpoint(tmp_path / "last.ckpt")
    assert after["global_step"] == 4 and after["ema"]["updates"] == 4
    for name, average in after["ema"]["state_dict"].items():
        expected = DECAY * before["ema"]["state_dict"][name] + (1 - DECAY) * after["state_dict"][name]
        torch.testing.assert_close(average, expected)


def test_warmup_averages_recent_weights_early_and_reaches_the_decay():
    class Stub(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

    module, ema = Stub(), EMA(decay=0.99, warmup=True)
    ema.on_fit_start(None, module)
    trainer = type("T", (), {"global_step": 0})()
    for step in range(1, 3001):  # the weight jumps to 1 after the first update
        trainer.global_step = step
        with torch.no_grad():
            module.weight.fill_(0.0 if step == 1 else 1.0)
        ema.on_train_batch_end(trainer, module, None, None, step)
        if step == 20:
            # (1+n)/(10+n) ≤ 0.68 over these updates: the start's share is already below 0.01 (plain 0.99: 0.83)
            assert ema.shadow["weight"].item() > 0.99
    assert ema.current_decay() == 0.99
    plain = EMA(decay=0.99)
    assert plain.current_decay() == 0.99
