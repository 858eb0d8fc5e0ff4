"""Registry behaviour: lookup errors, the three plugin sources, and contract violations at build time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from emo_lightning import registry
from emo_lightning.registry import PluginContractError, RegistryError


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(RegistryError) as err:
        registry.get("audio_encoder", "whisperr")
    message = str(err.value)
    assert "'whisperr'" in message and "mel" in message and "wav2vec2" in message


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(RegistryError, match="kinds are: backbone, vae, audio_encoder"):
        registry.get("audio_encoders", "mel")


def test_the_kinds_come_from_the_one_kinds_table():
    from emo_lightning.components.kinds import KINDS

    assert registry.KINDS is KINDS
    assert all(kind.name == name and kind.description for name, kind in KINDS.items())


def test_the_evaluated_kinds_are_the_component_groups_of_the_evaluate_config():
    import yaml

    from emo_lightning.components.kinds import EVALUATED_KINDS

    defaults = yaml.safe_load((Path(__file__).parents[1] / "conf" / "evaluate.yaml").read_text())["defaults"]
    groups = [next(iter(d)) for d in defaults if isinstance(d, dict)]
    assert list(EVALUATED_KINDS) == [g for g in groups if g in registry.KINDS] == groups


@pytest.mark.parametrize("spec", ["tanh_buckets", {"name": "tanh_buckets"},
                                  OmegaConf.create({"name": "tanh_buckets", "window": 1})])
def test_build_takes_a_name_or_a_mapping_with_a_name(spec):
    encoder = registry.build("speed_encoder", spec, config_key="model.speed_encoder", output_dim=16, hidden_dim=16)
    assert encoder.output_dim == 16 and encoder.window == (1 if "window" in spec else 2)


def test_a_config_that_sets_a_derived_argument_is_refused_naming_its_key():
    with pytest.raises(registry.SpecError, match=r"^model.speed_encoder: \['output_dim'\] are derived from the other"):
        registry.build("speed_encoder", {"name": "tanh_buckets", "output_dim": 4}, config_key="model.speed_encoder",
                       output_dim=16)


@pytest.mark.parametrize("spec", [{"pretrained": "x"}, {"name": ""}, 3, None])
def test_a_malformed_spec_is_refused_naming_its_key(spec):
    with pytest.raises(ValueError, match="^model.vae must be a registered name or a mapping with a `name` key, got"):
        registry.build("vae", spec, config_key="model.vae")


def test_an_unknown_name_in_a_config_names_its_key_and_the_registered_names():
    with pytest.raises(RegistryError, match=r"^model.vae: unknown vae component 'sdd'. Registered vae components: "
                                            r"pixel, sd"):
        registry.build("vae", {"name": "sdd"}, config_key="model.vae")


def test_example_plugin_package_registers_through_its_entry_point():
    entry = registry.entry("temporal_block", "conv1d")
    assert entry.source == "entry point (emo-temporal-conv)"
    block = registry.build("temporal_block", "conv1d", channels=16, speed_dim=8, **entry.tiny_config())
    assert type(block).__module__ == "emo_temporal_conv"


def _write_plugin(directory, name, body):
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
    from torch import nn
    from emo_lightning.components.base import SpeedEncoder
    from emo_lightning.components.windows import sliding_window
    from emo_lightning.registry import register

    @register("speed_encoder", "{name}", tiny={{"output_dim": 4}})
    class Linear(SpeedEncoder):
        def __init__(self, output_dim=4, window=1):
            super().__init__()
            self.output_dim, self.window = output_dim, window
            self.proj = nn.Linear(2 * window + 1, output_dim)

        def forward(self, speed):
            return self.proj(sliding_window(speed[..., None], self.window).flatten(2))
"""


def test_plugin_file_from_a_path_registers_and_builds(tmp_path):
    path = _write_plugin(tmp_path, "my_speed", GOOD.format(name="file_linear"))
    registry.load_plugin_paths([tmp_path])
    entry = registry.entry("speed_encoder", "file_linear")
    assert entry.source == f"file ({path})"
    assert registry.build("speed_encoder", "file_linear").output_dim == 4


def test_plugin_directory_from_the_environment_variable(tmp_path, monkeypatch):
    _write_plugin(tmp_path, "env_speed", GOOD.format(name="env_linear"))
    monkeypatch.setenv(registry.PLUGIN_PATH_ENV, str(tmp_path))
    registry.discover()
    assert registry.entry("speed_encoder", "env_linear").source.startswith("file (")


def test_plugin_with_a_wrong_output_shape_fails_at_build_naming_it(tmp_path):
    _write_plugin(tmp_path, "bad_shape", """
        import torch
        from emo_lightning.components.base import SpeedEncoder
        from emo_lightning.registry import register

        @register("speed_encoder", "bad_shape")
        class BadShape(SpeedEncoder):
            output_dim, window = 8, 0
            def forward(self, speed):
                return torch.zeros(speed.shape[0], 8)  # forgot the frame axis
    """)
    registry.load_plugin_paths([tmp_path])
    with pytest.raises(PluginContractError, match=r"speed_encoder component 'bad_shape' breaks its interface"):
        registry.build("speed_encoder", "bad_shape")


