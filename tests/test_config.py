"""Every experiment and every component option composes, and LightningCLI accepts the result."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.cli import LightningCLI

from emo_lightning.config import compose_config, config_dir, to_lightning_cli

CONF = config_dir()
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
COMPONENT_OPTIONS = sorted((p.parent.name, p.stem) for p in (CONF / "model").glob("*/*.yaml"))
# the paper-size components load pretrained weights; validation swaps them for tiny ones of the same classes
# what an experiment leaves for the user to give (`???`)
REQUIRED = {"finetune_person": ["data.path=data/me", "model.init_from=runs/base/checkpoints/last.ckpt"]}
TINY = ["model/backbone=tiny", "model/vae=pixel", "model/audio_encoder=wav2vec2_tiny", "model/temporal_block=tiny",
        "model/speed_encoder=tiny", "model.resolution=32"]


def parse(cfg: dict, subcommand: str = "fit") -> LightningCLI:
    """LightningCLI validation (types from signatures) and instantiation, without running."""
    from emo_lightning.training import EMOLightningModule

    args = {k: v for k, v in to_lightning_cli(cfg).items() if k not in ("ckpt_path", "weights_only")}
    return LightningCLI(EMOLightningModule, subclass_mode_data=True, run=False, args=args,
                        save_config_callback=None, auto_configure_optimizers=False)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_deterministically(experiment):
    overrides = [f"experiment={experiment}", *REQUIRED.get(experiment, [])]
    first = compose_config("fit", overrides)
    assert first == compose_config("fit", overrides)
    assert {"trainer", "model", "data", "logger", "callbacks", "seed_everything"} <= set(first)
    assert first["data"]["stage"] == first["model"]["stage"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_is_accepted_by_lightning_cli(experiment, tmp_path):
    overrides = [f"experiment={experiment}", *REQUIRED.get(experiment, []), *TINY, "logger=csv",
                 f"trainer.default_root_dir={tmp_path}", "data.num_workers=0"]
    cli = parse(compose_config("fit", overrides))
    assert cli.model.hparams.stage == compose_config("fit", overrides)["model"]["stage"]
    assert cli.trainer.default_root_dir == str(tmp_path)


@pytest.mark.parametrize("group,option", COMPONENT_OPTIONS, ids=[f"{g}={o}" for g, o in COMPONENT_OPTIONS])
def test_every_component_option_composes(group, option):
    cfg = compose_config("fit", ["experiment=tiny", f"model/{group}={option}"])
    assert cfg["model"][group]["name"]


def test_command_line_group_override_beats_the_experiment():
    cfg = compose_config("fit", ["experiment=tiny", "model/audio_encoder=wav2vec2_tiny"])
    assert cfg["model"]["audio_encoder"]["name"] == "wav2vec2"


def test_strategy_names_resolve_to_the_config_files():
    ddp = to_lightning_cli(compose_config("fit", ["experiment=tiny", "trainer.strategy=ddp"]))
    assert ddp["trainer"]["strategy"]["class_path"].endswith("DDPStrategy")
    assert ddp["trainer"]["strategy"]["init_args"]["find_unused_parameters"] is True
    fsdp = to_lightning_cli(compose_config("fit", ["trainer.strategy=fsdp"]))
    assert fsdp["trainer"]["strategy"]["class_path"].endswith("FSDPStrategy")
    plain = to_lightning_cli(compose_config("fit", ["trainer.strategy=ddp_spawn"]))
    assert plain["trainer"]["strategy"] == "ddp_spawn"


def test_config_dir_is_found_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_dir() == CONF
    monkeypatch.setenv("EMO_CONFIG_DIR", str(tmp_path))
    (tmp_path / "fit.yaml").write_text("a: 1\n")
    assert config_dir() == Path(tmp_path).resolve()


def test_a_plain_install_carries_the_config_tree(tmp_path):
    """A wheel (what `pip install .` installs) holds conf/, and its emo_lightning finds it from any folder."""
    repo, source = Path(__file__).resolve().parents[1], tmp_path / "source"  # a copy: the build leaves build/
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(repo / name, source)
    for name in ("emo_lightning", "conf"):
        shutil.copytree(repo / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
             "-w", str(tmp_path / "wheel")]
    subprocess.run(build, check=True, cwd=tmp_path, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("*.whl"))
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    probe = ("from emo_lightning.config import config_dir, compose_config; "
             "print(config_dir()); print(compose_config('fit', ['experiment=tiny'])['model']['resolution'])")
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("EMO_CONFIG_DIR", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", probe], check=True, cwd=elsewhere, env=env, capture_output=True,
                         text=True).stdout.split()
    assert Path(out[0]) == site / "emo_lightning" / "conf"
    assert out[1] == "32"
