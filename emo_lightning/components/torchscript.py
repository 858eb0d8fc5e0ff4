"""Feature networks from a local TorchScript file (the standard FID Inception and FVD I3D are published as such):
the file is read from disk, never downloaded, and runs without its original Python code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VALUE_RANGES = ("uint8", "unit", "signed")  # 0…255 integers, 0…1 floats, -1…1 floats


def load_torchscript(path: str | Path, what: str, where: str) -> torch.jit.ScriptModule:
    """The TorchScript module at ``path`` on the CPU, in eval mode; FileNotFoundError says where to get it."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{what} weights not found at {file}: this is never downloaded here; {where}")
    return torch.jit.load(str(file), map_location="cpu").eval()


class TorchScriptFeatures(nn.Module):
    """Calls a TorchScript feature network on uint8 input converted to its ``value_range`` and (if ``resize``)
    resized to ``resize``² pixels, with ``call_kwargs``; flattens the output to (N, num_features)."""

    def __init__(self, path: str, what: str, where: str, value_range: str = "uint8", resize: int | None = None,
                 call_kwargs: dict[str, Any] | None = None):
        super().__init__()
        if value_range not in VALUE_RANGES:
            raise ValueError(f"value_range must be one of {VALUE_RANGES}, got {value_range!r}")
        self.network = load_torchscript(path, what, where)
        self.value_range, self.resize, self.call_kwargs = value_range, resize, dict(call_kwargs or {})
        self.requires_grad_(False)

    def prepare(self, x: Tensor) -> Tensor:
        """uint8 (N, C, [F,] H, W) → the network's value range and size."""
        if self.resize is not None and x.shape[-2:] != (self.resize, self.resize):
            lead = x.shape[:-2]
            x = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]).float(), size=(self.resize, self.resize),
                              mode="bilinear", align_corners=False, antialias=True)
            x = x.round().clamp(0, 255).reshape(*lead, self.resize, self.resize)
            x = x.to(torch.uint8)
        if self.value_range == "uint8":
            return x.to(torch.uint8)
        x = x.float() / 255
        return x if self.value_range == "unit" else x * 2 - 1

    def features(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = self.network(self.prepare(x), **self.call_kwargs)
        return out.float().reshape(x.shape[0], -1)
