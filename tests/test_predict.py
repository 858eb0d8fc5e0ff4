"""`emo predict` on real media (../shared/samples) with a tiny checkpoint: the video's streams and length,
determinism by seed, per-job controls and a batch that goes on past a failed job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, tiny_module
from PIL import Image

from emo_lightning.cli import main
from emo_lightning.media import MediaError, probe_video, read_video
from emo_lightning.pipeline.portrait import load_portrait

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]



def emo_predict(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMO_CONFIG_DIR": str(REPO / "conf"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "emo_lightning.cli", "predict", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_predict_writes_h264_aac_video_as_long_as_the_audio(tiny_checkpoint, sample, tmp_path):
    audio = sample("speech_44k_stereo.wav")  # 7.5 s, 44.1 kHz stereo
    result = emo_predict(f"ckpt_path={tiny_checkpoint}", f"image={sample('portrait_statue.jpg')}",
                         f"audio={audio}", "output=out.mp4", "steps=2", "fps=8", cwd=tmp_path)  # face found by Haar
    assert result.returncode == 0, result.stderr[-3000:]
    assert "clip 8/8" in result.stderr  # the progress bar, per step with the clip number
    assert "wrote out.mp4" in result.stdout
    info = probe_video(tmp_path / "out.mp4")
    assert (info["video_codec"], info["audio_codec"]) == ("h264", "aac")
    assert (info["width"], info["height"], info["fps"]) == (32, 32, 8.0)
    assert info["num_frames"] == 60  # round(7.5 s × 8 fps)
    assert info["duration"] == pytest.approx(7.5, abs=0.15)
    assert info["audio_duration"] == pytest.approx(7.5, abs=0.1)


def test_batch_is_deterministic_by_seed_applies_each_jobs_controls_and_survives_a_bad_job(
        tiny_checkpoint, sample, tmp_path, monkeypatch, capfd):
    """In-process (the same `emo` entry point, without a second interpreter start-up)."""
    image, audio = sample("portrait_painting.jpg"), sample("speech_16k_stereo.wav")
    jobs = [
        {"image": str(image), "audio": str(audio), "output": "out/a.mp4", "seed": 1},
        {"image": str(image), "audio": str(audio), "output": "out/again.mp4", "seed": 1},
        {"image": "missing.png", "audio": str(audio), "output": "out/bad.mp4"},
        {"image": str(image), "audio": str(audio), "output": "out/other.mp4", "seed": 2},
        {"image": str(image), "audio": str(audio), "output": "out/dpm.mp4", "sampler": "dpmsolver++",
         "resolution": 48, "fps": 2, "face_detector": "opencv_haar"},
    ]
    (tmp_path / "jobs.jsonl").write_text("\n".join(json.dumps(job) for job in jobs))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", f"ckpt_path={tiny_checkpoint}", "jobs=jobs.jsonl", "face_detector=none", "steps=2",
              "fps=4", "guidance_audio=1"])
    stderr = capfd.readouterr().err
    assert exit_info.value.code == 2
    assert "1 of 5 jobs failed" in stderr and "missing.png" in stderr, stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "again.mp4", "dpm.mp4", "other.mp4"]
    first, again, other = (read_video(out / name)[0] for name in ("a.mp4", "again.mp4", "other.mp4"))
    assert first.shape == (32, 32, 32, 3)  # 8 s at 4 fps
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 1.0
    info = probe_video(out / "dpm.mp4")
    assert (info["width"], info["fps"], info["num_frames"]) == (48, 2.0, 16)


def test_a_portrait_without_a_face_is_an_error_naming_the_file(tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 100, 3), 90, np.uint8)).save(blank)
    with pytest.raises(MediaError, match=f"no face found in {blank} by the 'opencv_haar' face detector"):
        load_portrait(blank, 32, "opencv_haar")
    image, mask = load_portrait(blank, 32, "none")  # no detector: the centre and a central face box
    assert image.shape == (3, 32, 32) and mask.shape == (1, 32, 32) and 0 < mask.mean() < 1


def test_progress_is_reported_after_every_denoising_step():
    module = tiny_module().eval()
    reports = []
    clips = module.pipeline().clips(torch.zeros(1, 3, 32, 32), torch.randn(1, 8000) * 0.1, torch.ones(1, 1, 32, 32),
                                    total_frames=12, on_step=reports.append, steps=2, guidance_reference=1.0,
                                    guidance_audio=1.0)
    assert [c.shape[2] for c in clips] == [8, 4]
    assert [(r.step, r.clip) for r in reports] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert {(r.total, r.clips) for r in reports} == {(4, 2)}
