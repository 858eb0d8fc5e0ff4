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


@pytest.fixture
def sample():
    """Path of a file in the shared sample media; skips the test where it is absent."""

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
