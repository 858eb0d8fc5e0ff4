"""`emo` end to end in subprocesses, exactly as a user types it: fit → config.yaml + last.ckpt → predict → MP4."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from emo_lightning.media import probe_video

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def emo(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "EMO_CONFIG_DIR": str(REPO / "conf")}
    result = subprocess.run([sys.executable, "-m", "emo_lightning.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"emo {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def tiny_run(workdir) -> Path:
    # a periodic save at step 15, then last.ckpt must still hold step 20
    emo("fit", "experiment=tiny", "trainer.max_steps=20", "trainer.default_root_dir=runs/t",
        "callbacks.checkpoint.every_n_train_steps=15", cwd=workdir)
    return workdir / "runs" / "t"


@pytest.fixture(scope="module")
def media(workdir) -> tuple[Path, Path]:
    """A real photo (skimage's astronaut) and 1.3 s of 44.1 kHz stereo 16-bit audio."""
    from skimage import data

    image = workdir / "portrait.jpg"
    Image.fromarray(data.astronaut()).save(image)
    audio = workdir / "speech.wav"
    t = np.arange(int(1.3 * 44100)) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 4 * t) > 0)).astype(np.float32)
    with wave.open(str(audio), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(44100)
        f.writeframes((np.stack([tone, tone * 0.5], 1) * 32767).astype("<i2").tobytes())
    return image, audio


def test_fit_writes_the_resolved_config_checkpoint_and_offline_wandb_run(tiny_run):
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert config["trainer"]["max_steps"] == 20
    assert config["model"]["backbone"]["config"]["block_out_channels"] == [32, 64]
    assert "${" not in (tiny_run / "config.yaml").read_text()  # fully resolved
    checkpoint = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == 20
    assert checkpoint["hyper_parameters"]["stage"] == 3
    assert list((tiny_run / "wandb").glob("offline-run-*/run-*.wandb"))


def test_predict_writes_an_h264_aac_mp4_as_long_as_the_audio(tiny_run, media, workdir):
    image, audio = media
    emo("predict", f"ckpt_path={tiny_run}/checkpoints/last.ckpt", f"image={image}", f"audio={audio}",
        "output=out.mp4", cwd=workdir)
    info = probe_video(workdir / "out.mp4")
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert (info["width"], info["height"]) == (32, 32)
    assert abs(info["num_frames"] - 1.3 * 25) <= 1
    assert info["audio_duration"] == pytest.approx(1.3, abs=0.1)


def test_fit_reproduces_from_the_saved_config(tiny_run, tmp_path):
    """The saved config alone re-runs the job (run from another folder: its paths are relative)."""
    emo("fit", "--config", str(tiny_run / "config.yaml"), "--trainer.max_steps=2", "--trainer.logger=false",
        cwd=tmp_path)
    again = yaml.safe_load((tmp_path / "runs/t/config.yaml").read_text())
    original = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert again["model"] == original["model"] and again["data"] == original["data"]
    assert torch.load(tmp_path / "runs/t/checkpoints/last.ckpt", weights_only=True)["global_step"] == 2


@pytest.mark.parametrize("encoder", ["wav2vec2_tiny", "whisper_tiny", "hubert_tiny"])
def test_audio_encoder_swap_trains_and_predicts(encoder, media, workdir):
    emo("fit", "experiment=tiny", f"model/audio_encoder={encoder}", "trainer.max_steps=2", "logger=none",
        f"trainer.default_root_dir=runs/{encoder}", cwd=workdir)
    config = yaml.safe_load((workdir / f"runs/{encoder}/config.yaml").read_text())
    assert config["model"]["audio_encoder"]["name"] == encoder.split("_")[0]
    image, audio = media
    emo("predict", f"ckpt_path=runs/{encoder}/checkpoints/last.ckpt", f"image={image}", f"audio={audio}",
        f"output={encoder}.mp4", "steps=1", cwd=workdir)
    assert torch.load(workdir / f"runs/{encoder}/checkpoints/last.ckpt", weights_only=True)["global_step"] == 2
    assert abs(probe_video(workdir / f"{encoder}.mp4")["num_frames"] - 1.3 * 25) <= 1


def test_lr_schedule_warms_up_then_decays_over_max_steps(workdir):
    emo("fit", "experiment=tiny", "model.lr_scheduler=cosine", "model.lr_warmup_steps=3", "trainer.max_steps=8",
        "trainer.log_every_n_steps=1", "logger=csv", "trainer.limit_val_batches=0", "trainer.default_root_dir=runs/lr",
        cwd=workdir)
    (metrics,) = (workdir / "runs/lr/csv").glob("version_*/metrics.csv")
    lr = [float(row["train/lr"]) for row in csv.DictReader(metrics.open()) if row.get("train/lr")]
    peak = 1e-3  # the tiny config's lr
    assert len(lr) == 8 and lr[0] < lr[1] < lr[2] <= peak  # warm-up
    decay = lr[3:]
    assert decay[0] == pytest.approx(peak) and all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert decay[-1] < 0.2 * peak


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]


def test_unknown_component_name_is_a_clear_error(workdir):
    result = emo("fit", "experiment=tiny", "model.audio_encoder.name=whisperr", cwd=workdir, check=False)
    assert_clean_error(result, "unknown audio_encoder component 'whisperr'", "mel, wav2vec2")


