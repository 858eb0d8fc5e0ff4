"""The FVD I3D network (or any clip feature network) from a local TorchScript file.

The standard choice is ``i3d_torchscript.pt`` (the Kinetics-400 I3D exported by StyleGAN-V, which its FVD and
most talking-head papers since use): called on clips in [-1, 1] at 224² with ``rescale=False, resize=False,
return_features=True``; 16-frame clips.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from emo_lightning.components.base import VideoFeatures
from emo_lightning.components.torchscript import TorchScriptFeatures
from emo_lightning.registry import register

I3D_HINT = ("on a machine with internet download i3d_torchscript.pt (StyleGAN-V's FVD detector, "
            "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt) and pass its path as video_features.path")


@register("video_features", "torchscript")
class TorchScriptVideoFeatures(VideoFeatures):
    """A TorchScript network from ``path`` (see :class:`~emo_lightning.components.torchscript.TorchScriptFeatures`
    for ``value_range``, ``resize`` and ``call_kwargs``); ``min_frames``: the shortest clip it accepts."""

    def __init__(self, path: str = "~/.cache/emo_lightning/i3d_torchscript.pt", value_range: str = "signed",
                 resize: int | None = 224, call_kwargs: dict[str, Any] | None = None, min_frames: int = 9):
        super().__init__()
        if call_kwargs is None:
            call_kwargs = {"rescale": False, "resize": False, "return_features": True}
        self.network = TorchScriptFeatures(path, "FVD I3D", I3D_HINT, value_range, resize, call_kwargs)
        self.min_frames = min_frames
        with torch.no_grad():
            probe = torch.zeros(1, 3, min_frames, resize or 64, resize or 64, dtype=torch.uint8)
            self.num_features = self.forward(probe).shape[1]

    def forward(self, videos: Tensor) -> Tensor:
        return self.network.features(videos)
