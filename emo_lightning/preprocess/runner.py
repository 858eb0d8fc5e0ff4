"""`emo preprocess`: videos (a folder, a file, a list file, or a list of these) → a LitData streaming data set.

Layout of ``output``: ``data/`` (the streaming data set: ``index.json`` + chunk files; copy it to object storage
as it is), ``reports/<video id>.json`` (one per video, the resume record), ``manifest.json`` (what was kept or
skipped and why), ``preprocess.json`` (the settings; a folder is never mixed). Videos run in parallel worker
processes; a re-run skips videos whose report matches the file's size and modification time. SIGINT/SIGTERM stop the run
within one segment of the videos being processed (the workers ignore the signals and follow the main process):
the videos in progress are dropped, the finished ones keep their reports.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import re
import shutil
import signal
import time
from contextlib import closing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from filelock import FileLock, Timeout

from emo_lightning import registry
from emo_lightning.components.base import AudioEncoder
from emo_lightning.interrupt import Interrupted, deferred
from emo_lightning.preprocess.manifest import fingerprint, finished, read_reports, write_manifest, write_report
from emo_lightning.preprocess.process import Settings, process_video
from emo_lightning.preprocess.writer import VideoWriter, write_index, write_json
from emo_lightning.progress import progress_bar

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp"}
LIST_EXTENSIONS = {".txt", ".lst"}


@dataclass(frozen=True)
class Job:
    source: str
    video_id: str
    identity: str


def list_videos(inputs: str | Path | list[str | Path]) -> list[tuple[Path, Path]]:
    """``(video, root)`` pairs: a folder gives every file with a video extension under it (root: the folder), a
    ``.txt``/``.lst`` file one path per line (relative to the list's folder; ``#`` starts a comment), any other
    file itself (root: its folder). Duplicates are dropped."""
    entries = inputs if isinstance(inputs, list | tuple) else [inputs]
    found: dict[Path, tuple[Path, Path]] = {}
    for entry in map(Path, entries):
        if entry.is_dir():
            pairs = [(p, entry) for p in sorted(entry.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS]
        elif entry.suffix.lower() in LIST_EXTENSIONS and entry.is_file():
            lines = (line.split("#", 1)[0].strip() for line in entry.read_text().splitlines())
            pairs = list_videos([entry.parent / line for line in lines if line])
        elif entry.is_file():
            pairs = [(entry, entry.parent)]
        else:
            raise FileNotFoundError(f"preprocess input {entry} does not exist")
        for video, root in pairs:
            found.setdefault(video.resolve(), (video, root))
    return list(found.values())


def video_id(video: Path, root: Path) -> str:
    """A file-name-safe id: the path under ``root`` (shortened) and a hash of the absolute path."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", video.relative_to(root).with_suffix("").as_posix()).strip("_.")
    digest = hashlib.sha1(str(video.resolve()).encode()).hexdigest()[:8]
    return f"{readable[-60:]}-{digest}"


def identity_of(video: Path, rule: str) -> str:
    """The person in a video, for the identity-disjoint validation split. ``stem``: the file name without a
    trailing clip number (``WDA_KatieHill_000.mp4`` → ``WDA_KatieHill``); ``folder``: the parent folder's name
    (``id10001/clip3.mp4`` → ``id10001``, VoxCeleb-style trees)."""
    if rule == "stem":
        return re.sub(r"[_-]\d+$", "", video.stem) or video.stem
    if rule == "folder":
        return video.resolve().parent.name
    raise ValueError(f"identity must be 'stem' or 'folder', got {rule!r}")


# ---------------------------------------------------------------------------------- one video (in a worker)

_worker: dict[str, Any] = {}


