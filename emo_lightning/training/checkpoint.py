"""Checkpoints: loaded without unpickling code, checked against the model before any weight is copied."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emo_lightning.training.lora import base_keys_to_wrapped, is_lora_key


class CheckpointError(ValueError):
    """A checkpoint is unreadable or does not fit the model it is loaded into."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: tensors and plain containers only; never runs pickled code. Older layouts
    are brought to this one (:func:`upgrade_layout`)."""
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
    return upgrade_layout(checkpoint)


# the layout before the backbone kind: the UNet, the ReferenceNet and the temporal blocks were EMO's own submodules
_UNET_LAYOUT_KEYS = {"model.backbone.": "model.backbone.unet.", "model.reference_net.": "model.backbone.reference_net.",
                     "model.temporal_blocks.": "model.backbone.temporal_blocks."}
# its EMO submodules in registration order (the order of its optimizer's parameters)
_UNET_LAYOUT_ORDER = ("vae", "backbone", "reference_net", "audio_encoder", "audio_positions", "face_locator",
                      "speed_encoder", "temporal_blocks")
_UNET_NAMES = {"sd": "sd_unet"}


def _unet_layout_key(key: str) -> str:
    for old, new in _UNET_LAYOUT_KEYS.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _old_unet_layout_key(key: str) -> str:
    for old, new in _UNET_LAYOUT_KEYS.items():
        if key.startswith(new):
            return old + key[len(new):]
    return key


def upgrade_layout(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Bring an older checkpoint to this layout; changes ``checkpoint`` in place and does nothing to a current one.

    * Lightning's ``EMAWeightAveraging`` held the averaged weights in ``state_dict`` and the training weights in
      ``current_model_state``: they move to ``state_dict`` = training weights, ``ema.state_dict`` = averages (see
      :mod:`emo_lightning.training.ema`).
    * Before the ``backbone`` kind, hyper-parameters named a ``unet`` (``{name: sd, ...}``) and the UNet, ReferenceNet
      and temporal blocks were ``model.backbone.*``, ``model.reference_net.*`` and ``model.temporal_blocks.*``: they
      become the ``sd_unet`` backbone's ``model.backbone.{unet,reference_net,temporal_blocks}.*``, and
      ``checkpoint["unet_layout"]`` records it (:func:`reorder_optimizer_states` needs it to resume).
    """
    if "current_model_state" in checkpoint:
        checkpoint["ema"] = {"state_dict": checkpoint["state_dict"], "updates": 1}
        checkpoint["state_dict"] = checkpoint.pop("current_model_state")
        checkpoint.pop("averaging_state", None)
    hparams = checkpoint.get("hyper_parameters") or {}
    if isinstance(hparams.get("unet"), dict) and "backbone" not in hparams:
        unet = hparams.pop("unet")
        hparams["backbone"] = {**unet, "name": _UNET_NAMES.get(unet.get("name"), unet.get("name"))}
        for holder in (checkpoint, checkpoint.get("ema") or {}):
            if isinstance(holder.get("state_dict"), dict):
                holder["state_dict"] = {_unet_layout_key(k): v for k, v in holder["state_dict"].items()}
        checkpoint["unet_layout"] = True
    return checkpoint


def reorder_optimizer_states(checkpoint: dict[str, Any], trainable: list[str]) -> None:
    """A checkpoint of the ``unet`` layout (see :func:`upgrade_layout`) saved its optimizer's state in that layout's
    parameter order: put it in this model's order. ``trainable``: the names of the optimizer's parameters, in its
    order (one parameter group)."""
    if not checkpoint.pop("unet_layout", False):
        return
    rank = {name: _UNET_LAYOUT_ORDER.index(_old_unet_layout_key(name).split(".")[1]) for name in trainable}
    old_order = sorted(trainable, key=rank.__getitem__)  # stable: the same order inside each submodule
    position = {name: i for i, name in enumerate(trainable)}
    for optimizer in checkpoint.get("optimizer_states") or []:
        groups = optimizer.get("param_groups") or []
        if len(groups) != 1 or len(groups[0]["params"]) != len(trainable):
            continue  # not this model's optimizer: loading it fails with Lightning's own message
        saved = groups[0]["params"]
        optimizer["state"] = {position[old_order[saved.index(index)]]: state
                              for index, state in optimizer.get("state", {}).items()}
        groups[0]["params"] = list(range(len(trainable)))


