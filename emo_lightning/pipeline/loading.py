"""Pipelines rebuilt from a checkpoint alone (no Trainer, no pickled code), and a cache of them for servers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import torch

from emo_lightning.pipeline.pipeline import EMOPipeline
from emo_lightning.training.checkpoint import (
    CheckpointError,
    check_state_dict,
    generation_weights,
    load_adapter,
    model_hparams,
    read_checkpoint,
    with_adapter,
)
from emo_lightning.training.lora import base_keys_to_wrapped, is_lora_key
from emo_lightning.training.module import EMOLightningModule


def load_module(path: str | Path, device: str | torch.device = "cpu", lora: str | Path | None = None,
                ema: bool = True) -> EMOLightningModule:
    """The module of checkpoint ``path`` in eval mode: built from its ``hyper_parameters``, then its weights (with
    the EMA averages of the trainable parameters where the checkpoint has them, unless ``ema=False``);
    ``lora``: a LoRA adapter checkpoint to apply. A ``path`` that is itself an adapter is applied to its run's base
    model (``init_from``).

    Raises :class:`CheckpointError` for an unreadable file, one not written by ``emo fit``, or weights that
    do not fit the architecture its hyper-parameters describe.
    """
    checkpoint = read_checkpoint(path)
    hparams = model_hparams(checkpoint, path)
    if hparams.get("lora") and lora is None:
        if not hparams.get("init_from"):
            raise CheckpointError(f"{path} is a LoRA adapter without a base model (its run had no init_from)")
        return load_module(hparams["init_from"], device, lora=path, ema=ema)
    if lora is not None:
        hparams = with_adapter(hparams, lora, path)
    try:
        module = EMOLightningModule(**hparams)
    except (TypeError, ValueError, LookupError) as err:  # LookupError: an unknown component name
        raise CheckpointError(f"cannot rebuild the model of {path} from its hyper-parameters: {err}") from err
    weights = base_keys_to_wrapped(module.without_external_weights(generation_weights(checkpoint, ema)),
                                   module.state_dict())
    check_state_dict(module, weights, source=f"checkpoint {path}",
                     subset=(lambda k: not is_lora_key(k)) if module.lora else None)
    module.load_state_dict(weights, strict=False)  # frozen pretrained weights are rebuilt
    if lora is not None:
        load_adapter(module, lora)
    return module.eval().to(device)


def load_pipeline(path: str | Path, device: str | torch.device = "cpu", lora: str | Path | None = None,
                  ema: bool = True) -> EMOPipeline:
    """The generation pipeline of checkpoint ``path`` (see :func:`load_module`)."""
    return EMOPipeline.from_module(load_module(path, device, lora=lora, ema=ema))


class PipelineCache:
    """Checkpoints' pipelines loaded once and kept (the ``size`` most recently used); a rewritten file is reloaded."""

    def __init__(self, size: int = 2, device: str | torch.device = "cpu"):
        self.size, self.device = size, device
        self.models: OrderedDict[tuple[str, int, int], EMOPipeline] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, path: str | Path) -> EMOPipeline:
        path = Path(path).resolve()
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self.lock:
            if key not in self.models:
                self.models[key] = load_pipeline(path, self.device)
                while len(self.models) > self.size:
                    self.models.popitem(last=False)
            self.models.move_to_end(key)
            return self.models[key]