def test_plugin_missing_a_method_fails_at_build_naming_it(tmp_path):
    _write_plugin(tmp_path, "no_decode", """
        from emo_lightning.components.base import VAE
        from emo_lightning.registry import register

        @register("vae", "no_decode")
        class NoDecode(VAE):
            latent_channels, downsample = 3, 1
            def encode(self, images):
                return images
    """)
    registry.load_plugin_paths([tmp_path])
    with pytest.raises(PluginContractError, match=r"vae component 'no_decode' does not implement .*decode"):
        registry.build("vae", "no_decode")


def test_plugin_that_is_not_a_component_fails_at_build(tmp_path):
    _write_plugin(tmp_path, "not_module", """
        from emo_lightning.registry import register

        @register("face_locator", "not_a_module")
        def locator(latent_channels, downsample):
            return "a string"
    """)
    registry.load_plugin_paths([tmp_path])
    with pytest.raises(PluginContractError, match=r"'not_a_module' built a str, which is not a .*FaceLocator"):
        registry.build("face_locator", "not_a_module", latent_channels=4, downsample=8)


def test_face_model_plugins_that_break_their_promises_fail_at_build(tmp_path):
    """Landmarks without the lips, landmarks partly NaN, and an embedding that is not unit-norm are refused."""
    _write_plugin(tmp_path, "bad_faces", """
        import numpy as np
        from emo_lightning.components.base import FaceEmbedder, FaceLandmarks
        from emo_lightning.registry import register

        @register("landmarks", "no_lips")
        class NoLips(FaceLandmarks):
            num_points, regions = 4, {"left_eye": np.array([0, 1]), "right_eye": np.array([2, 3])}
            def detect(self, image, box=None):
                return np.zeros((4, 2), np.float32)

        @register("landmarks", "half_found")
        class HalfFound(NoLips):
            regions = {**NoLips.regions, "lips_outer": np.array([0, 1, 2]), "lips_inner": np.array([1, 2, 3])}
            def detect(self, image, box=None):
                return np.array([[1, 1], [2, 2], [np.nan, np.nan], [3, 3]], np.float32)

        @register("face_embedder", "raw_vector")
        class RawVector(FaceEmbedder):
            dim = 3
            def embed(self, image, box=None):
                return np.array([1, 2, 3], np.float32)  # forgot to L2-normalise
    """)
    registry.load_plugin_paths([tmp_path])
    with pytest.raises(PluginContractError, match=r"'no_lips' breaks its interface: regions lack \['lips_outer'"):
        registry.build("landmarks", "no_lips")
    with pytest.raises(PluginContractError, match="'half_found' breaks .* 2 non-finite of 8 values"):
        registry.build("landmarks", "half_found")
    with pytest.raises(PluginContractError, match="'raw_vector' breaks .* norm 3.7417, expected 1"):
        registry.build("face_embedder", "raw_vector")


def test_plugin_file_that_fails_to_import_names_the_file(tmp_path):
    path = _write_plugin(tmp_path, "broken", "import this_package_does_not_exist\n")
    with pytest.raises(RegistryError, match=f"plugin file {path} failed to import: ModuleNotFoundError"):
        registry.load_plugin_paths([path])


def test_missing_plugin_path_is_an_error(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        registry.load_plugin_paths([tmp_path / "nowhere"])


def test_emo_plugins_lists_every_kind_name_and_source():
    out = subprocess.run([sys.executable, "-m", "emo_lightning.cli", "plugins"], capture_output=True, text=True,
                         check=True).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["kind", "name", "source", "status"]
    rows = {tuple(line.split()[:2]): line for line in lines[1:]}
    for kind in registry.KINDS:
        assert any(k == kind for k, _ in rows), f"kind {kind} missing from `emo plugins`"
    assert "built-in" in rows[("audio_encoder", "mel")] and rows[("audio_encoder", "mel")].endswith("ok")
    assert "entry point (emo-temporal-conv)" in rows[("temporal_block", "conv1d")]


def test_emo_plugins_reports_a_plugin_that_fails_to_import(tmp_path):
    """An entry point whose module is broken is listed with the reason, not a crash."""
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[emo_lightning.plugins]\nvae.broken = no_such_module:VAE\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "emo_lightning.cli", "plugins"], capture_output=True, text=True,
                         check=True, env=env).stdout
    line = next(line for line in out.splitlines() if line.startswith("vae") and " broken " in line)
    assert "entry point (broken-plugin)" in line and "import failed: ModuleNotFoundError" in line


def test_a_plugin_component_is_selected_from_the_config_alone():
    from conftest import tiny_batch, tiny_module

    module = tiny_module("~model.temporal_block", "+model.temporal_block={name: conv1d, norm_num_groups: 8}")
    blocks = list(module.model.backbone.temporal_blocks.values())
    assert blocks and all(type(b).__name__ == "TemporalConvBlock" for b in blocks)
    loss = module.training_step(tiny_batch(stage=3), 0)
    loss.backward()
    assert all(p.grad is not None for b in blocks for p in b.parameters())
