"""Pipelines built from a checkpoint alone (no Trainer, no LightningModule, no pickled code), reading each file once,
and a cache of them for servers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from emo_lightning import registry
from emo_lightning.model.checkpoint import (
    CheckpointError,
    check_architecture,
    check_state_dict,
    copy_weights,
    expected_weights,
    generation_weights,
    load_adapter,
    model_hparams,
    read_checkpoint,
    without_external_weights,
)
from emo_lightning.model.emo import EMO
from emo_lightning.model.lora import add_lora, base_keys_to_wrapped, is_lora_key, lora_spec
from emo_lightning.pipeline.pipeline import EMOPipeline

COMPONENTS = ("backbone", "vae", "audio_encoder", "face_locator", "temporal_block", "speed_encoder")
"""The hyper-parameters that build the :class:`EMO` network (the LightningModule's component specs)."""


def build_model(hparams: dict[str, Any], path: str | Path) -> EMO:
    """The network that a checkpoint's hyper-parameters describe (with its LoRA layers when it has adapters), without
    weights; its ``plugins`` are imported first."""
    registry.load_plugin_paths(hparams.get("plugins") or [])
    try:
        model = EMO(**{key: hparams[key] for key in COMPONENTS})
        spec = lora_spec(hparams)
        if spec:
            add_lora(model, spec)
    except (KeyError, TypeError, ValueError, LookupError) as err:  # LookupError: an unknown component name
        raise CheckpointError(f"cannot rebuild the model of {path} from its hyper-parameters: {err!r}") from err
    return model.requires_grad_(False)


def load_pipeline(path: str | Path, device: str | torch.device = "cpu", lora: str | Path | None = None,
                  ema: bool = True) -> EMOPipeline:
    """The generation pipeline of checkpoint ``path``: its model built from its ``hyper_parameters``, then its weights
    (with the EMA averages of the trainable parameters where the checkpoint has them, unless ``ema=False``), and its
    generation settings. ``lora``: a LoRA adapter checkpoint to apply; a ``path`` that is itself an adapter is applied
    to its run's base model (``init_from``). Every file is read once.

    Raises :class:`CheckpointError` for an unreadable file, one not written by ``emo fit``, or weights that
    do not fit the architecture its hyper-parameters describe.
    """
    checkpoint = read_checkpoint(path)
    hparams = model_hparams(checkpoint, path)
    base, base_path, adapter, adapter_path = checkpoint, path, None, lora
    if lora is not None:
        adapter = read_checkpoint(lora)
    elif hparams.get("lora"):
        if not hparams.get("init_from"):
            raise CheckpointError(f"{path} is a LoRA adapter without a base model (its run had no init_from)")
        adapter, adapter_path, base_path = checkpoint, path, hparams["init_from"]
        base = read_checkpoint(base_path)
        hparams = model_hparams(base, base_path)
    if adapter is not None:
        hparams = _with_adapter(hparams, model_hparams(adapter, adapter_path), adapter_path)
    model = build_model(hparams, base_path)
    weights = without_external_weights(model, generation_weights(base, ema))
    weights = base_keys_to_wrapped(weights, expected_weights(model))
    check_state_dict(model, weights, source=f"checkpoint {base_path}",
                     subset=(lambda k: not is_lora_key(k)) if adapter is not None else None)
    copy_weights(model, weights)
    if adapter is not None:
        load_adapter(model, adapter, adapter_path)
    return EMOPipeline.from_model(model.eval().to(device), hparams)


def _with_adapter(hparams: dict[str, Any], adapter: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The base model's hyper-parameters with the LoRA layers of the adapter run whose hyper-parameters are
    ``adapter`` (its targets resolved by that run's own stage)."""
    if not adapter.get("lora"):
        raise CheckpointError(f"{path} is not a LoRA adapter (its run had no model.lora)")
    check_architecture(adapter, hparams, path)
    return {**hparams, "lora": lora_spec(adapter)}


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
