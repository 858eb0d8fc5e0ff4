"""What a run shows: the offline W&B run of `emo fit` holds the sample videos (with sound) and the training and
validation scalars; the same videos lie under the run directory."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2

from emo_lightning.media import probe_video

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
BLOCK, HEADER = 32768, 7  # the .wandb file: LevelDB-log records (crc32, length, type) in 32 KiB blocks


def wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of an offline run's ``run-<id>.wandb`` file."""
    data, records, pending, pos = path.read_bytes(), [], b"", HEADER  # the file starts with a 7-byte header
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a record header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        pending += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history_keys(path: Path) -> dict[str, str]:
    """Logged history keys (nested ones joined by '/') → their last JSON value."""
    keys = {}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                keys[item.key or "/".join(item.nested_key)] = item.value_json
    return keys


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("monitoring") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "EMO_CONFIG_DIR": str(REPO / "conf"), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "emo_lightning.cli", "fit", "experiment=tiny", "trainer.max_steps=2",
         "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
         "data.num_workers=0", "callbacks.samples.num_videos=1", "callbacks.samples.seconds=0.64",
         f"trainer.default_root_dir={root}"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_sample_videos_with_sound_under_the_run_directory(run):
    video = run / "samples" / "step_2" / "held_out_0.mp4"
    info = probe_video(video)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac" and info["num_frames"] == 16


def test_offline_wandb_run_holds_the_videos_and_the_scalars(run):
    (run_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    keys = history_keys(run_file)
    for key in ("train/loss", "train/lr", "train/grad_norm", "train/step_time", "train/frames_per_s", "val/loss",
                "val/sync_pearson", "val/identity_color_error", "val/boundary_ratio"):
        assert key in keys, f"{key} not logged; logged: {sorted(keys)}"
    assert keys["samples/held_out_0/_type"] == '"video-file"'
    (media,) = run_file.parent.glob("files/media/videos/samples/held_out_0_*.mp4")
    assert probe_video(media)["audio_codec"] == "aac"


@pytest.mark.gpu
def test_cuda_run_logs_peak_memory_and_keeps_the_cuda_random_state(tmp_path):
    """On CUDA, with the EMA on the GPU: peak memory is logged and checkpoints hold the CUDA random state."""
    import lightning.pytorch as pl
    from conftest import tiny_module

    from emo_lightning.data import SyntheticDataModule
    from emo_lightning.model.checkpoint import read_checkpoint
    from emo_lightning.training.ema import EMA
    from emo_lightning.training.monitor import TrainingMonitor
    from emo_lightning.training.rng import TrainingRandomState

    trainer = pl.Trainer(max_steps=3, accelerator="gpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                         log_every_n_steps=1, default_root_dir=tmp_path,
                         callbacks=[TrainingMonitor(), TrainingRandomState(), EMA(decay=0.5)])
    trainer.fit(tiny_module(), SyntheticDataModule(stage=3, batch_size=1, train_samples=4, val_samples=1))
    assert trainer.callback_metrics["train/peak_memory_gb"] > 0
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = read_checkpoint(tmp_path / "last.ckpt")
    assert "cuda" in checkpoint["rng_states"][0]