def _init_worker(output: Path, settings: Settings, detector: dict[str, Any], estimator: dict[str, Any],
                 landmarks: dict[str, Any] | None, chunk_bytes: str, single_thread: bool,
                 stop: multiprocessing.synchronize.Event | None = None) -> None:
    if stop is not None:  # a worker process: the main process decides when to stop (a terminal's Ctrl-C and a
        # SIGTERM to the process group reach the workers too)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if single_thread:  # one process per core
        cv2.setNumThreads(1)
        torch.set_num_threads(1)
    vae = registry.build("vae", settings.cache_vae, config_key="cache_vae").eval() if settings.cache_vae else None
    if vae is not None and vae.temporal_downsample != 1:
        raise ValueError(f"cache_vae={settings.cache_vae.get('name')!r} compresses time: its latents depend on which "
                         "frames a clip holds, so they cannot be stored per frame. Drop cache_vae (training encodes "
                         "each clip), or cache with an image VAE")
    _worker.update(output=output, settings=settings, chunk_bytes=chunk_bytes, stop=stop,
                   detector=registry.build("face_detector", detector, config_key="face_detector"),
                   estimator=registry.build("pose_estimator", estimator, config_key="pose_estimator"),
                   vae=vae,
                   audio_encoder=_audio_features_encoder(settings),
                   landmarks=registry.build("landmarks", landmarks, config_key="landmarks") if landmarks else None)


def _audio_features_encoder(settings: Settings) -> AudioEncoder | None:
    """The audio encoder whose frozen features ``cache_audio`` stores, checked to have such a part."""
    if not settings.cache_audio:
        return None
    encoder = registry.build("audio_encoder", settings.cache_audio, config_key="cache_audio").eval()
    if not encoder.caches_features:
        raise ValueError(f"cache_audio={settings.cache_audio}: this audio encoder has no frozen feature part to store "
                         "(encoders with `features`/`tokens` do, e.g. wav2vec2 with freeze: true)")
    if encoder.sample_rate != settings.sample_rate:
        raise ValueError(f"cache_audio: the encoder takes {encoder.sample_rate} Hz audio, the data set is made at "
                         f"sample_rate={settings.sample_rate}")
    return encoder


def _run(job: Job) -> dict[str, Any]:
    """Process one video and write its chunks and report; any failure is reported, never raised."""
    output, start = _worker["output"], time.monotonic()
    report: dict[str, Any] = {"id": job.video_id, "source": job.source, "identity": job.identity,
                              "fingerprint": fingerprint(job.source)}
    _check_stop()
    writer = VideoWriter(output / "data", output / ".work", job.video_id, _worker["chunk_bytes"])

    def add(item: dict[str, Any]) -> None:
        _check_stop()
        writer.add(item)

    try:
        report.update(process_video(job.source, job.video_id, job.identity, _worker["settings"],
                                    _worker["detector"], _worker["estimator"], add, _worker["vae"],
                                    _worker["audio_encoder"], _worker["landmarks"]))
        with deferred():  # a stop lets the chunks and the report be written whole
            if report["segments"]:
                report.update(status="kept", stages=[1, 2, 3] if report["has_audio"] else [1],
                              index=writer.commit())
            else:
                writer.abort()
                report.update(status="skipped", reason="no segment with a face in enough frames")
            report["seconds"] = round(time.monotonic() - start, 3)
            write_report(output / "reports", report)
    except Interrupted:
        writer.abort()
        raise
    except Exception as err:  # a bad file (MediaError) or anything else: reported, never the end of the run
        writer.abort()
        report.update(status="skipped", reason=f"{type(err).__name__}: {err}",
                      seconds=round(time.monotonic() - start, 3))
        write_report(output / "reports", report)
    return report


def _check_stop() -> None:
    """In a worker: stop (between two segments) once the main process was asked to."""
    stop = _worker.get("stop")
    if stop is not None and stop.is_set():
        raise Interrupted(signal.SIGTERM)


# ------------------------------------------------------------------------------------------------- the run


def _check_settings(output: Path, recorded: dict[str, Any]) -> None:
    path = output / "preprocess.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != recorded:
            changed = sorted(k for k in recorded if previous.get(k) != recorded[k])
            raise ValueError(f"{output} was preprocessed with other settings ({', '.join(changed)} differ): "
                             "use another output folder, or delete it to start over")
    write_json(path, recorded)


