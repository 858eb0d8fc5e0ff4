"""The Gradio demo, launched as a user launches it (a subprocess on a free localhost port) and driven with
gradio_client, then once in a real headless browser (Debian's chromium through Playwright)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from emo_lightning.media import probe_video
from emo_lightning.model.checkpoint import model_hparams, read_checkpoint

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def media(sample, tmp_path_factory) -> dict[str, Path]:
    """A 2 s excerpt of real speech (44.1 kHz stereo), the full 7.5 s file, a portrait and a faceless image."""
    folder = tmp_path_factory.mktemp("media")
    speech = sample("speech_44k_stereo.wav")
    with wave.open(str(speech)) as src, wave.open(str(folder / "short.wav"), "wb") as dst:
        dst.setparams(src.getparams())
        dst.writeframes(src.readframes(2 * src.getframerate()))
    Image.fromarray(np.full((200, 160, 3), 90, np.uint8)).save(folder / "blank.png")
    return {"short": folder / "short.wav", "long": speech, "portrait": sample("portrait_statue.jpg"),
            "blank": folder / "blank.png"}


@pytest.fixture(scope="module")
def demo_url(tiny_checkpoint, tmp_path_factory):
    """The demo on a folder holding the tiny checkpoint and a corrupt one; audio limited to 4 s."""
    folder = tmp_path_factory.mktemp("ckpts")
    (folder / "tiny.ckpt").write_bytes(tiny_checkpoint.read_bytes())
    (folder / "broken.ckpt").write_bytes(b"PK\x03\x04 not a checkpoint")
    port = free_port()
    log = (folder / "demo.log").open("w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "EMO_CONFIG_DIR": str(REPO / "conf")}
    process = subprocess.Popen([sys.executable, str(REPO / "demo" / "app.py"), "--ckpt", str(folder), "--port",
                                str(port), "--max-audio-seconds", "4"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"the demo exited with {process.returncode}:\n{(folder / 'demo.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the demo did not answer on {url}:\n{(folder / 'demo.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def client_predict(url: str, portrait: Path, audio: Path, checkpoint: str = "tiny.ckpt", detector: str = "opencv_haar"):
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    return client.predict(handle_file(str(portrait)), handle_file(str(audio)), checkpoint, 2, "ddim", 1.0, 2.0, 1.0,
                          7, detector, "32", 0.0, 0.0, api_name="/generate")


def test_generates_a_video_through_the_api(demo_url, media):
    result = client_predict(demo_url, media["portrait"], media["short"])
    path = result["video"] if isinstance(result, dict) else result
    info = probe_video(path)
    assert (info["video_codec"], info["audio_codec"], info["width"], info["fps"]) == ("h264", "aac", 32, 25.0)
    assert info["num_frames"] == 50 and info["audio_duration"] == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(("case", "message"), [
    ("long audio", "The audio is 7.5 s long; this demo takes up to 4 s"),
    ("bad checkpoint", "Cannot use checkpoint broken.ckpt"),
    ("no face", "no face found in blank.png"),
])
def test_friendly_errors(demo_url, media, case, message):
    from gradio_client.exceptions import AppError

    args = {"long audio": (media["portrait"], media["long"]),
            "bad checkpoint": (media["portrait"], media["short"], "broken.ckpt"),
            "no face": (media["blank"], media["short"])}[case]
    with pytest.raises(AppError, match=message):
        client_predict(demo_url, *args)


def test_a_synthetic_checkpoint_offers_held_out_synthetic_examples_that_render(demo_url, tmp_path):
    """The tiny checkpoint was trained on the synthetic faces: the page offers held-out ones, says why a photo gives
    noise, and renders an example from its own face mask (no face detector finds these cartoon faces)."""
    from gradio_client import Client

    from emo_lightning.pipeline.examples import synthetic_examples

    client = Client(demo_url, verbose=False)
    page = json.dumps(client.config)
    assert "held_out_0.png" in page and "held_out_0.wav" in page
    assert "trained on synthetic cartoon faces only" in client.predict("tiny.ckpt", api_name="/notice")
    assert client.predict("broken.ckpt", api_name="/notice") == ""
    example = synthetic_examples(tmp_path, resolution=32, fps=25.0, count=1)[0]  # the first example's files
    result = client_predict(demo_url, example.portrait, example.audio, detector="opencv_haar")
    info = probe_video(result["video"] if isinstance(result, dict) else result)
    assert (info["width"], info["num_frames"]) == (32, 100)  # 4 s at the model's 25 fps


def test_only_checkpoints_trained_on_synthetic_data_are_taken_for_such(tiny_checkpoint):
    from emo_lightning.pipeline.examples import trained_on_synthetic

    checkpoint = read_checkpoint(tiny_checkpoint)  # fitted by a Trainer: its data module's arguments, no class path
    assert trained_on_synthetic(checkpoint)
    data = checkpoint["datamodule_hyper_parameters"]
    assert trained_on_synthetic({"datamodule_hyper_parameters": {**data, "_class_path": "emo_lightning.data."
                                                                 "SyntheticDataModule"}})
    assert not trained_on_synthetic({"datamodule_hyper_parameters": {"_class_path": "emo_lightning.data.preprocessed."
                                                                     "PreprocessedDataModule", "path": "data/hdtf"}})
    assert not trained_on_synthetic({"datamodule_hyper_parameters": {"path": "data/hdtf", "stage": 2}})
    assert not trained_on_synthetic({})


def test_checkpoints_load_without_a_trainer_and_stay_cached(tiny_checkpoint, tmp_path):
    from emo_lightning.model.checkpoint import CheckpointError
    from emo_lightning.pipeline.loading import PipelineCache

    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    cache = PipelineCache()
    pipeline = cache.get(copy)
    assert cache.get(copy) is pipeline and not pipeline.model.training
    os.utime(copy, ns=(0, copy.stat().st_mtime_ns + 10**9))  # the file was rewritten: load it again
    assert cache.get(copy) is not pipeline
    copy.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="copy.ckpt is not a readable PyTorch checkpoint"):
        cache.get(copy)


def test_in_a_headless_browser(demo_url, media, tiny_checkpoint):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (Debian package `chromium`; .ci/run installs it)")
    from playwright.sync_api import expect, sync_playwright

    own_steps = model_hparams(read_checkpoint(tiny_checkpoint), tiny_checkpoint)["num_inference_steps"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(demo_url)
            page.locator("#portrait input[type=file]").set_input_files(str(media["portrait"]))
            page.locator("#audio input[type=file]").set_input_files(str(media["short"]))
            page.locator("#portrait img").wait_for(timeout=30_000)  # both uploads are in
            page.locator("#audio audio").first.wait_for(state="attached", timeout=30_000)
            page.locator("#checkpoint input").click()
            page.get_by_role("option", name="tiny.ckpt").click()
            steps = page.locator("#steps input[type=number]")
            expect(steps).to_have_value(str(own_steps))  # the sliders took the checkpoint's own defaults
            steps.fill("1")  # not the default: the request carries the slider
            steps.press("Enter")
            page.locator("#generate").click()
            video = page.locator("#video video")
            video.wait_for(timeout=120_000)
            source = video.get_attribute("src")
        finally:
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
            browser.close()
    assert source and source.endswith(".mp4")
