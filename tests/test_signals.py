"""Real SIGTERM and SIGINT sent to running `emo` commands (after their first progress line): each ends within 10 s
with the shell's status for the signal (143, 130), prints one line, and leaves no partial file behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from emo_lightning import interrupt
from emo_lightning.media import Mp4Writer
from emo_lightning.progress import ProgressLog

PROGRESS = re.compile(r": \d+(/\d+)? \w+")  # a plain progress line: "generating o.mp4: 3/400 step (1%), ..."


class Command:
    """``python -m emo_lightning.cli <args>`` in ``cwd``, its stderr (not a terminal: plain progress lines) read as it
    comes."""

    def __init__(self, *args: str, cwd: Path):
        env = {**os.environ, "EMO_CONFIG_DIR": str(REPO / "conf"), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
               "EMO_PROGRESS_SECONDS": "0"}
        self.process = subprocess.Popen([sys.executable, "-m", "emo_lightning.cli", *args], cwd=cwd, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self.reader.start()

    def wait_for(self, pattern: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"no line matching {pattern!r}; stderr:\n{''.join(self.lines)[-3000:]}")
            time.sleep(0.2)

    def stop(self, signum: int) -> tuple[int, float, list[str]]:
        """Send ``signum``; the exit status, the seconds it took, and the lines after the progress lines read by
        then (progress lines still in the pipe left out)."""
        read = len(self.lines)
        start = time.monotonic()
        self.process.send_signal(signum)
        try:
            status = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"still running 10 s after {signal.Signals(signum).name}:\n{''.join(self.lines)[-3000:]}")
        seconds = time.monotonic() - start
        self.reader.join(timeout=5)
        after = [line.rstrip("\n") for line in self.lines[read:] if line.strip() and not PROGRESS.search(line)]
        return status, seconds, after


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_sigterm_stops_predict_within_a_denoising_step_and_leaves_no_partial_video(tiny_checkpoint, sample, tmp_path):
    """The issue's case: ``kill <pid>`` used to leave it generating (Lightning's handler took SIGTERM)."""
    out = tmp_path / "out"
    command = Command("predict", f"ckpt_path={tiny_checkpoint}", f"image={sample('portrait_statue.jpg')}",
                      f"audio={sample('speech_16k_stereo.wav')}", f"output={out / 'o.mp4'}", "steps=1000", "fps=8",
                      "face_detector=opencv_haar", cwd=tmp_path)
    command.wait_for(r"generating o\.mp4: [1-9]\d*/")  # a denoising step made: the partial file is open
    status, seconds, after = command.stop(signal.SIGTERM)
    assert status == 143, after
    assert after == ["emo predict: stopped by SIGTERM"]
    assert seconds < 10
    assert files(out) == []


def test_sigint_stops_evaluate_between_two_videos_and_writes_no_report(sample, tmp_path):
    videos = [str(sample(f"talking_{i}.mp4")) for i in range(1, 6)] * 8
    (tmp_path / "videos.txt").write_text("\n".join(videos))
    out = tmp_path / "scores"
    command = Command("evaluate", f"videos={tmp_path / 'videos.txt'}", f"output={out}", "face_detector=none",
                      "landmarks=none", "face_embedder=none", "frame_features=random_conv",
                      "video_features=random_conv", "sync_model=none", "options.fvd_frames=8", cwd=tmp_path)
    command.wait_for(r"emo evaluate: [1-9]\d*/40 video")
    status, seconds, after = command.stop(signal.SIGINT)
    assert status == 130, after
    assert after == ["emo evaluate: stopped by SIGINT"]
    assert not out.exists() or files(out) == []


@pytest.mark.slow
def test_sigterm_stops_preprocess_workers_and_removes_their_unfinished_videos(sample, tmp_path):
    """Two worker processes: they stop at their next segment; finished videos keep their reports (a re-run skips
    them), unfinished ones leave nothing."""
    inputs = tmp_path / "videos"
    inputs.mkdir()
    for i in range(1, 6):
        os.symlink(sample(f"talking_{i}.mp4"), inputs / f"talking_{i}.mp4")
    out = tmp_path / "data"
    command = Command("preprocess", f"input={inputs}", f"output={out}", "workers=2", "resolution=64",
                      "segment_seconds=0.5", cwd=tmp_path)
    command.wait_for(r"emo preprocess: 1/5 video")  # one video done, the workers busy with the next two
    status, seconds, after = command.stop(signal.SIGTERM)
    assert status == 143, after
    assert after == ["emo preprocess: stopped by SIGTERM"]
    assert not (out / ".work").exists()
    reports = {p.stem for p in (out / "reports").glob("*.json")}
    assert 1 <= len(reports) < 5
    # every chunk in data/ belongs to a finished (reported) video
    assert all(any(f"chunk-{r}-" in p.name for r in reports) for p in (out / "data").glob("chunk-*"))


def test_a_deferred_region_finishes_then_stops_and_a_second_signal_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    restore = interrupt.stop_handlers()
    try:
        with pytest.raises(interrupt.Interrupted) as stopped, interrupt.deferred("after saving"):
            os.kill(os.getpid(), signal.SIGTERM)
            finished = True  # the region goes on to its end
        assert finished and stopped.value.exit_code == 143 and str(stopped.value) == "stopped by SIGTERM after saving"
        with pytest.raises(interrupt.Interrupted), interrupt.deferred():  # already asked once: at once
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("a second signal must not wait for the region's end")
    finally:
        restore()
    assert signal.getsignal(signal.SIGINT) is before


def test_progress_log_prints_plain_lines_with_rate_and_time_left(capsys):
    with ProgressLog("emo evaluate", total=4, unit="video", every=0) as log:
        for _ in range(2):
            log.update()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "emo evaluate: 0/4 video (0%)"
    assert re.fullmatch(r"emo evaluate: 2/4 video \(50%\), [\d.]+ video/s, \d+s left", lines[-1])


@pytest.mark.slow
def test_sigterm_closes_the_demo_server_and_deletes_its_videos(tiny_checkpoint, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EMO_CONFIG_DIR": str(REPO / "conf"), "TMPDIR": str(tmp_path)}
    process = subprocess.Popen([sys.executable, str(REPO / "demo" / "app.py"), "--ckpt", str(tiny_checkpoint),
                                "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the demo did not start:\n{process.stderr.read()[-3000:]}")
            time.sleep(0.5)
    assert len(list(tmp_path.glob("emo-demo-*"))) == 1  # the folder of the videos it makes
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 143
    assert process.stderr.read().strip().splitlines()[-1] == "demo: stopped by SIGTERM; server closed"
    assert list(tmp_path.glob("emo-demo-*")) == []


@pytest.mark.slow
def test_sigterm_ends_quickstart_training_at_a_step_end_with_its_checkpoint_saved(tmp_path):
    """Training keeps Lightning's save-then-exit; the command still ends with one line of its own and 143."""
    out = tmp_path / "q"
    command = Command("quickstart", f"output={out}", "image_steps=200", "video_steps=2", "videos=1", "seconds=1",
                      "logger=csv", cwd=tmp_path)
    command.wait_for(r"emo quickstart images: [1-9]\d*/200 step")
    status, seconds, after = command.stop(signal.SIGTERM)
    assert status == 143, after
    checkpoint = out / "images" / "checkpoints" / "last.ckpt"
    assert after[-1] == f"emo quickstart: stopped by SIGTERM after saving {checkpoint}; the same command resumes"
    assert checkpoint.is_file() and not (out / "video").exists()


def test_a_writer_deletes_the_partial_files_of_killed_writers_of_its_output_and_no_live_ones(tmp_path):
    """SIGKILL cannot be caught: what such a writer left is removed by the next writer of the same file."""
    killed = tmp_path / ".out.mp4.0123abcd.partial"  # as a SIGKILLed `emo predict` leaves it
    killed.write_bytes(b"half a video")
    other = tmp_path / ".other.mp4.0123abcd.partial"
    other.write_bytes(b"another output's")
    with Mp4Writer(tmp_path / "out.mp4", fps=8, width=16, height=16) as live:
        assert not killed.exists() and other.exists()
        with Mp4Writer(tmp_path / "out.mp4", fps=8, width=16, height=16) as second:
            assert live._tmp_path.exists()  # locked by a live writer: kept
            second.write(np.zeros((2, 16, 16, 3), np.uint8))
        live.write(np.zeros((2, 16, 16, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.mp4.0123abcd.partial", "out.mp4"]