def generation_weights(checkpoint: dict[str, Any], ema: bool = True) -> dict[str, torch.Tensor]:
    """The weights to generate with: the training weights with, when ``ema`` and the checkpoint has them, the
    EMA averages of the trainable parameters in their place."""
    upgrade_layout(checkpoint)
    averages = (checkpoint.get("ema") or {}).get("state_dict") or {} if ema else {}
    return {**checkpoint["state_dict"], **averages}


def model_hparams(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The module's init arguments saved in ``checkpoint`` (without LightningCLI's ``_``-prefixed keys)."""
    hparams = checkpoint.get("hyper_parameters")
    if not hparams:
        raise CheckpointError(f"{path} holds no hyper-parameters: it was not written by emo fit")
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


def _expected(module: Any, subset: Callable[[str], bool] | None = None) -> dict[str, torch.Size]:
    skip = tuple("model." + p for p in module.model.external_weight_prefixes())
    return {k: v.shape for k, v in module.state_dict().items()
            if not k.startswith(skip) and (subset is None or subset(k))}


def _summary(keys: list[str], limit: int = 5) -> str:
    more = f" … and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str,
                     subset: Callable[[str], bool] | None = None) -> None:
    """Raise :class:`CheckpointError` naming what differs when ``state_dict`` was made by another config
    (``subset``: only the module's keys it accepts are expected, e.g. a LoRA adapter's)."""
    expected = _expected(module, subset)
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


def load_weights(module: nn.Module, path: str | Path) -> str:
    """Copy the weights of an earlier stage's checkpoint that fit (its EMA averages where it has them); report what
    was new or left out."""
    expected = _expected(module)
    state_dict = base_keys_to_wrapped(generation_weights(read_checkpoint(path)), expected)
    fitting = {k: v for k, v in state_dict.items() if k in expected and v.shape == expected[k]}
    if not fitting:
        raise CheckpointError(f"no weight of {path} fits this model: it was made for another architecture")
    module.load_state_dict(fitting, strict=False)
    new = len(set(expected) - set(fitting))
    dropped = len(set(state_dict) - set(fitting))
    return f"{len(fitting)} tensors loaded, {new} new in this model, {dropped} in the checkpoint unused"


def load_adapter(module: nn.Module, path: str | Path) -> str:
    """Copy the LoRA adapter weights of ``path`` (a checkpoint of a ``model.lora`` run) into ``module``."""
    adapter = {k: v for k, v in generation_weights(read_checkpoint(path)).items() if is_lora_key(k)}
    if not adapter:
        raise CheckpointError(f"{path} holds no LoRA adapter weights: it is not a checkpoint of a model.lora run")
    check_state_dict(module, adapter, source=f"LoRA adapter {path}", subset=is_lora_key)
    module.load_state_dict(adapter, strict=False)
    return f"{len(adapter)} adapter tensors ({sum(v.numel() for v in adapter.values()):,} parameters) applied"


def with_adapter(hparams: dict[str, Any], adapter: str | Path, base: str | Path) -> dict[str, Any]:
    """The hyper-parameters of the base model ``base`` (``hparams``) with the LoRA adapter of checkpoint ``adapter``
    applied: the module then loads both itself (``init_from`` and ``lora.weights``)."""
    adapter_hparams = model_hparams(read_checkpoint(adapter), adapter)
    if not adapter_hparams.get("lora"):
        raise CheckpointError(f"{adapter} is not a LoRA adapter (its run had no model.lora)")
    check_architecture(adapter_hparams, hparams, adapter)
    return {**hparams, "init_from": str(base), "lora": {**adapter_hparams["lora"], "weights": str(adapter)}}
