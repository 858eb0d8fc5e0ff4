"""Reading ``emo fit`` checkpoints: loaded without unpickling code, checked against the :class:`EMO` model before any
weight is copied. A checkpoint's ``state_dict`` holds the model's weights under ``model.`` (the LightningModule's
attribute), without the frozen pretrained weights its components rebuild from their source."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emo_lightning.model.lora import base_keys_to_wrapped, is_lora_key

PREFIX = "model."
"""The model's keys in a checkpoint's ``state_dict``."""


class CheckpointError(ValueError):
    """A checkpoint is unreadable or does not fit the model it is loaded into."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: tensors and plain containers only; never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path} holds Python objects beyond tensors and plain containers, and is not loaded "
            f"(loading would run code from the file). Re-save it with emo-lightning. Detail: {exc}") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


def generation_weights(checkpoint: dict[str, Any], ema: bool = True) -> dict[str, torch.Tensor]:
    """The weights to generate with: the training weights with, when ``ema`` and the checkpoint has them, the
    EMA averages of the trainable parameters in their place."""
    averages = (checkpoint.get("ema") or {}).get("state_dict") or {} if ema else {}
    return {**checkpoint["state_dict"], **averages}


def model_hparams(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The module's init arguments saved in ``checkpoint`` (without LightningCLI's ``_``-prefixed keys)."""
    hparams = checkpoint.get("hyper_parameters")
    if not hparams:
        raise CheckpointError(f"{path} holds no hyper-parameters: it was not written by emo fit")
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


def expected_weights(model: nn.Module, subset: Callable[[str], bool] | None = None) -> dict[str, torch.Size]:
    """The shapes of ``model``'s weights a checkpoint holds, by their checkpoint key (``subset``: only the keys it
    accepts)."""
    skip = tuple(PREFIX + p for p in model.external_weight_prefixes())
    keys = {PREFIX + k: v.shape for k, v in model.state_dict().items()}
    return {k: v for k, v in keys.items() if not k.startswith(skip) and (subset is None or subset(k))}


def without_external_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` (checkpoint keys) without the frozen pretrained weights that ``model`` rebuilds from source."""
    prefixes = tuple(PREFIX + p for p in model.external_weight_prefixes())
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)} if prefixes else state_dict


def copy_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load ``state_dict`` (checkpoint keys) into ``model``; weights it lacks keep their values."""
    model.load_state_dict({k.removeprefix(PREFIX): v for k, v in state_dict.items()}, strict=False)


def _summary(keys: list[str], limit: int = 5) -> str:
    more = f" … and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str,
                     subset: Callable[[str], bool] | None = None) -> None:
    """Raise :class:`CheckpointError` naming what differs when ``state_dict`` (checkpoint keys) was made by another
    config (``subset``: only the model's keys it accepts are expected, e.g. a LoRA adapter's)."""
    expected = expected_weights(model, subset)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k])
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} tensors have other shapes ("
                        + _summary([f"{k}: {tuple(state_dict[k].shape)} vs {tuple(expected[k])}"
                                    for k in mismatched]) + ")")
    if missing:
        problems.append(f"{len(missing)} weights of this model are missing ({_summary(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} weights are not in this model ({_summary(unexpected)})")
    raise CheckpointError(
        f"the {source} was made by a different model config than the one being built: "
        + "; ".join(problems)
        + ". Use the config saved with that run (its config.yaml, or `emo predict` which rebuilds the model "
          "from the checkpoint), or start a new stage from it with model.init_from=<checkpoint>.")


ARCHITECTURE_KEYS = ("backbone", "vae", "audio_encoder", "face_locator", "temporal_block", "speed_encoder")


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}.{key}").items()}
    return {prefix: value}


def check_architecture(hparams: dict[str, Any], model_config: dict[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointError` when the checkpoint's components differ from the configured ones."""
    saved = {k: v for key in ARCHITECTURE_KEYS for k, v in _flatten(hparams.get(key), f"model.{key}").items()}
    wanted = {k: v for key in ARCHITECTURE_KEYS for k, v in _flatten(model_config.get(key), f"model.{key}").items()}
    diffs = [f"{k}: {saved.get(k, '(unset)')!r} in the checkpoint, {wanted.get(k, '(unset)')!r} in the config"
             for k in sorted(set(saved) | set(wanted), key=lambda k: (not k.endswith(".name"), k))
             if saved.get(k) != wanted.get(k)]
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} was made by a different model config: " + "; ".join(diffs[:6])
            + (f" … and {len(diffs) - 6} more" if len(diffs) > 6 else "")
            + ". Resume with the run's own config (emo fit --config <run>/config.yaml), drop the component "
              "overrides, or start a new run from its weights with model.init_from=<checkpoint>.")


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Copy the weights of an earlier stage's checkpoint that fit (its EMA averages where it has them); report what
    was new or left out."""
    expected = expected_weights(model)
    state_dict = base_keys_to_wrapped(generation_weights(read_checkpoint(path)), expected)
    fitting = {k: v for k, v in state_dict.items() if k in expected and v.shape == expected[k]}
    if not fitting:
        raise CheckpointError(f"no weight of {path} fits this model: it was made for another architecture")
    copy_weights(model, fitting)
    new = len(set(expected) - set(fitting))
    dropped = len(set(state_dict) - set(fitting))
    return f"{len(fitting)} tensors loaded, {new} new in this model, {dropped} in the checkpoint unused"


def load_adapter(model: nn.Module, checkpoint: dict[str, Any], path: str | Path) -> str:
    """Copy the LoRA adapter weights of ``checkpoint`` (read from ``path``, a checkpoint of a ``model.lora`` run)
    into ``model``."""
    adapter = {k: v for k, v in generation_weights(checkpoint).items() if is_lora_key(k)}
    if not adapter:
        raise CheckpointError(f"{path} holds no LoRA adapter weights: it is not a checkpoint of a model.lora run")
    check_state_dict(model, adapter, source=f"LoRA adapter {path}", subset=is_lora_key)
    copy_weights(model, adapter)
    return f"{len(adapter)} adapter tensors ({sum(v.numel() for v in adapter.values()):,} parameters) applied"
