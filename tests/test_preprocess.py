"""`emo preprocess` on the real HDTF clip → LitData data set → stage-aware batches → training steps.

One module-scoped run preprocesses (the default face detector and landmarks), with two worker processes, copies of
the clip made here with PyAV: its first 3 s with sound, the same 3 s without sound, truncated copies (of the
original, whose index is at its end; of the 3 s file, whose index is at its front; of the 3 s file remuxed to
Matroska) and a text file named .mp4.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import tiny_batch, tiny_config, tiny_module
from skimage.data import astronaut

from emo_lightning import registry
from emo_lightning.components.vae.wan import TINY_WAN_VAE
from emo_lightning.data.preprocessed import PreprocessedDataModule, split_identities
from emo_lightning.geometry import boxes_to_mask, lip_masks, mouth_boxes
from emo_lightning.media import Mp4Writer, load_audio, read_video
from emo_lightning.preprocess import NoFaceError, Settings, crop_portrait
from emo_lightning.preprocess.runner import run

SECONDS, FPS, RESOLUTION = 3, 25, 64
SETTINGS = Settings(fps=FPS, resolution=RESOLUTION, segment_seconds=2.0)
DETECTOR, ESTIMATOR, LANDMARKS = {"name": "mediapipe"}, {"name": "flow"}, {"name": "mediapipe_mesh"}

# Measured by eye on frames of hdtf_clip.mp4 rendered with a 25 px grid: (left eye, right eye, mouth) centres.
HDTF_LANDMARKS = {0: ((200, 242), (312, 235), (265, 380)),
                  37: ((195, 205), (300, 207), (225, 325)),
                  74: ((220, 232), (330, 225), (277, 368))}
ASTRONAUT_LANDMARKS = ((205, 100), (243, 100), (225, 143))


def _remux(source: Path, target: Path) -> Path:
    """Copy the streams of ``source`` into another container (no re-encoding)."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return target


