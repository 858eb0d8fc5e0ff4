"""`emo plugins check <kind>.<name>`: the contract checks of one component, as a plugin author runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PLUGIN = """
    import torch
    from torch import nn
    from emo_lightning.components.base import SpeedEncoder
    from emo_lightning.registry import register

    @register("speed_encoder", "good", tiny={"output_dim": 4})
    class Good(SpeedEncoder):
        def __init__(self, output_dim=4, window=0):
            super().__init__()
            self.output_dim, self.window = output_dim, window
            self.proj = nn.Linear(1, output_dim)

        def forward(self, speed):
            return self.proj(speed[..., None])

    @register("speed_encoder", "wrong_shape")
    class WrongShape(Good):
        def forward(self, speed):
            return self.proj(speed[..., None])[:, :1]

    @register("speed_encoder", "detached")
    class Detached(Good):
        def forward(self, speed):
            return self.proj(speed[..., None]).detach() + 0 * speed[..., None]
"""


def check(target: str, plugins: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMO_PLUGIN_PATH": str(plugins), "EMO_CONFIG_DIR": str(REPO / "conf")}
    return subprocess.run([sys.executable, "-m", "emo_lightning.cli", "plugins", "check", target], cwd=plugins,
                          env=env, capture_output=True, text=True, timeout=300)


def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "my_speed.py").write_text(textwrap.dedent(PLUGIN))
    return tmp_path


def test_a_working_plugin_passes_every_check_and_says_what_was_checked(tmp_path):
    result = check("speed_encoder.good", plugin_dir(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "speed_encoder.good  (file (" in out
    for line in ("shapes and dtype         ok      outputs (2, 5, 4), float32, finite",
                 "gradient flow            ok      all 2 trainable tensors (8 parameters) receive a finite gradient",
                 "config round trip        ok", "all checks passed"):
        assert line in out, out


def test_a_wrong_output_shape_fails_with_the_contracts_message(tmp_path):
    result = check("speed_encoder.wrong_shape", plugin_dir(tmp_path))
    assert result.returncode == 1
    assert ("build + interface probe  FAILED  speed_encoder component 'wrong_shape' breaks its interface: "
            "forward(speed 2x5) returned shape (2, 1, 4), expected (2, 5, 4)") in result.stdout
    assert "1 check(s) FAILED" in result.stdout


def test_a_plugin_that_blocks_gradients_fails_the_gradient_check(tmp_path):
    result = check("speed_encoder.detached", plugin_dir(tmp_path))
    assert result.returncode == 1
    assert "gradient flow            FAILED  no output depends on a trainable parameter" in result.stdout


def test_a_built_in_passes(tmp_path):
    result = check("audio_encoder.whisper", tmp_path)
    assert result.returncode == 0 and "all checks passed" in result.stdout, result.stdout + result.stderr
