"""Shared test setup: never touch the network, W&B offline, helpers to find sample media."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]


def samples_dir() -> Path:
    return Path(os.environ.get("EMO_SAMPLES", REPO.parent / "shared" / "samples"))


@pytest.fixture(scope="session")
def sample():
    """Path of a file in the shared sample media; skips the test where it is absent (session-scoped, so that
    module fixtures can prepare data from it once)."""

    def find(name: str) -> Path:
        path = samples_dir() / name
        if not path.is_file():
            pytest.skip(f"sample media {path} not present (set EMO_SAMPLES to the shared samples folder)")
        return path

    return find


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def tiny_config(*overrides: str) -> dict:
    """The composed `experiment=tiny` config (Hydra layout) with extra overrides."""
    from emo_lightning.config import compose_config

    return compose_config("fit", ["experiment=tiny", *overrides])


def tiny_module(*overrides: str):
    from emo_lightning.training import EMOLightningModule

    return EMOLightningModule(**tiny_config(*overrides)["model"])


def tiny_batch(stage: int = 3, batch_size: int = 2, num_frames: int = 8, seed: int = 0) -> dict:
    from torch.utils.data import default_collate

    from emo_lightning.data import SyntheticTalkingFaces

    data = SyntheticTalkingFaces(batch_size, stage=stage, resolution=32, num_frames=num_frames, seed=seed)
    return default_collate([data[i] for i in range(batch_size)])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny EMO after one training step, saved by Lightning as `emo fit` saves it (tests the plumbing of
    generation, not its quality)."""
    import lightning.pytorch as pl

    from emo_lightning.data import SyntheticDataModule

    path = tmp_path_factory.mktemp("checkpoints") / "tiny.ckpt"
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", devices=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: faster on one thread, and much faster on a busy machine
    try:
        trainer.fit(tiny_module(), SyntheticDataModule(stage=3, batch_size=1, train_samples=1, val_samples=1))
    finally:
        torch.set_num_threads(threads)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread: two threads mostly wait for each other (and, on a busy 2-core machine,
    OpenMP's spin-waiting made them 10-50× slower). Use with ``pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