def _metadata(settings: Settings, reports: list[dict[str, Any]], landmarks: dict[str, Any] | None) -> dict[str, Any]:
    """What the DataModule needs to know without reading items: item order, identities, audio, lengths, and the
    landmark model's spec, point count and regions when items hold landmarks."""
    videos = [{"id": r["id"], "identity": r["identity"], "has_audio": r["has_audio"],
               "segments": [s["frames"] for s in r["segments"]]} for r in reports if r["status"] == "kept"]
    model = _worker["landmarks"]
    points = {"spec": landmarks, "num_points": model.num_points,
              "regions": {name: np.asarray(idx).tolist() for name, idx in model.regions.items()}} if model else None
    return {"version": 1, "fps": settings.fps, "resolution": settings.resolution,
            "sample_rate": settings.sample_rate, "latents": settings.cache_vae,
            "audio_features": settings.cache_audio, "landmarks": points, "videos": videos}


def run(inputs: str | Path | list[str | Path], output: str | Path, settings: Settings,
        face_detector: dict[str, Any], pose_estimator: dict[str, Any], workers: int = 1,
        identity: str = "stem", chunk_bytes: str = "64MB", progress: bool = True,
        landmarks: dict[str, Any] | None = None) -> dict[str, Any]:
    """Preprocess every video of ``inputs`` not done yet into ``output``; return the manifest. ``landmarks``: a
    landmarks component spec whose points each item stores (None or name ``none``: no landmarks)."""
    output = Path(output)
    videos = list_videos(inputs)
    landmarks = None if not landmarks or landmarks.get("name") == "none" else dict(landmarks)
    args = (output, settings, face_detector, pose_estimator, landmarks, chunk_bytes)
    _init_worker(*args, single_thread=False)  # a bad component spec or missing models fail here, before any write
    for sub in ("data", "reports"):
        (output / sub).mkdir(parents=True, exist_ok=True)
    try:
        lock = FileLock(str(output / ".lock"), timeout=0).acquire()
    except Timeout:
        raise RuntimeError(f"another `emo preprocess` is writing to {output}") from None
    with lock:
        _check_settings(output, {**settings.as_dict(), "face_detector": face_detector,
                                 "pose_estimator": pose_estimator, "landmarks": landmarks, "identity": identity,
                                 "chunk_bytes": chunk_bytes})
        shutil.rmtree(output / ".work", ignore_errors=True)  # what a killed run was writing
        jobs = [Job(str(video), video_id(video, root), identity_of(video, identity)) for video, root in videos]
        todo = [job for job in jobs if not finished(output / "reports", job.video_id, job.source)]
        frames, start = 0, time.monotonic()
        try:
            with progress_bar("emo preprocess", len(todo), "video", disable=not progress or not todo) as bar, \
                    closing(_map(todo, args, workers)) as reports:
                for report in reports:
                    frames += report.get("frames", 0)
                    bar.set_postfix_str(f"frames_per_s={frames / (time.monotonic() - start):.1f}", refresh=False)
                    bar.update()
        finally:
            shutil.rmtree(output / ".work", ignore_errors=True)
        with deferred():  # the index and the manifest are written whole
            reports = [r for r in read_reports(output / "reports") if r["id"] in {job.video_id for job in jobs}]
            write_index(output / "data", [r["index"] for r in reports if r["status"] == "kept"],
                        _metadata(settings, reports, landmarks))
            return write_manifest(output, settings.as_dict(), reports)


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where it exists: workers fork from a clean server process that imported the components once
    (~10 s for torch and diffusers), never from this process, whose OpenCV thread pool a fork would deadlock;
    spawn elsewhere."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["emo_lightning.components", "emo_lightning.preprocess.runner"])
    return context


def _map(jobs: list[Job], args: tuple, workers: int):
    """Run jobs in this process (``workers=1``; its components are built) or in a pool of worker processes,
    yielding reports as they end."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_run, jobs)
        return
    context = _pool_context()
    stop = context.Event()  # set when this process stops: each worker then stops at its next segment
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context,
                                                initializer=_init_worker, initargs=(*args, True, stop)) as pool:
        futures = [pool.submit(_run, job) for job in jobs]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        except BaseException:  # a failure, a signal, or the caller closing this generator
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def preprocess(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run from the composed ``conf/preprocess.yaml``."""
    settings = Settings(**{f.name: cfg[f.name] for f in fields(Settings) if f.name in cfg})
    return run(cfg["input"], cfg["output"], settings, cfg["face_detector"], cfg["pose_estimator"],
               workers=cfg["workers"], identity=cfg["identity"], chunk_bytes=cfg["chunk_bytes"],
               landmarks=cfg.get("landmarks"))
