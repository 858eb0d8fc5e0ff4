"""The held-out evaluation's metrics, checked on videos whose answer is known, and a short quickstart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emo_lightning.data import FaceIdentity, make_clip
from emo_lightning.evaluation import (
    boundary_ratio,
    estimate_poses,
    identity_color_error,
    measure_mouth_series,
    pearson,
)
from emo_lightning.media import probe_video
from emo_lightning.model.checkpoint import read_checkpoint
from emo_lightning.quickstart import parse_arguments

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(7)
    identity = FaceIdentity.sample(rng)
    return identity, make_clip(rng, 100, identity=identity)


def test_pearson_basics():
    x = np.arange(10.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(x, np.ones(10)) == 0.0


def test_pose_is_recovered_from_pixels(clip):
    identity, data = clip
    error = np.abs(estimate_poses(data["frames"], identity) - data["pose"])
    assert error.mean() < 2.5  # the 5-degree search grid


def test_sync_metric_is_about_one_on_ground_truth_and_zero_when_shuffled(clip):
    identity, data = clip
    mouth = measure_mouth_series(data["frames"], identity)
    assert pearson(mouth, data["loudness"]) > 0.9
    shuffled = np.random.default_rng(0).permutation(len(mouth))
    assert abs(pearson(measure_mouth_series(data["frames"][shuffled], identity), data["loudness"])) < 0.3


def test_boundary_ratio_sees_a_jump_at_every_clip_boundary(clip):
    frames = clip[1]["frames"]
    assert boundary_ratio(frames, 8) < 1.6
    jumpy = frames.copy()
    for start in range(8, len(frames), 8):  # every clip brightened differently
        jumpy[start:start + 8] = np.clip(jumpy[start:start + 8].astype(int) + (start % 16) * 3, 0, 255)
    assert boundary_ratio(jumpy, 8) > 3


def test_identity_color_error_separates_identities(clip):
    identity, data = clip
    other = make_clip(np.random.default_rng(99), 10)
    same = identity_color_error(data["frames"], data["frames"][0], data["mask"])
    different = identity_color_error(other["frames"], data["frames"][0], data["mask"])
    assert same < 5 < different


@pytest.mark.slow
def test_short_quickstart_writes_video_metrics_and_plot(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "EMO_CONFIG_DIR": str(REPO / "conf")}
    subprocess.run([sys.executable, "-m", "emo_lightning.cli", "quickstart", "output=qs", "videos=1", "seconds=0.8",
                    "image_steps=3", "video_steps=2", "logger=none", "video.model.lip_loss_weight=7"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    metrics = json.loads((tmp_path / "qs/metrics.json").read_text())
    for key in ("sync_pearson", "sync_pearson_audio_zeroed", "sync_pearson_ground_truth", "identity_color_error",
                "boundary_ratio", "minutes"):
        assert np.isfinite(metrics[key]), key
    assert metrics["sync_pearson_ground_truth"] > 0.8
    assert metrics["train_steps"] == {"images": 3, "video": 2}
    info = probe_video(tmp_path / "qs/sample.mp4")
    assert info["num_frames"] == 20 and info["audio_codec"] == "aac"
    assert (tmp_path / "qs/sync.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = {phase: read_checkpoint(tmp_path / f"qs/{phase}/checkpoints/last.ckpt")["hyper_parameters"]
               ["lip_loss_weight"] for phase in ("images", "video")}
    assert weights == {"images": 1.0, "video": 7.0}  # the video. override reached the clip phase only


def test_quickstart_arguments_by_phase():
    output, overrides, kwargs = parse_arguments(["output=o", "video_steps=5", "model/backbone=wan_tiny",
                                                 "video.model.lip_loss_weight=20", "+images.trainer.foo=1"])
    assert output == "o" and overrides == ["model/backbone=wan_tiny"] and kwargs["video_steps"] == 5
    assert kwargs["video_overrides"] == ["model.lip_loss_weight=20"]
    assert kwargs["image_overrides"] == ["+trainer.foo=1"]
