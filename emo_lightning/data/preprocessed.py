"""Training data from `emo preprocess`: a LitData streaming data set (local folder or object storage URL) read as
the same batches as :class:`~emo_lightning.data.synthetic.SyntheticTalkingFaces`.

Every item is one segment of a video; each time it is read, a random window of it becomes the sample, so epochs
see different frames. The randomness depends only on (seed, epoch, item), never on the rank or worker.
"""

from __future__ import annotations

import inspect
import zlib
from pathlib import Path
from typing import Any

import cv2
import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

try:
    from litdata import StreamingDataLoader, StreamingDataset
    from litdata.utilities.dataset_utilities import load_index_file
except ImportError as err:  # see README: litdata is installed with --no-deps
    raise ImportError("data=preprocessed needs litdata, installed on its own because it requires torchvision (which "
                      "breaks the CPU torch wheel): pip install --no-deps \"litdata>=0.2.70,<0.3\"") from err

from emo_lightning.components.face_locator.landmark_map import LandmarkMap
from emo_lightning.data.model_requirements import audio_sample_rate, landmark_style
from emo_lightning.geometry import boxes_to_mask, lip_masks, mouth_boxes
from emo_lightning.model.stages import Stage


def _images(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) → float32 in [-1, 1], channels first: (3, H, W) or (3, F, H, W)."""
    images = torch.from_numpy(frames).float() / 127.5 - 1
    return images.permute(2, 0, 1) if images.ndim == 3 else images.permute(3, 0, 1, 2)


class PreprocessedClips(StreamingDataset):
    """Samples of one training stage from a preprocessed data set.

    stage 1: ``reference`` (3, H, W) and ``frames`` (3, 1, H, W), two different frames of a segment, and ``mask``
    (1, H, W), the target frame's face box. Stages 2-3: ``reference`` (a frame of the segment outside the window
    when there is one), ``motion`` (3, N, H, W) and ``frames`` (3, F, H, W), consecutive, ``audio`` (S,) with
    S = round(F · sample_rate / fps) for the target frames, ``speed`` (F,) in degrees/frame, and ``mask``, the
    union of the target frames' face boxes. Every stage has ``lip_mask`` (1, F, H, W): each target frame's lips from
    the landmarks `emo preprocess` stored (``lip_masks``), or the mouth region of its face box (``MOUTH_IN_FACE_BOX``)
    in a data set made without landmarks, and ``sample_id``, a number of the segment. Images are float32 in
    [-1, 1], resized to ``resolution`` if the data set was made at another one. ``random_windows=False`` picks the
    same window every epoch (validation). With ``use_latents`` and a data set that cached VAE latents,
    ``reference_latents`` (C, h, w), ``motion_latents`` (C, N, h, w) and ``frames_latents`` (C, F, h, w) come too
    (the training step then skips the VAE). With ``use_audio_features`` and a data set that cached the audio
    encoder's frozen features, stages 2-3 also give ``audio_features`` (F, feature_dim) of the target frames (the
    training step then runs only the encoder's trainable part). They were computed over the whole segment's audio,
    so each frame's features saw the segment around it rather than only the sample's frames. With
    ``landmark_style`` (set for a landmark face locator), every stage also gives ``landmark_map`` (1, F, H, W): the
    target frames' stored landmarks drawn by it.
    """

    def __init__(self, path: str, stage: int, resolution: int, num_frames: int, motion_frames: int, seed: int,
                 shuffle: bool, random_windows: bool, cache_dir: str | None = None, use_latents: bool = False,
                 use_audio_features: bool = False):
        super().__init__(path, cache_dir=cache_dir, shuffle=shuffle, seed=seed)
        self.stage, self.resolution, self.seed, self.random_windows = Stage.of(stage), resolution, seed, random_windows
        self.num_frames, self.motion_frames, self.use_latents = num_frames, motion_frames, use_latents
        self.use_audio_features = use_audio_features
        self.landmark_style: LandmarkMap | None = None
        self.metadata: dict[str, Any] = load_index_file(self.input_dir.path).get("emo") or {}
        if not self.metadata:
            raise ValueError(f"{path} is a LitData data set but not one written by `emo preprocess` (no 'emo' key "
                             "in its index.json)")

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return [self.sample(i) for i in item] if isinstance(item, list) else self.sample(item)

    def sample(self, item: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The stage's training sample drawn from one stored segment."""
        epoch = self.current_epoch if self.random_windows else 0
        rng = np.random.default_rng([self.seed, epoch, zlib.crc32(item["key"].encode())])
        length = len(item["offsets"]) - 1
        if self.stage == Stage.IMAGES:
            reference, target = rng.choice(length, 2, replace=False)
            frames = self._decode(item, [reference, target])
            sample = {"reference": _images(frames[0]), "frames": _images(frames[1:]),
                      "mask": self._mask(item["boxes"][target:target + 1]),
                      "lip_mask": self._lip_mask(item, slice(target, target + 1)),
                      **self._landmark_map(item, slice(target, target + 1))}
            return {**sample, **self._latents(item, reference, [], [target]),
                    "sample_id": torch.tensor(self._sample_id(item))}
        n, f = self.motion_frames, self.num_frames
        start = int(rng.integers(0, length - n - f + 1))
        outside = np.r_[0:start, start + n + f:length]
        reference = int(rng.choice(outside)) if len(outside) else int(rng.integers(0, length))
        frames = self._decode(item, [reference, *range(start, start + n + f)])
        target = slice(start + n, start + n + f)
        per_frame = self.metadata["sample_rate"] / self.metadata["fps"]
        lo, count = round((start + n) * per_frame), round(f * per_frame)
        audio = item["audio"][lo:lo + count]
        return {
            "reference": _images(frames[0]),
            "motion": _images(frames[1:1 + n]),
            "frames": _images(frames[1 + n:]),
            "audio": torch.from_numpy(np.pad(audio, (0, count - len(audio))).astype(np.float32)),
            "mask": self._mask(item["boxes"][target]),
            "lip_mask": self._lip_mask(item, target),
            **self._landmark_map(item, target),
            "speed": torch.from_numpy(np.asarray(item["speed"][target], np.float32)),
            **self._latents(item, reference, list(range(start, start + n)), list(range(target.start, target.stop))),
            **({"audio_features": torch.from_numpy(np.asarray(item["audio_features"][target], np.float32))}
               if self.use_audio_features else {}),
            "sample_id": torch.tensor(self._sample_id(item)),
        }

    @staticmethod
    def _sample_id(item: dict[str, Any]) -> int:
        """A stable number for the segment (it seeds the sample's noise in training, see `training/draws.py`)."""
        return zlib.crc32(item["key"].encode())

    def _latents(self, item: dict[str, Any], reference: int, motion: list[int], frames: list[int]
                 ) -> dict[str, torch.Tensor]:
        """The cached latents of the sample's frames, channels first (empty without ``use_latents``)."""
        if not self.use_latents:
            return {}
        latents = torch.from_numpy(np.asarray(item["latents"], np.float32))  # (F, C, h, w)
        out = {"reference_latents": latents[reference], "frames_latents": latents[frames].transpose(0, 1)}
        return {**out, "motion_latents": latents[motion].transpose(0, 1)} if motion else out

    def _decode(self, item: dict[str, Any], indices: list[int]) -> np.ndarray:
        """Decode frames ``indices`` of the item's JPEGs: uint8 (len(indices), res, res, 3) RGB."""
        jpeg, offsets, frames = item["jpeg"], item["offsets"], []
        for i in indices:
            bgr = cv2.imdecode(jpeg[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
            if bgr.shape[0] != self.resolution:
                bgr = cv2.resize(bgr, (self.resolution, self.resolution), interpolation=cv2.INTER_AREA)
            frames.append(bgr[..., ::-1])
        return np.stack(frames)

    def _mask(self, boxes: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(boxes_to_mask(self._scaled(boxes), self.resolution))[None]

    def _lip_mask(self, item: dict[str, Any], frames: slice) -> torch.Tensor:
        """(1, F, H, W): each frame's lips from its stored landmarks (``lip_masks``), or, in a data set without
        landmarks, the mouth region of its face box (``mouth_boxes``)."""
        boxes = self._scaled(item["boxes"][frames])
        stored = self.metadata.get("landmarks")
        if stored and "landmarks" in item:
            points = self._scaled(np.asarray(item["landmarks"][frames], np.float32))
            masks = lip_masks(points, np.asarray(stored["regions"]["lips_outer"]), boxes, self.resolution)
        else:
            masks = np.stack([boxes_to_mask(box[None], self.resolution) for box in mouth_boxes(boxes)])
        return torch.from_numpy(masks)[None]

    def _landmark_map(self, item: dict[str, Any], frames: slice) -> dict[str, torch.Tensor]:
        """``{"landmark_map": (1, F, H, W)}`` of the frames' stored landmarks, or nothing without ``landmark_style``."""
        if self.landmark_style is None:
            return {}
        points = self._scaled(np.asarray(item["landmarks"][frames], np.float32))
        maps = self.landmark_style.draw(points, self.metadata["landmarks"]["regions"], self.resolution, self.resolution)
        return {"landmark_map": torch.from_numpy(maps)[None]}

    def _scaled(self, boxes: np.ndarray) -> np.ndarray:
        return np.asarray(boxes, np.float32) * (self.resolution / self.metadata["resolution"])


def audio_features_mismatch(cached: dict[str, Any], spec: dict[str, Any], encoder: Any) -> str | None:
    """Why features cached with the audio encoder spec ``cached`` are not what ``encoder`` (built from ``spec``)
    computes, or None when they are: same registered name, an encoder whose frozen part is frozen, and the same
    value (defaults filled in) for every argument its features depend on (``feature_arguments``)."""
    if cached.get("name") != spec.get("name"):
        return f"they were made by audio encoder {cached.get('name')!r}, the model's is {spec.get('name')!r}"
    if not encoder.caches_features:
        return "the model's audio encoder has no frozen feature part (e.g. wav2vec2 with freeze: false)"
    defaults = {k: p.default for k, p in inspect.signature(type(encoder)).parameters.items()}
    differ = [k for k in encoder.feature_arguments if cached.get(k, defaults.get(k)) != spec.get(k, defaults.get(k))]
    return f"they were made with other {', '.join(differ)}" if differ else None


class EpochStreamingDataLoader(StreamingDataLoader):
    """LitData's loader, resumable under Lightning across epoch ends.

    LitData leaves ``restore`` (set by ``load_state_dict``) on until a restored epoch's generator runs to its end;
    Lightning stops reading a loader of known length after ``len(loader)`` batches, before that end, so the next
    epoch would replay the restored position (a resumed run repeated a sample, then ran one epoch behind). Here a
    new epoch after a restored one starts as a fresh epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._restored_epoch_read = False

    def __iter__(self) -> Any:
        if self.restore and self._restored_epoch_read:
            self.restore = False
        restoring, self._restored_epoch_read = self.restore, False
        for batch in super().__iter__():
            self._restored_epoch_read = restoring
            yield batch


def split_identities(identities: list[str], val_fraction: float, seed: int) -> set[str]:
    """The held-out identities: ``round(val_fraction · count)`` of them (at least one when there are two or more
    and ``val_fraction`` > 0), drawn with ``seed``."""
    unique = sorted(set(identities))
    count = round(val_fraction * len(unique))
    if val_fraction > 0 and len(unique) >= 2:
        count = min(max(count, 1), len(unique) - 1)
    return set(np.random.default_rng(seed).permutation(unique)[:count].tolist())


class PreprocessedDataModule(pl.LightningDataModule):
    """Stage-aware batches from the data set `emo preprocess` wrote (``path``: its ``data/`` folder, its parent, or
    an object-storage URL of the ``data/`` folder).

    Train and validation hold different people (identities, see ``split_identities``). Stages 2-3 use only
    segments with audio and at least ``motion_frames + num_frames`` frames. Each DDP rank streams different
    chunks (LitData shards by rank and worker); the order and the windows depend only on ``seed``.
    Latents cached by `emo preprocess cache_vae=…` are used (``use_latents``) when they were made at this
    ``resolution`` by the same VAE spec as the model's ``vae``; audio features cached by `cache_audio=…`
    (``use_audio_features``) when the model's ``audio_encoder`` has the same frozen part (see
    :func:`audio_features_mismatch`).
    """

    def __init__(self, path: str, stage: int | str = 2, resolution: int = 32, num_frames: int = 8,
                 motion_frames: int = 4, fps: float = 25.0, sample_rate: int | None = None, batch_size: int = 4,
                 num_workers: int = 0, val_fraction: float = 0.1, seed: int = 0, cache_dir: str | None = None,
                 use_latents: bool = True, use_audio_features: bool = True) -> None:
        super().__init__()
        stage = int(Stage.of(stage))  # saved as its number
        self.save_hyperparameters()

    def _clips(self, shuffle: bool) -> PreprocessedClips:
        hp = self.hparams
        path = str(Path(hp.path) / "data") if (Path(hp.path) / "data" / "index.json").is_file() else hp.path
        return PreprocessedClips(path, hp.stage, hp.resolution, hp.num_frames, hp.motion_frames, hp.seed,
                                 shuffle=shuffle, random_windows=shuffle, cache_dir=hp.cache_dir)

    def _latents_usable(self, metadata: dict[str, Any]) -> bool:
        """Cached latents are used only where they are what the model's VAE would make of these frames."""
        cached, hp = metadata.get("latents"), self.hparams
        if not (hp.use_latents and cached):
            return False
        model = self.trainer.lightning_module if self.trainer is not None else None
        vae = getattr(model, "hparams", {}).get("vae") if model is not None else None
        if metadata["resolution"] != hp.resolution:
            reason = "the data set's resolution differs"
        elif vae is not None and vae != cached:
            reason = f"they were made by {cached}, the model's vae is {vae}"
        else:
            return True
        rank_zero_warn(f"not using the latents cached in {hp.path}: {reason}; encoding frames instead")
        return False

    def _audio_features_usable(self, metadata: dict[str, Any]) -> bool:
        """Cached audio features are used only where the model's audio encoder would compute the same ones."""
        cached = metadata.get("audio_features")
        if not (self.hparams.use_audio_features and cached) or self.hparams.stage == Stage.IMAGES:
            return False
        model = self.trainer.lightning_module if self.trainer is not None else None
        if model is None:
            return True
        reason = audio_features_mismatch(cached, model.hparams["audio_encoder"], model.model.audio_encoder)
        if reason is None:
            return True
        rank_zero_warn(f"not using the audio features cached in {self.hparams.path}: {reason}; encoding the "
                       "waveform instead")
        return False

    def _landmark_style(self, metadata: dict[str, Any]) -> LandmarkMap | None:
        """The model's landmark map style when its face locator takes landmarks; an error if the data has none."""
        style = landmark_style(self)
        if style is not None and not metadata.get("landmarks"):
            raise ValueError(f"the model's face locator draws facial landmarks, but {self.hparams.path} was "
                             "preprocessed without them (landmarks=none): run `emo preprocess` again with "
                             "landmarks=mediapipe_mesh (the default) or landmarks=dlib68, or train with "
                             "model/face_locator=conv")
        return style

    def _eligible(self, metadata: dict[str, Any]) -> list[tuple[int, str]]:
        """``(item index, identity)`` of the items this stage can use."""
        needed = 2 if self.hparams.stage == Stage.IMAGES else self.hparams.motion_frames + self.hparams.num_frames
        items, index = [], 0
        for video in metadata["videos"]:
            for frames in video["segments"]:
                if frames >= needed and (self.hparams.stage == Stage.IMAGES or video["has_audio"]):
                    items.append((index, video["identity"]))
                index += 1
        return items

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        train, val = self._clips(shuffle=True), self._clips(shuffle=False)
        meta, rate = train.metadata, audio_sample_rate(self, hp.sample_rate)
        if abs(meta["fps"] - hp.fps) > 1e-6 or meta["sample_rate"] != rate:
            raise ValueError(f"{hp.path} was preprocessed at {meta['fps']} fps / {meta['sample_rate']} Hz; the model "
                             f"expects {hp.fps} fps / {rate} Hz: preprocess again with fps={hp.fps} "
                             f"sample_rate={rate}")
        items = self._eligible(meta)
        if not items:
            raise ValueError(f"{hp.path} holds no segment usable for stage {hp.stage} (stages 2-3 need audio and "
                             f"{hp.motion_frames + hp.num_frames} frames)")
        train.use_latents = val.use_latents = self._latents_usable(meta)
        train.use_audio_features = val.use_audio_features = self._audio_features_usable(meta)
        train.landmark_style = val.landmark_style = self._landmark_style(meta)
        held_out = split_identities([identity for _, identity in items], hp.val_fraction, hp.seed)
        self.train_set = train.subset([i for i, identity in items if identity not in held_out])
        self.val_set = val.subset([i for i, identity in items if identity in held_out]) if held_out else None

    def _loader(self, dataset: PreprocessedClips | None) -> StreamingDataLoader | list:
        if dataset is None:
            return []
        return EpochStreamingDataLoader(dataset, batch_size=self.hparams.batch_size,
                                        num_workers=self.hparams.num_workers,
                                        persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> StreamingDataLoader:
        return self._loader(self.train_set)

    def val_dataloader(self) -> StreamingDataLoader | list:
        return self._loader(self.val_set)

    def test_dataloader(self) -> StreamingDataLoader | list:
        return self._loader(self.val_set)
