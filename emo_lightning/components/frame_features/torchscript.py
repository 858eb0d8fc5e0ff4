"""The FID Inception network (or any frame feature network) from a local TorchScript file.

The standard choice is ``inception-2015-12-05.pt`` (NVlabs' TorchScript export of the TensorFlow FID Inception
that StyleGAN2-ADA, StyleGAN-V and clean-fid use): uint8 input of any size, 2048-d pool features with
``return_features=True``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from emo_lightning.components.base import FrameFeatures
from emo_lightning.components.torchscript import TorchScriptFeatures
from emo_lightning.registry import register

INCEPTION_HINT = ("on a machine with internet download inception-2015-12-05.pt (StyleGAN2-ADA's metrics, "
                  "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt) "
                  "and pass its path as frame_features.path")


@register("frame_features", "torchscript")
class TorchScriptFrameFeatures(FrameFeatures):
    """A TorchScript network from ``path`` (see :class:`~emo_lightning.components.torchscript.TorchScriptFeatures`
    for ``value_range``, ``resize`` and ``call_kwargs``)."""

    def __init__(self, path: str = "~/.cache/emo_lightning/inception-2015-12-05.pt", value_range: str = "uint8",
                 resize: int | None = None, call_kwargs: dict[str, Any] | None = None):
        super().__init__()
        if call_kwargs is None:
            call_kwargs = {"return_features": True}
        self.network = TorchScriptFeatures(path, "FID Inception", INCEPTION_HINT, value_range, resize, call_kwargs)
        with torch.no_grad():
            self.num_features = self.forward(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)).shape[1]

    def forward(self, images: Tensor) -> Tensor:
        return self.network.features(images)