def test_unknown_lr_scheduler_is_a_clear_error(workdir):
    result = emo("fit", "experiment=tiny", "model.lr_scheduler=cosin", cwd=workdir, check=False)
    assert_clean_error(result, "lr_scheduler must be one of", "'cosine'")


def test_unreadable_image_is_a_clear_error(tiny_run, media, workdir):
    bad = workdir / "not_an_image.png"
    bad.write_text("this is text, not a PNG")
    result = emo("predict", f"ckpt_path={tiny_run}/checkpoints/last.ckpt", f"image={bad}", f"audio={media[1]}",
                 "output=bad.mp4", cwd=workdir, check=False)
    assert_clean_error(result, "not_an_image.png")
    assert not (workdir / "bad.mp4").exists()


def test_checkpoint_from_another_config_is_a_clear_error(tiny_run, workdir):
    result = emo("fit", "experiment=tiny", "model/audio_encoder=wav2vec2_tiny",
                 f"ckpt_path={tiny_run}/checkpoints/last.ckpt", "trainer.default_root_dir=runs/x", cwd=workdir,
                 check=False)
    assert_clean_error(result, "was made by a different model config", "model.audio_encoder.name: 'mel'")


def test_corrupt_checkpoint_is_a_clear_error(media, workdir):
    bad = workdir / "corrupt.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    result = emo("predict", f"ckpt_path={bad}", f"image={media[0]}", f"audio={media[1]}", cwd=workdir, check=False)
    assert_clean_error(result, "corrupt.ckpt is not a readable PyTorch checkpoint")


def test_two_process_ddp_on_cpu(workdir):
    result = emo("fit", "experiment=tiny", "trainer.strategy=ddp", "trainer.devices=2", "trainer.max_steps=3",
                 "data.batch_size=2", "trainer.default_root_dir=runs/ddp", "logger=csv", cwd=workdir)
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    checkpoint = torch.load(workdir / "runs/ddp/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3


def test_validate_and_test_from_the_checkpoint(tiny_run, workdir):
    # emo test's held-out scoring, kept short: one item, the weight-free feature network, no face models (a tiny
    # model's 32-pixel frames hold no face they would find)
    evaluation = ("evaluate.max_items=1", "evaluate.frame_features=random_conv", "evaluate.face_detector=none",
                  "evaluate.landmarks=none", "evaluate.face_embedder=none")
    for command, metric, extra in (("validate", "val/loss", ()), ("test", "test/loss", evaluation)):
        result = emo(command, "experiment=tiny", f"ckpt_path={tiny_run}/checkpoints/last.ckpt", "logger=none",
                     "trainer.default_root_dir=runs/v", *extra, cwd=workdir)
        assert metric in result.stdout, result.stdout[-2000:]
    # emo test also generated held-out items from their first frame and audio, and scored them
    assert "test/ssim" in result.stdout and "test/fid" in result.stdout, result.stdout[-2000:]
    scores = json.loads((workdir / "runs/v/test_evaluation/metrics.json").read_text())
    assert scores["videos"] == 1 and 0 <= scores["ssim"] <= 1 and scores["sync_c"].startswith("skipped: ")
    assert len(list((workdir / "runs/v/test_evaluation/videos").glob("*.mp4"))) == 1


@pytest.mark.parametrize("vae", ["pixel", "wan_tiny"])
def test_wan_backbone_trains_and_predicts(vae, media, workdir):
    """The DiT backbone through the same CLI, with an image VAE and with Wan's causal 3-D VAE (4x in time: 8-frame
    clips are 3 latent frames decoded to 9 frames and cropped)."""
    run = f"runs/wan_{vae}"
    emo("fit", "experiment=tiny", "model/backbone=wan_tiny", f"model/vae={vae}", "trainer.max_steps=2",
        "logger=none", f"trainer.default_root_dir={run}", cwd=workdir)
    image, audio = media
    emo("predict", f"ckpt_path={run}/checkpoints/last.ckpt", f"image={image}", f"audio={audio}",
        f"output=wan_{vae}.mp4", "face_detector=none", cwd=workdir)
    info = probe_video(workdir / f"wan_{vae}.mp4")
    assert info["video_codec"] == "h264" and (info["width"], info["height"]) == (32, 32)
    assert abs(info["num_frames"] - 1.3 * 25) <= 1


def test_commands_that_do_not_train_start_without_lightning(workdir):
    """`emo plugins`, `evaluate` and `preprocess` (here stopping at a missing input, after their imports) never import
    Lightning: only fit / validate / test / predict and the quickstart run through it."""
    code = ("import sys\nfrom emo_lightning.cli import main\n"
            "for args in (['plugins'], ['evaluate', 'videos=missing', 'output=scores'],\n"
            "             ['preprocess', 'input=missing', 'output=data']):\n"
            "    try:\n        main(args)\n    except SystemExit as exit:\n        print('exit', exit.code)\n"
            "print('lightning modules:', sorted(m for m in sys.modules if m.partition('.')[0] in "
            "('lightning', 'pytorch_lightning')))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMO_CONFIG_DIR": str(REPO / "conf")}
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exit 2" in result.stdout and "missing" in result.stderr, result.stdout + result.stderr[-2000:]
    assert "lightning modules: []" in result.stdout, result.stdout[-2000:]
