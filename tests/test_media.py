"""Media I/O on real files: everything is written to tmp_path with real encoders and read back."""

from __future__ import annotations

import os
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from emo_lightning.media import (
    MediaError,
    Mp4Writer,
    audio_duration,
    load_audio,
    load_image,
    probe_video,
    read_video,
)

SAMPLES = Path(os.environ.get("EMO_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "samples"))


def tone(freq: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, sample_rate: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(samples))) * sample_rate / len(samples))


def write_wav(path: Path, stereo: np.ndarray, sample_rate: int) -> None:
    """Write float (2, S) as 16-bit stereo PCM with the stdlib, independently of PyAV."""
    pcm = (np.clip(stereo, -1, 1) * 32767).astype("<i2").T
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def encode_audio(path: Path, codec: str, stereo: np.ndarray, sample_rate: int, **options: str) -> None:
    """Encode float (2, S) with a PyAV encoder, which converts to the codec's sample format and frame size."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sample_rate, layout="stereo")
        stream.codec_context.options = options
        for start in range(0, stereo.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(stereo[:, start : start + 4096]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"sample media {path} not present (set EMO_SAMPLES to the shared samples folder)")
    return path


# --- Mp4Writer, probe_video, read_video ---------------------------------------------------------------


def test_mp4_writer_roundtrip_with_audio(tmp_path: Path) -> None:
    colour = (200, 30, 90)
    audio = tone(440, 16000, 2.3)
    path = tmp_path / "nested" / "dir" / "clip.mp4"
    with Mp4Writer(path, fps=25, width=64, height=48, audio=audio) as writer:
        writer.write(np.full((20, 48, 64, 3), colour, np.uint8))  # a batch
        for _ in range(30):
            writer.write(np.full((48, 64, 3), colour, np.uint8))  # single frames

    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.mp4"]  # temporary file renamed away
    info = probe_video(path)
    assert (info["video_codec"], info["audio_codec"]) == ("h264", "aac")
    assert (info["num_frames"], info["width"], info["height"], info["fps"]) == (50, 64, 48, 25.0)
    assert info["duration"] == pytest.approx(50 / 25, abs=0.05)
    assert info["audio_sample_rate"] == 16000
    # All the audio is kept although it outlasts the video.
    assert info["audio_duration"] == pytest.approx(2.3, abs=0.07)

    frames, fps = read_video(path)
    assert frames.shape == (50, 48, 64, 3) and frames.dtype == np.uint8 and fps == 25.0
    assert np.abs(frames.astype(int) - colour).max() <= 6  # yuv420p round trip

    sound = load_audio(path)
    assert len(sound) == pytest.approx(len(audio), abs=0.07 * 16000)
    assert peak_hz(sound, 16000) == pytest.approx(440, abs=2)


def test_mp4_writer_float_frames_and_ntsc_rate(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "float.mp4"
    grey = torch.full((12, 3, 32, 48), -0.5)  # [-1, 1] -> round(0.5 * 127.5) = 64
    with Mp4Writer(path, fps=30000 / 1001, width=48, height=32) as writer:
        writer.write(grey)
        writer.write(grey.numpy())
    info = probe_video(path)
    assert info["fps"] == pytest.approx(29.97, abs=0.01)
    assert info["num_frames"] == 24 and info["audio_codec"] is None
    assert info["duration"] == pytest.approx(float(24 / Fraction(30000, 1001)), abs=0.05)
    frames, _ = read_video(path)
    assert np.abs(frames.astype(int) - 64).max() <= 3


def test_mp4_writer_failure_leaves_target_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous result")
    with pytest.raises(RuntimeError), Mp4Writer(path, fps=25, width=32, height=32) as writer:
        writer.write(np.zeros((5, 32, 32, 3), np.uint8))
        raise RuntimeError("generation crashed")
    assert path.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_mp4_writer_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        Mp4Writer(tmp_path / "odd.mp4", fps=25, width=33, height=32)
    with pytest.raises(ValueError, match="1-D float"):
        Mp4Writer(tmp_path / "a.mp4", fps=25, width=32, height=32, audio=np.zeros((2, 100), np.float32))
    with Mp4Writer(tmp_path / "b.mp4", fps=25, width=32, height=32) as writer:
        with pytest.raises(ValueError, match="expects 32x32"):
            writer.write(np.zeros((32, 48, 3), np.uint8))
        writer.write(np.zeros((32, 32, 3), np.uint8))
    with (
        pytest.raises(ValueError, match="no frames"),
        Mp4Writer(tmp_path / "c.mp4", fps=25, width=32, height=32),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.mp4"]


# --- load_audio -------------------------------------------------------------------------------------


def test_load_audio_wav_44k_stereo_int16(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    left = tone(440, 44100, 1.5, amplitude=0.9)
    write_wav(path, np.stack([left, left]), 44100)

    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(1.5 * 16000, abs=2)
    assert peak_hz(samples, 16000) == pytest.approx(440, abs=1)
    # Channels are averaged: a loud, identical stereo pair keeps its level instead of clipping at +3 dB.
    assert np.abs(samples).max() == pytest.approx(0.9, abs=0.02)
    assert audio_duration(path) == pytest.approx(1.5)

    assert len(load_audio(path, sample_rate=24000)) == pytest.approx(1.5 * 24000, abs=2)


@pytest.mark.parametrize(
    ("suffix", "codec", "options"),
    [
        ("flac", "flac", {}),
        ("ogg", "vorbis", {"strict": "experimental"}),  # FFmpeg's native Vorbis encoder is experimental
        ("mp3", "libmp3lame", {}),
        ("m4a", "aac", {}),
    ],
)
def test_load_audio_compressed_formats(tmp_path: Path, suffix: str, codec: str, options: dict) -> None:
    try:
        av.codec.Codec(codec, "w")
    except av.FFmpegError:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path = tmp_path / f"tone.{suffix}"
    left = tone(440, 44100, 1.0)
    encode_audio(path, codec, np.stack([left, 0.5 * left]), 44100, **options)

    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(16000, abs=0.05 * 16000)  # encoders may pad a frame
    assert peak_hz(samples, 16000) == pytest.approx(440, abs=2)
    assert np.abs(samples).max() <= 1.0


def test_load_audio_video_without_sound(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    with Mp4Writer(path, fps=25, width=32, height=32) as writer:
        writer.write(np.zeros((3, 32, 32, 3), np.uint8))
    with pytest.raises(MediaError, match="no audio stream in .*silent.mp4"):
        load_audio(path)


# --- load_image -------------------------------------------------------------------------------------


def _gradient(width: int = 40, height: int = 30) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    return np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), 255 - (x + y) / 2], -1
    )


@pytest.mark.parametrize(
    ("name", "make", "expected_pixel"),
    [
        ("gray.png", lambda: Image.new("L", (40, 30), 77), (77, 77, 77)),
        ("bilevel.png", lambda: Image.new("1", (40, 30), 1), (255, 255, 255)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (40, 30), (0, 255, 255, 0)), (255, 0, 0)),
        ("rgba.png", lambda: Image.new("RGBA", (40, 30), (0, 0, 255, 0)), (255, 255, 255)),
        ("half_alpha.png", lambda: Image.new("RGBA", (40, 30), (0, 0, 0, 128)), (127, 127, 127)),
        ("la.png", lambda: Image.new("LA", (40, 30), (0, 0)), (255, 255, 255)),
        ("palette.png", lambda: Image.new("RGB", (40, 30), (0, 128, 0)).quantize(4), (0, 128, 0)),
        ("gray16.png", lambda: Image.fromarray(np.full((30, 40), 32896, np.uint16)), (128, 128, 128)),
        ("rgb.tiff", lambda: Image.fromarray(_gradient().astype(np.uint8)), None),
    ],
)
def test_load_image_modes(tmp_path: Path, name: str, make, expected_pixel: tuple | None) -> None:
    path = tmp_path / name
    make().save(path)
    image = load_image(path)
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    if expected_pixel is None:
        np.testing.assert_array_equal(image, _gradient().astype(np.uint8))
    else:
        tolerance = 3 if name.endswith(".jpg") else 1
        assert np.abs(image[15, 20].astype(int) - expected_pixel).max() <= tolerance


def test_load_image_transparent_palette_and_exif_orientation(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 2), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30])
    palette.save(tmp_path / "p.png", transparency=1)
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), np.full((2, 4, 3), 255, np.uint8))

    landscape = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    landscape.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape == (40, 20, 3)


def test_load_image_large_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    Image.new("RGB", (6000, 4000), (10, 20, 30)).save(path, compress_level=1)
    image = load_image(path)
    assert image.shape == (4000, 6000, 3)
    assert tuple(image[1234, 5678]) == (10, 20, 30)
    with pytest.raises(MediaError, match=r"large\.png is 6000x4000, above"):
        load_image(path, max_pixels=1000 * 1000)


def test_load_image_from_memory() -> None:
    rgb = _gradient().astype(np.uint8)
    np.testing.assert_array_equal(load_image(rgb), rgb)
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(load_image(rgb / 255.0), rgb)
    assert load_image(rgb[..., :1]).shape == (30, 40, 3)
    np.testing.assert_array_equal(load_image(rgb[..., 0]), np.repeat(rgb[..., :1], 3, axis=2))
    rgba = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=2)
    np.testing.assert_array_equal(load_image(rgba), np.full_like(rgb, 255))
    with pytest.raises(MediaError, match="got int64"):
        load_image(rgb.astype(np.int64))
    with pytest.raises(MediaError, match=r"got \(30, 40, 2\)"):
        load_image(rgb[..., :2])


# --- errors -----------------------------------------------------------------------------------------

LOADERS = [
    ("wav", load_audio),
    ("m4a", audio_duration),
    ("png", load_image),
    ("mp4", probe_video),
    ("mp4", read_video),
]


@pytest.mark.parametrize(("suffix", "loader"), LOADERS)
@pytest.mark.parametrize("problem", ["missing", "empty", "text"])
def test_bad_files_raise_media_error_naming_the_file(
    tmp_path: Path, suffix: str, loader, problem: str
) -> None:
    path = tmp_path / f"bad_{problem}.{suffix}"
    if problem == "empty":
        path.touch()
    elif problem == "text":
        path.write_text("this is not media, just a text file renamed\n" * 20)
    with pytest.raises(MediaError, match=path.name) as raised:
        loader(path)
    if problem == "text":
        assert raised.value.__cause__ is not None  # the decoder's own error is chained


def test_truncated_files_raise_media_error(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8)  # does not compress
    Image.fromarray(noise).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:1000])
    with pytest.raises(MediaError, match="cut.png"):
        load_image(tmp_path / "cut.png")

    encode_audio(tmp_path / "full.m4a", "aac", np.zeros((2, 44100), np.float32), 44100)
    (tmp_path / "cut.m4a").write_bytes((tmp_path / "full.m4a").read_bytes()[:100])
    with pytest.raises(MediaError, match="cut.m4a"):
        load_audio(tmp_path / "cut.m4a")


# --- real media from the shared samples folder --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "seconds"),
    [("speech_44k_stereo.wav", 7.5), ("speech_16k_stereo.wav", 8.0), ("hdtf_clip.mp4", 8.0)],
)
def test_load_audio_real_samples(name: str, seconds: float) -> None:
    samples = load_audio(sample(name))
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(seconds * 16000, abs=0.05 * 16000)
    assert 0.01 < np.abs(samples).max() <= 1.0  # speech, not silence
    assert np.abs(samples).mean() > 1e-3


def test_probe_and_read_real_video() -> None:
    path = sample("hdtf_clip.mp4")
    info = probe_video(path)
    assert (info["width"], info["height"], info["fps"], info["num_frames"]) == (512, 512, 25.0, 200)
    assert info["audio_codec"] == "aac" and info["audio_sample_rate"] == 16000
    frames, fps = read_video(path)
    assert frames.shape == (200, 512, 512, 3) and fps == 25.0


@pytest.mark.parametrize("name", ["portrait_painting.jpg", "portrait_sketch.jpg", "portrait_statue.jpg"])
def test_load_image_real_samples(name: str) -> None:
    image = load_image(sample(name))
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.shape[0] == image.shape[1] > 400
