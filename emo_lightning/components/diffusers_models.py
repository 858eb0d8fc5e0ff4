"""Loading the diffusers models that components wrap: pretrained weights, or a random tiny model from a config."""

from __future__ import annotations

from typing import Any

from diffusers import ModelMixin


def load_diffusers_model(model_class: type[ModelMixin], what: str, pretrained: str | None, subfolder: str | None,
                         config: dict[str, Any] | None, **config_defaults: Any) -> ModelMixin:
    """``model_class`` from a hub id / local folder (its ``subfolder``), or randomly initialised from the ``config``
    dict on top of ``config_defaults``; ``what`` names the component in the error."""
    if pretrained:
        return model_class.from_pretrained(pretrained, subfolder=subfolder)
    if config is None:
        raise ValueError(f"{what} needs `pretrained` (hub id or local path) or a `config` dict")
    return model_class(**{**config_defaults, **config})