@pytest.fixture(scope="module")
def hdtf(sample, tmp_path_factory) -> dict:
    source = sample("hdtf_clip.mp4")
    root = tmp_path_factory.mktemp("preprocess")
    videos = root / "videos"
    frames, _ = read_video(source)
    audio = load_audio(source)[: SECONDS * 16000]
    with Mp4Writer(videos / "WDA_KatieHill_000.mp4", FPS, 512, 512, audio=audio) as writer:
        writer.write(frames[: SECONDS * FPS])
    with Mp4Writer(videos / "silent" / "Silent_Copy_000.mp4", FPS, 512, 512) as writer:  # audio stripped
        writer.write(frames[: SECONDS * FPS])
    (videos / "bad").mkdir()
    (videos / "bad" / "truncated.mp4").write_bytes(source.read_bytes()[: source.stat().st_size * 2 // 5])
    short = (videos / "WDA_KatieHill_000.mp4").read_bytes()
    (videos / "bad" / "truncated_faststart.mp4").write_bytes(short[: len(short) * 3 // 5])
    remuxed = _remux(videos / "WDA_KatieHill_000.mp4", root / "remuxed.mkv").read_bytes()
    (videos / "bad" / "truncated.mkv").write_bytes(remuxed[: len(remuxed) * 3 // 5])
    (videos / "bad" / "notes.mp4").write_text("these are meeting notes, not a video\n")
    output = root / "out"
    manifest = run(videos, output, SETTINGS, DETECTOR, ESTIMATOR, workers=2, progress=False, landmarks=LANDMARKS)
    return {"source": source, "videos": videos, "output": output, "manifest": manifest, "frames": frames}


def _report(hdtf: dict, name: str) -> dict:
    return next(v for v in hdtf["manifest"]["videos"] if Path(v["source"]).name == name)


def test_clip_is_kept_for_every_stage(hdtf):
    report = _report(hdtf, "WDA_KatieHill_000.mp4")
    assert report["status"] == "kept" and report["stages"] == [1, 2, 3] and report["identity"] == "WDA_KatieHill"
    assert report["frames"] == SECONDS * FPS
    assert [s["frames"] for s in report["segments"]] == [50, 25]
    index = json.loads((hdtf["output"] / "data" / "index.json").read_text())
    assert sum(chunk["chunk_size"] for chunk in index["chunks"]) == 4  # 2 segments x 2 kept videos
    assert all((hdtf["output"] / "data" / chunk["filename"]).is_file() for chunk in index["chunks"])


def test_video_without_audio_is_stage1_only(hdtf):
    report = _report(hdtf, "Silent_Copy_000.mp4")
    assert report["status"] == "kept" and not report["has_audio"] and report["stages"] == [1]
    counts = {}
    for stage in (1, 3):
        data = PreprocessedDataModule(str(hdtf["output"]), stage=stage, resolution=32, val_fraction=0.0)
        data.setup("fit")
        counts[stage] = len(data.train_set)
    assert counts == {1: 4, 3: 2}


@pytest.mark.parametrize("name, reason", [("truncated.mp4", "Invalid data found"),  # its index was at the end
                                          ("truncated_faststart.mp4", "cannot decode"),  # decodes up to the cut
                                          ("truncated.mkv", "is truncated"),  # ends cleanly, short of its duration
                                          ("notes.mp4", "Invalid data found")])
def test_bad_files_are_reported_and_skipped(hdtf, name, reason):
    report = _report(hdtf, name)
    assert report["status"] == "skipped" and reason in report["reason"] and "MediaError" in report["reason"]
    index = (hdtf["output"] / "data" / "index.json").read_text()
    assert report["id"] not in index
    assert hdtf["manifest"]["summary"] == {"videos": 6, "kept": 2, "stage1_only": 1, "skipped": 4, "items": 4,
                                           "frames": 150}


def _source_track(hdtf: dict, report: dict, key: str = "boxes") -> np.ndarray:
    """The video's stored per-frame ``boxes`` (F, 4) or ``landmarks`` (F, P, 2) (crop pixels, per segment) mapped back
    to source-frame pixels."""
    from litdata import StreamingDataset

    raw = StreamingDataset(str(hdtf["output"] / "data"))
    items = {item["key"]: item for item in (raw[i] for i in range(len(raw)))}
    track = []
    for number, segment in enumerate(report["segments"]):
        left, top, side = segment["region"]
        item = items[f"{report['id']}/{number}"]
        assert item["face_found"].all()
        values = np.asarray(item[key], np.float32)
        shape = values.shape
        track.append((values.reshape(-1, 2) * side / RESOLUTION + np.array([left, top])).reshape(shape))
    return np.concatenate(track)


def test_face_box_lands_on_the_face(hdtf):
    """Stored boxes hold both eyes and the mouth measured by eye, are face-sized and centred on the face."""
    boxes = _source_track(hdtf, _report(hdtf, "WDA_KatieHill_000.mp4"))
    assert boxes.shape == (SECONDS * FPS, 4)
    for frame, (eye_l, eye_r, mouth) in HDTF_LANDMARKS.items():
        x0, y0, x1, y1 = boxes[frame]
        for x, y in (eye_l, eye_r, mouth):
            assert x0 < x < x1 and y0 < y < y1, f"frame {frame}: ({x}, {y}) outside box {boxes[frame].round()}"
        eye_distance = np.hypot(eye_r[0] - eye_l[0], eye_r[1] - eye_l[1])
        assert 1.8 < (x1 - x0) / eye_distance < 3.5, f"frame {frame}: box {boxes[frame].round()} not face-sized"
        centre = np.mean([eye_l, eye_r, mouth], axis=0)
        assert np.hypot(*(centre - [(x0 + x1) / 2, (y0 + y1) / 2])) < 0.2 * (x1 - x0)


def test_landmark_lip_mask_holds_the_mouth_not_the_eyes_and_less_than_the_box_region(hdtf):
    """With landmarks stored, the lip mask is the filled, grown outer-lip contour: on the HDTF clip (rendered at the
    source's 512 px) it holds the mouth measured by eye, neither eye, and a fraction of the face-box heuristic's
    region."""
    report = _report(hdtf, "WDA_KatieHill_000.mp4")
    points, boxes = _source_track(hdtf, report, "landmarks"), _source_track(hdtf, report)
    assert points.shape == (SECONDS * FPS, 478, 2) and np.isfinite(points).all()
    lips = np.asarray(json.loads((hdtf["output"] / "data" / "index.json").read_text())["emo"]["landmarks"]["regions"]
                      ["lips_outer"])
    masks = lip_masks(points, lips, boxes, 512)
    heuristic = np.stack([boxes_to_mask(box[None], 512) for box in mouth_boxes(boxes)])
    for frame, (eye_l, eye_r, mouth) in HDTF_LANDMARKS.items():
        mask = masks[frame]
        assert mask[mouth[1], mouth[0]] == 1, f"frame {frame}: the mouth {mouth} is outside the lip mask"
        assert mask[eye_l[1], eye_l[0]] == 0 and mask[eye_r[1], eye_r[0]] == 0, f"frame {frame}: an eye in it"
    faces = np.stack([boxes_to_mask(box[None], 512) for box in boxes])
    assert np.all(masks <= faces)  # within each frame's face box
    ratio = masks.sum((1, 2)) / heuristic.sum((1, 2))
    assert ratio.mean() < 0.5 and np.all(ratio < 0.75), ratio


def test_lip_region_holds_the_mouth_and_not_the_eyes(hdtf):
    """Without landmarks the lip mask is the mouth region of each stored face box: on the HDTF clip it holds the
    mouth measured by eye, and neither eye."""
    regions = mouth_boxes(_source_track(hdtf, _report(hdtf, "WDA_KatieHill_000.mp4")))
    for frame, (eye_l, eye_r, mouth) in HDTF_LANDMARKS.items():
        region = regions[frame]
        assert _inside(mouth, region), f"frame {frame}: mouth {mouth} outside the lip region {np.round(region)}"
        assert not _inside(eye_l, region) and not _inside(eye_r, region), f"frame {frame}: an eye in the lip region"


def _inside(point: tuple[float, float], box: np.ndarray) -> bool:
    return box[0] < point[0] < box[2] and box[1] < point[1] < box[3]


def test_batches_match_the_synthetic_data(hdtf):
    for stage in (1, 3):
        data = PreprocessedDataModule(str(hdtf["output"]), stage=stage, resolution=32, num_frames=8,
                                      motion_frames=4, batch_size=2, val_fraction=0.0, seed=0)
        data.setup("fit")
        batch = next(iter(data.train_dataloader()))
        synthetic = tiny_batch(stage=stage, batch_size=2)
        assert set(batch) == set(synthetic) - {"mouth_open", "loudness", "pose"}  # the synthetic ground truth
        for key, value in batch.items():
            assert value.shape == synthetic[key].shape and value.dtype == synthetic[key].dtype, key
        assert batch["reference"].min() >= -1 and batch["reference"].max() <= 1
        assert batch["mask"].mean() > 0.2  # the face fills much of the crop
        lips = batch["lip_mask"]
        assert (lips <= batch["mask"][:, :, None]).all() and 0 < lips.mean() < 0.5 * batch["mask"].mean()
        if stage == 3:
            assert batch["audio"].abs().max() > 0.05 and (batch["speed"] >= 0).all()


def test_same_seed_same_batches_and_identity_split(hdtf):
    def first_batch(seed: int) -> dict:
        data = PreprocessedDataModule(str(hdtf["output"]), stage=3, resolution=32, batch_size=2, val_fraction=0.0,
                                      seed=seed)
        data.setup("fit")
        return next(iter(data.train_dataloader()))

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["frames"], c["frames"])
    data = PreprocessedDataModule(str(hdtf["output"]), stage=1, resolution=32, val_fraction=0.5, seed=0)
    data.setup("fit")
    assert len(data.train_set) == 2 and len(data.val_set) == 2  # two identities, one held out whole
    names = [f"person{i}" for i in range(20)]
    held_out = split_identities(names, 0.1, seed=3)
    assert len(held_out) == 2 and held_out == split_identities(list(reversed(names)), 0.1, seed=3)


def test_trains_a_few_steps_from_the_config(hdtf, tmp_path):
    """`emo fit experiment=tiny data=preprocessed data.path=…` composes to this data module; two steps run."""
    cfg = tiny_config("data=preprocessed", f"data.path={hdtf['output']}", "data.num_workers=0")
    data_cfg = dict(cfg["data"])
    assert data_cfg.pop("class_path") == "emo_lightning.data.preprocessed.PreprocessedDataModule"
    data = PreprocessedDataModule(**data_cfg)
    module = tiny_module()
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])


def test_rerun_skips_finished_videos_and_cleans_a_killed_run(hdtf):
    output = hdtf["output"]
    reports = {p.name: p.read_text() for p in (output / "reports").glob("*.json")}
    index = (output / "data" / "index.json").read_text()
    # what a run killed mid-video leaves: its work folder and chunks moved in before its report was written
    (output / ".work" / "killed.1234").mkdir(parents=True)
    (output / ".work" / "killed.1234" / "chunk-0-0.bin").write_bytes(b"partial")
    (output / "data" / "chunk-killed-1234-0-0.bin").write_bytes(b"partial")
    manifest = run(hdtf["videos"], output, SETTINGS, DETECTOR, ESTIMATOR, workers=2, progress=False,
                   landmarks=LANDMARKS)
    assert {p.name: p.read_text() for p in (output / "reports").glob("*.json")} == reports  # nothing redone
    assert (output / "data" / "index.json").read_text() == index
    assert not (output / ".work").exists() and not (output / "data" / "chunk-killed-1234-0-0.bin").exists()
    assert manifest["summary"] == hdtf["manifest"]["summary"]
    with pytest.raises(ValueError, match="other settings"):
        run(hdtf["videos"], output, Settings(fps=30), DETECTOR, ESTIMATOR, progress=False, landmarks=LANDMARKS)


def test_astronaut_has_exactly_one_face():
    detector = registry.build("face_detector", "opencv_haar")
    image = astronaut()
    faces = detector.detect(image)
    assert faces.shape == (1, 5)
    x0, y0, x1, y1, _ = faces[0]
    assert all(x0 < x < x1 and y0 < y < y1 for x, y in ASTRONAUT_LANDMARKS), faces
    crop, mask = crop_portrait(image, detector, RESOLUTION)
    assert crop.shape == (RESOLUTION, RESOLUTION, 3) and crop.dtype == np.uint8
    assert mask.shape == (RESOLUTION, RESOLUTION) and mask.dtype == np.float32
    assert mask[RESOLUTION // 2, RESOLUTION // 2] == 1 and 0.2 < mask.mean() < 0.6
    with pytest.raises(NoFaceError, match="no face"):
        crop_portrait(np.full((200, 200, 3), 90, np.uint8), detector, RESOLUTION)


def test_insightface_without_models_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/models/buffalo_l holds no .onnx"):
        registry.build("face_detector", "insightface", root=str(tmp_path))


def test_cached_latents_are_the_models_vae_latents(hdtf, tmp_path):
    """`cache_vae` stores each frame's latents; batches carry them and a training step uses them."""
    vae_spec = tiny_config()["model"]["vae"]
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "WDA_KatieHill_000.mp4").symlink_to(hdtf["videos"] / "WDA_KatieHill_000.mp4")
    settings = Settings(fps=FPS, resolution=32, segment_seconds=2.0, cache_vae=vae_spec)
    run(videos, tmp_path / "out", settings, DETECTOR, ESTIMATOR, progress=False)
    data = PreprocessedDataModule(str(tmp_path / "out"), stage=3, resolution=32, batch_size=2, val_fraction=0.0)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    module = tiny_module()
    for key in ("reference", "motion", "frames"):
        encoded = module._latents({key: batch[key]}, key)  # what training would encode from the JPEG frames
        cached = module._latents(batch, key)  # what it takes from the cache
        assert cached.shape == encoded.shape
        assert (cached - encoded).abs().mean() < 0.03  # JPEG and float16 apart, the same
    assert torch.isfinite(module.training_step(batch, 0))
    other = PreprocessedDataModule(str(tmp_path / "out"), stage=3, resolution=16, val_fraction=0.0)
    with pytest.warns(UserWarning, match="resolution differs"):
        other.setup("fit")
    assert "frames_latents" not in next(iter(other.train_dataloader()))


def test_default_settings_keep_a_tall_phone_video(sample, tmp_path):
    """The shared clip reshaped into a 704x1216 phone video, filling a quarter of its width (the face ~15% of the
    frame's width, visible throughout), is kept whole by `emo preprocess` with its default face detector and
    landmarks, and every frame has its face and its lips."""
    from emo_lightning.config import compose_config
    from emo_lightning.media import fit_into_frame
    from emo_lightning.preprocess.runner import preprocess

    frames, _ = read_video(sample("hdtf_clip.mp4"))
    tall, _ = fit_into_frame(frames[:SECONDS * FPS], 704, 1216, fill=0.25)
    with Mp4Writer(tmp_path / "videos" / "phone.mp4", FPS, 704, 1216, audio=load_audio(sample("hdtf_clip.mp4"))
                   [:SECONDS * 16000]) as writer:
        writer.write(tall)
    cfg = compose_config("preprocess", [f"input={tmp_path / 'videos'}", f"output={tmp_path / 'out'}",
                                        f"resolution={RESOLUTION}", "segment_seconds=2"])  # only sizes differ
    manifest = preprocess({**cfg, "workers": 1})
    report = manifest["videos"][0]
    assert report["status"] == "kept" and not report["dropped_segments"], report
    assert sum(s["frames"] for s in report["segments"]) == SECONDS * FPS
    from litdata import StreamingDataset

    items = StreamingDataset(str(tmp_path / "out" / "data"))
    for item in (items[i] for i in range(len(items))):
        assert item["face_found"].all() and np.isfinite(np.asarray(item["landmarks"], np.float32)).all()


def test_a_vae_that_compresses_time_cannot_cache_latents_per_frame(tmp_path):
    settings = Settings(fps=FPS, resolution=32, cache_vae={"name": "wan", "config": TINY_WAN_VAE})
    with pytest.raises(ValueError, match="compresses time"):
        run([], tmp_path / "out", settings, DETECTOR, ESTIMATOR, progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written
