"""Landmark sync on the six shared real clips (HDTF and five talking heads at 22.13, 25 and 30 fps), on copies of them
whose audio is shifted by whole video frames (PCM, video packets copied), on another clip's audio, and on synthetic
talking faces with exact landmarks. The real clips are measured as ``emo evaluate`` measures them, with their frames
(the mouth's picture). A synced clip must never read as a number far from 0: it reads within ±2 frames or as
undetermined."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from emo_lightning import registry
from emo_lightning.data import make_clip
from emo_lightning.data.synthetic import LANDMARK_REGIONS
from emo_lightning.evaluation.landmark_sync import SyncResult, find_offset, landmark_sync
from emo_lightning.evaluation.sync_signals import band_levels, lip_motion, loudness, mouth_change
from emo_lightning.media import load_audio, read_video

CLIPS = ("hdtf_clip.mp4", "talking_1.mp4", "talking_2.mp4", "talking_3.mp4", "talking_4.mp4", "talking_5.mp4")
SHIFTS = {  # frames of the video, positive: the audio starts later; two per clip keep the file under a minute
    "hdtf_clip.mp4": (-8, 5), "talking_1.mp4": (-5, 8), "talking_2.mp4": (-8, 5), "talking_3.mp4": (-3, 8),
    "talking_4.mp4": (-5, 8), "talking_5.mp4": (-8, 3)}
RATE = 16000


def write_shifted_copy(source: Path, target: Path, frames: int) -> None:
    """``source``'s video packets unchanged, and its audio (from the first frame on, 16 kHz mono) as 16-bit PCM moved
    ``frames`` video frames later (silence prepended) or earlier (the start cut)."""
    audio = load_audio(source, RATE, from_first_frame=True)
    with av.open(str(source)) as reader, av.open(str(target), "w", format="matroska") as writer:
        video_in = reader.streams.video[0]
        video_out = writer.add_stream_from_template(video_in)
        samples = round(abs(frames) * RATE / float(video_in.average_rate))
        shifted = np.concatenate([np.zeros(samples, np.float32), audio]) if frames >= 0 else audio[samples:]
        audio_out = writer.add_stream("pcm_s16le", rate=RATE, layout="mono")
        first = None
        for packet in reader.demux(video_in):
            if packet.dts is None:
                continue
            first = packet.pts * packet.time_base if first is None else min(first, packet.pts * packet.time_base)
            packet.stream = video_out
            writer.mux(packet)
        pcm = (np.clip(shifted, -1, 1) * 32767).round().astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, round(float(first) * RATE)
        frame.time_base = Fraction(1, RATE)
        for packet in audio_out.encode(frame):
            writer.mux(packet)
        for packet in audio_out.encode(None):
            writer.mux(packet)


@pytest.fixture(scope="module")
def tracks(sample) -> dict[str, dict]:
    """Per clip: the frames, the mediapipe_mesh landmark track and regions (shifting the audio leaves the picture
    alone, so they are computed once), fps, own audio and path."""
    try:
        model = registry.build("landmarks", "mediapipe_mesh")
    except (ImportError, registry.RegistryError) as err:
        pytest.skip(f"landmarks mediapipe_mesh unavailable here: {err}")
    found = {}
    for name in CLIPS:
        path = sample(name)
        frames, fps = read_video(path)
        found[name] = {"frames": frames, "points": model.detect_video(frames), "regions": model.regions, "fps": fps,
                       "path": path, "audio": load_audio(path, RATE, from_first_frame=True)}
    return found


def sync(track: dict, audio: np.ndarray) -> SyncResult:
    return landmark_sync(track["points"], track["regions"], audio, RATE, track["fps"], frames=track["frames"])


@pytest.mark.parametrize("name", CLIPS)
def test_a_synced_clip_reads_within_2_frames_of_0_or_undetermined(tracks, name):
    result = sync(tracks[name], tracks[name]["audio"])
    assert result.offset is None or abs(result.offset) <= 2, (name, result.offset, result.confidence)
    assert result.offset is not None or result.reason


def test_some_synced_clips_are_resolved(tracks):
    """The measure is not undetermined everywhere: on at least four of the six 5–8-s clips it finds the offset (4 do,
    docs/results/landmark_sync.md), each within ±2 frames of 0."""
    resolved = {name: sync(track, track["audio"]).offset for name, track in tracks.items()}
    found = {name: offset for name, offset in resolved.items() if offset is not None}
    assert len(found) >= 4 and all(abs(offset) <= 2 for offset in found.values()), resolved


@pytest.mark.parametrize(("name", "shift"), [(name, shift) for name in CLIPS for shift in SHIFTS[name]])
def test_a_copy_with_shifted_audio_reads_as_that_shift(tracks, name, shift, tmp_path):
    """The copy's audio comes back through the container; the offset moves by the shift (±1 frame of the video) or is
    undetermined, never a number elsewhere."""
    track = tracks[name]
    copy = tmp_path / f"{Path(name).stem}_{shift:+d}.mkv"
    write_shifted_copy(track["path"], copy, shift)
    audio = load_audio(copy, RATE, from_first_frame=True)
    lead = round(abs(shift) * RATE / track["fps"])
    if shift > 0:
        assert np.abs(audio[: lead - 200]).max() < 1e-3  # the prepended silence, in place
    original, shifted = sync(track, track["audio"]), sync(track, audio)
    if original.offset is not None and shifted.offset is not None:
        assert abs(shifted.offset - original.offset - shift) <= 1, (name, original.offset, shift, shifted.offset)
    if shifted.offset is not None:  # the original's ±2 frames of 0, moved by the shift ±1
        assert abs(shifted.offset - shift) <= 3, (name, shift, shifted.offset)


def test_another_clips_audio_rarely_reads_as_an_offset(tracks):
    """Every clip against the other five clips' audio (30 pairs): the typical confidence is low (median below 2) and
    at most 1 pair reads as determined (none does, docs/results/landmark_sync.md)."""
    results = {(name, other): sync(track, tracks[other]["audio"])
               for name, track in tracks.items() for other in tracks if other != name}
    assert np.median([r.confidence for r in results.values()]) < 2
    wrong = {pair: (r.offset, round(r.confidence, 1)) for pair, r in results.items() if r.offset is not None}
    assert len(wrong) <= 1, wrong


def delayed(audio: np.ndarray, frames: int, fps: float) -> np.ndarray:
    samples = round(abs(frames) * RATE / fps)
    if frames >= 0:
        return np.concatenate([np.zeros(samples, audio.dtype), audio])[: len(audio)]
    return np.concatenate([audio[samples:], np.zeros(samples, audio.dtype)])


@pytest.mark.parametrize("with_frames", [True, False], ids=["mouth picture", "landmarks only"])
@pytest.mark.parametrize(("seed", "fps"), [(0, 25.0), (1, 30.0), (2, 22.13)])
def test_synthetic_talking_faces_read_their_exact_shift(seed, fps, with_frames):
    """The synthetic face's lips follow its loudness with no lag: offset 0, and exactly the shift (in frames of the
    video, whatever its rate) of shifted audio; another clip's audio is undetermined or far less confident. With the
    frames (the mouth's picture) and without them (the landmarks' lip motion) alike."""
    clip = make_clip(seed, round(10 * fps), resolution=64, fps=fps)
    points, audio, frames = clip["landmarks"], clip["audio"], clip["frames"] if with_frames else None

    def sync(audio: np.ndarray) -> SyncResult:
        return landmark_sync(points, LANDMARK_REGIONS, audio, RATE, fps, frames=frames)

    original = sync(audio)
    assert original.offset == 0 and original.confidence > 5, original.reason
    for shift in (-7, 4):
        assert sync(delayed(audio, shift, fps)).offset == shift
    other = sync(make_clip(seed + 100, round(10 * fps), fps=fps)["audio"])
    assert other.offset is None or other.confidence < original.confidence / 2


def test_mouth_change_follows_the_mouth_and_ignores_a_still_face():
    """On a synthetic face the mouth patch's change follows how fast the mouth opens or closes (the clip's exact
    opening); a still picture gives 0."""
    clip = make_clip(5, 100, resolution=64)
    change = mouth_change(clip["frames"], clip["landmarks"], LANDMARK_REGIONS)
    assert np.corrcoef(change, np.abs(np.gradient(clip["mouth_open"])))[0, 1] > 0.6
    still = mouth_change(np.repeat(clip["frames"][:1], 10, 0), np.repeat(clip["landmarks"][:1], 10, 0),
                         LANDMARK_REGIONS)
    np.testing.assert_allclose(still, 0, atol=1e-6)
    with pytest.raises(ValueError, match="100 frames but landmarks for 99"):
        mouth_change(clip["frames"], clip["landmarks"][:99], LANDMARK_REGIONS)


@pytest.mark.parametrize("fps", [22.13, 25.0, 30.0])
def test_audio_is_pooled_over_each_frames_own_interval(fps):
    """A 20-ms tone inside frame 40's display interval [40, 41) / fps is loudest in frame 40."""
    audio = np.zeros(round(3 * RATE))
    start = round((40 + 0.3) / fps * RATE)
    audio[start : start + 320] = np.sin(np.arange(320) * 2 * np.pi * 440 / RATE)
    assert loudness(band_levels(audio, RATE, 60, fps)).argmax() == 40


