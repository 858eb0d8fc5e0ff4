"""Hydra front end: compose ``conf/`` with overrides into a LightningCLI config.

Hydra's compose API runs the same way on every rank (no ``@hydra.main``, no run directories, no
working-directory change), so DDP's re-launched processes build the identical config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from emo_lightning.pipeline.settings import DEFAULTS, GenerationOverrides

CONFIG_DIR_ENV = "EMO_CONFIG_DIR"

# ``${generation:steps}`` in conf/: a default of the generation settings, defined once in code
OmegaConf.register_new_resolver("generation", lambda key: getattr(DEFAULTS, key), replace=True)
# ``- generation_controls`` in a defaults list: every generation control, typed, None unless overridden
ConfigStore.instance().store(name="generation_controls", node=GenerationOverrides)


def config_dir() -> Path:
    """``$EMO_CONFIG_DIR``, else ``./conf``, else the tree inside an installed package (``emo_lightning/conf``, copied
    there by setup.py), else the repository's ``conf/`` (editable installs)."""
    package = Path(__file__).resolve().parent
    candidates = [os.environ.get(CONFIG_DIR_ENV), "conf", package / "conf", package.parent / "conf"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "fit.yaml").is_file():
            return Path(candidate).resolve()
    raise FileNotFoundError(f"no config tree found: set {CONFIG_DIR_ENV} to a folder holding fit.yaml")


def compose_config(primary: str, overrides: list[str]) -> dict[str, Any]:
    """Compose ``conf/<primary>.yaml`` with Hydra overrides into a plain, resolved dict."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=primary, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def _component(spec: dict[str, Any]) -> dict[str, Any]:
    """``{class_path, **args}`` → LightningCLI's ``{class_path, init_args}``."""
    spec = dict(spec)
    return {"class_path": spec.pop("class_path"), "init_args": spec}


def _strategy(strategy: Any) -> Any:
    """A strategy named after a file in ``conf/strategy/`` becomes that file's settings."""
    if isinstance(strategy, str):
        path = config_dir() / "strategy" / f"{strategy}.yaml"
        if path.is_file():
            return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return strategy


def to_lightning_cli(cfg: dict[str, Any]) -> dict[str, Any]:
    """Map the Hydra tree (flat component args, named callbacks, a logger group) to LightningCLI's layout."""
    cfg = dict(cfg)
    cfg.pop("resume", None)  # read by `emo fit` itself (cli.fit_config)
    trainer = dict(cfg.pop("trainer"))
    logger = cfg.pop("logger", None)
    if logger and "logger" not in trainer:
        trainer["logger"] = _component(logger)
    callbacks = cfg.pop("callbacks", None) or {}
    trainer["callbacks"] = [_component(c) for c in callbacks.values() if c]
    trainer["strategy"] = _strategy(trainer.get("strategy", "auto"))
    if "data" in cfg and "class_path" in cfg["data"]:
        cfg["data"] = _component(cfg["data"])
    return {**cfg, "trainer": trainer}
