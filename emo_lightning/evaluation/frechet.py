"""One Fréchet distance for FID, FVD and E-FID: torchmetrics' ``FrechetInceptionDistance`` (its running sums of
features and outer products sync across DDP ranks), fed by a registered feature network, or by feature vectors
computed elsewhere (:class:`FrechetDistance`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance


class GivenFeatures(nn.Module):
    """The 'network' of a Fréchet distance over precomputed features (N, num_features): the identity."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def frechet_inception_distance(features: nn.Module) -> FrechetInceptionDistance:
    """FID (or FVD, with a clip feature network): ``update(uint8 images or clips, real=...)``."""
    return FrechetInceptionDistance(feature=features, reset_real_features=True)


class FrechetDistance(FrechetInceptionDistance):
    """The Fréchet distance between the Gaussians fitted to two sets of feature vectors:
    ``update(features (N, num_features), real=True | False)``, ``compute()`` → d² ≥ 0."""

    def __init__(self, num_features: int):
        super().__init__(feature=GivenFeatures(num_features), reset_real_features=True)

    def update(self, features: Tensor, real: bool) -> None:  # type: ignore[override]
        super().update(torch.as_tensor(features, dtype=torch.float64, device=self.device), real)


class KernelDistance(KernelInceptionDistance):
    """KID with a registered feature network; subsets shrink to the number of samples (short videos)."""

    def __init__(self, features: nn.Module, subsets: int = 100, subset_size: int = 1000):
        super().__init__(feature=features, subsets=subsets, subset_size=subset_size, reset_real_features=True)
        self.max_subset_size = subset_size

    def compute(self) -> tuple[Tensor, Tensor]:
        available = min(sum(len(f) for f in _as_list(self.real_features)),
                        sum(len(f) for f in _as_list(self.fake_features)))
        self.subset_size = min(self.max_subset_size, available)
        return super().compute()


def _as_list(state: Tensor | list[Tensor]) -> list[Tensor]:
    return state if isinstance(state, list) else [state]