def test_lip_motion_ignores_face_size_and_position():
    clip = make_clip(3, 60, resolution=64)
    points = clip["landmarks"].astype(np.float64)
    moved = points * 2.5 + np.array([40.0, -13.0])
    np.testing.assert_allclose(lip_motion(moved, LANDMARK_REGIONS), lip_motion(points, LANDMARK_REGIONS), rtol=1e-9)
    assert lip_motion(points, LANDMARK_REGIONS).max() > 0


def test_a_peak_at_the_edge_or_a_flat_curve_is_undetermined():
    chance = np.random.default_rng(0).normal(0, 0.1, 200)
    rising = np.linspace(-0.2, 0.6, 31)
    assert find_offset(rising, chance).offset is None and "edge" in find_offset(rising, chance).reason
    flat = np.full(31, 0.05)
    flat[17] = 0.1
    assert find_offset(flat, chance).offset is None
    def bump(centre: int, height: float) -> np.ndarray:
        return height * np.exp(-0.5 * ((np.arange(31) - centre) / 1.5) ** 2)

    two_peaks = bump(10, 0.6) + bump(20, 0.58)
    assert find_offset(two_peaks, chance).offset is None and "two candidate" in find_offset(two_peaks, chance).reason
    assert find_offset(bump(18, 0.6), chance).offset == 3


def test_too_short_a_clip_or_too_few_faces_is_a_clear_error():
    clip = make_clip(4, 40, resolution=64)
    with pytest.raises(ValueError, match=r"40 frames are too few .*\(at least 42\)"):
        landmark_sync(clip["landmarks"], LANDMARK_REGIONS, clip["audio"], RATE, 25.0)
    clip = make_clip(4, 100, resolution=64)
    points = clip["landmarks"].astype(np.float64)
    points[:60] = np.nan
    with pytest.raises(ValueError, match="a face was found in only 40 of 100 frames"):
        landmark_sync(points, LANDMARK_REGIONS, clip["audio"], RATE, 25.0)
