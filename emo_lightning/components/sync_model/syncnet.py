"""SyncNet (Chung & Zisserman, "Out of time", ACCV 2016 workshops), the ``syncnet_v2`` network behind the Sync-C /
Sync-D numbers of talking-head papers: an MFCC stream (13 coefficients × 20 steps = 0.2 s) and a face stream
(5 frames of 224² face crops, BGR 0–255 as OpenCV reads them), each embedded into 1024-d.

Written here from the paper's architecture; the module names (``netcnnaud``, ``netfcaud``, ``netcnnlip``,
``netfclip``) follow the public ``syncnet_v2.model`` state dict, which loads as it is (``weights_only=True``).
``width`` divides every layer's channels (16 gives a tiny random model for tests); the kernel sizes, and so the
224² input, are the architecture's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from emo_lightning.components.base import SyncModel
from emo_lightning.components.sync_model.mfcc import mfcc
from emo_lightning.registry import register

WEIGHTS_HINT = ("syncnet_v2.model is never downloaded here: on a machine with internet get it from the authors' "
                "syncnet_python repository (download_model.sh: http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/"
                "syncnet_v2.model) and pass its path as sync_model.path")
MFCC_STEPS_PER_FRAME = 4  # 100 MFCC steps per second at 25 video frames per second


def _block(conv: nn.Module, norm: nn.Module, *pool: nn.Module) -> list[nn.Module]:
    return [conv, norm, nn.ReLU(inplace=True), *pool]


def audio_stream(c: int) -> nn.Sequential:
    """(N, 1, 13, 20) MFCC windows → (N, 8c, 1, 1)."""
    return nn.Sequential(
        *_block(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.MaxPool2d(1, 1)),
        *_block(nn.Conv2d(c, 3 * c, 3, padding=1), nn.BatchNorm2d(3 * c), nn.MaxPool2d(3, (1, 2))),
        *_block(nn.Conv2d(3 * c, 6 * c, 3, padding=1), nn.BatchNorm2d(6 * c)),
        *_block(nn.Conv2d(6 * c, 4 * c, 3, padding=1), nn.BatchNorm2d(4 * c)),
        *_block(nn.Conv2d(4 * c, 4 * c, 3, padding=1), nn.BatchNorm2d(4 * c), nn.MaxPool2d(3, 2)),
        *_block(nn.Conv2d(4 * c, 8 * c, (5, 4)), nn.BatchNorm2d(8 * c)),
    )


def face_stream(c: int) -> nn.Sequential:
    """(N, 3, 5, 224, 224) face crops → (N, 8c, 1, 1, 1)."""
    return nn.Sequential(
        *_block(nn.Conv3d(3, 96 * c // 64, (5, 7, 7), (1, 2, 2)), nn.BatchNorm3d(96 * c // 64),
                nn.MaxPool3d((1, 3, 3), (1, 2, 2))),
        *_block(nn.Conv3d(96 * c // 64, 4 * c, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(4 * c),
                nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))),
        *_block(nn.Conv3d(4 * c, 4 * c, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(4 * c)),
        *_block(nn.Conv3d(4 * c, 4 * c, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(4 * c)),
        *_block(nn.Conv3d(4 * c, 4 * c, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(4 * c),
                nn.MaxPool3d((1, 3, 3), (1, 2, 2))),
        *_block(nn.Conv3d(4 * c, 8 * c, (1, 6, 6)), nn.BatchNorm3d(8 * c)),
    )


def head(width: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, dim))


@register("sync_model", "syncnet_v2", tiny={"path": None, "width": 16, "dim": 16})
class SyncNetV2(SyncModel):
    """SyncNet v2 with weights from ``path`` (None: random weights, only for tests); ``batch``: windows per
    forward pass."""

    crop_size = 224

    def __init__(self, path: str | None = "~/.cache/emo_lightning/syncnet_v2.model", width: int = 1, dim: int = 1024,
                 batch: int = 32):
        super().__init__()
        c = 64 // width
        self.dim, self.batch = dim, batch
        self.netcnnaud, self.netfcaud = audio_stream(c), head(8 * c, dim)
        self.netcnnlip, self.netfclip = face_stream(c), head(8 * c, dim)
        if path is not None:
            self.load_weights(path)
        self.eval().requires_grad_(False)

    def load_weights(self, path: str) -> None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"SyncNet weights not found at {file}: {WEIGHTS_HINT}")
        state = torch.load(file, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{file} is not a syncnet_v2 state dict: missing {missing[:4]}, unexpected "
                             f"{unexpected[:4]}")

    def embed_video(self, crops: Tensor) -> Tensor:
        frames = crops.flip(1).float()  # RGB → BGR, 0–255, as the network was trained
        starts = range(frames.shape[0] - self.window + 1)
        windows = torch.stack([frames[s : s + self.window] for s in starts]).transpose(1, 2)
        return torch.cat([self.netfclip(self.netcnnlip(chunk).flatten(1)) for chunk in windows.split(self.batch)])

    def embed_audio(self, waveform: Tensor, num_frames: int) -> Tensor:
        samples = round(num_frames * self.sample_rate / self.fps)
        wave = np.zeros(samples)
        clipped = waveform.detach().cpu().double().numpy()[:samples]
        wave[: len(clipped)] = clipped * 32768  # the network was trained on 16-bit integer samples
        coefficients = torch.from_numpy(mfcc(wave, self.sample_rate).T.copy()).float().to(waveform.device)
        steps = self.window * MFCC_STEPS_PER_FRAME
        coefficients = nn.functional.pad(coefficients, (0, max(0, num_frames * MFCC_STEPS_PER_FRAME + steps)))
        windows = torch.stack([coefficients[:, MFCC_STEPS_PER_FRAME * s : MFCC_STEPS_PER_FRAME * s + steps]
                               for s in range(num_frames - self.window + 1)])[:, None]
        return torch.cat([self.netfcaud(self.netcnnaud(chunk).flatten(1)) for chunk in windows.split(self.batch)])
