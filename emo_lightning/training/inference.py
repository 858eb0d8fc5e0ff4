"""A model for generation, rebuilt from a checkpoint alone (no Trainer, no pickled code)."""

from __future__ import annotations

from pathlib import Path

import torch

from emo_lightning.training.checkpoint import CheckpointError, check_state_dict, read_checkpoint
from emo_lightning.training.module import EMOLightningModule


def load_module(path: str | Path, device: str | torch.device = "cpu") -> EMOLightningModule:
    """The module of checkpoint ``path`` in eval mode: built from its ``hyper_parameters``, then its weights.

    Raises :class:`CheckpointError` for an unreadable file, one not written by ``emo fit``, or weights that
    do not fit the architecture its hyper-parameters describe.
    """
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters")
    if not hparams:
        raise CheckpointError(f"{path} holds no hyper-parameters: it was not written by emo fit")
    try:
        module = EMOLightningModule(**{k: v for k, v in hparams.items() if not k.startswith("_")})
    except (TypeError, ValueError, LookupError) as err:  # LookupError: an unknown component name
        raise CheckpointError(f"cannot rebuild the model of {path} from its hyper-parameters: {err}") from err
    check_state_dict(module, checkpoint["state_dict"], source=f"checkpoint {path}")
    module.load_state_dict(checkpoint["state_dict"], strict=False)  # frozen pretrained weights are rebuilt
    return module.eval().to(device)
