"""Hallo's identity tokens: a face embedding projected to a few cross-attention tokens."""

from __future__ import annotations

from torch import Tensor, nn


class HalloIdentityTokens(nn.Module):
    """A face embedding (B, embedding_dim) → (B, tokens, dim): one linear layer split into ``tokens`` tokens, each
    layer-normalised. Both of Hallo's UNets attend to these tokens where SD attends to its text tokens."""

    def __init__(self, embedding_dim: int = 512, dim: int = 768, tokens: int = 4):
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.proj = nn.Linear(embedding_dim, tokens * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, embedding: Tensor) -> Tensor:
        return self.norm(self.proj(embedding).unflatten(-1, (self.tokens, self.dim)))
