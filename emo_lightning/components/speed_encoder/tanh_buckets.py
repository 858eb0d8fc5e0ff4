"""EMO's speed embedding: soft tanh buckets per frame, a ±window context, then an MLP."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from emo_lightning.components.base import SpeedEncoder
from emo_lightning.components.windows import sliding_window
from emo_lightning.registry import register


@register("speed_encoder", "tanh_buckets", tiny={"output_dim": 16, "hidden_dim": 16})
class TanhBucketSpeedEncoder(SpeedEncoder):
    """s_i = tanh((w − c_i) / r_i · 3) for ``num_buckets`` centres c_i spread over [0, max_speed].

    Speeds are in degrees per frame; every bucket's radius is the spacing between centres.
    """

    def __init__(self, output_dim: int = 768, num_buckets: int = 8, max_speed: float = 3.0, window: int = 2,
                 hidden_dim: int = 256):
        super().__init__()
        self.output_dim, self.window = output_dim, window
        centers = torch.linspace(0.0, max_speed, num_buckets)
        self.register_buffer("centers", centers, persistent=False)
        self.register_buffer("radii", torch.full_like(centers, max_speed / max(num_buckets - 1, 1)),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(num_buckets * (2 * window + 1), hidden_dim), nn.SiLU(),
                                 nn.Linear(hidden_dim, output_dim))

    def buckets(self, speed: Tensor) -> Tensor:
        """``(B, F) -> (B, F, num_buckets)`` in (-1, 1)."""
        return torch.tanh((speed[..., None].float() - self.centers) / self.radii * 3.0)

    def forward(self, speed: Tensor) -> Tensor:
        windows = sliding_window(self.buckets(speed), self.window)  # (B, F, 2m+1, d)
        return self.mlp(windows.flatten(2).to(self.mlp[0].weight.dtype))
