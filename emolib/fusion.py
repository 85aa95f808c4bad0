"""Fusing the two modalities before the classifier.

:class:`AttentionFusion` treats the text embedding, the image embedding and their
interaction (element-wise product) as three *modality tokens* and pools them with a
learned query, multi-head attention style. The attention weights say, per post and per
head, how much each token contributed; they are returned for plotting.
:class:`ConcatFusion` is the ablation baseline: concatenate and project.
"""

from __future__ import annotations

import torch
from torch import nn


def modality_tokens(text: torch.Tensor | None, image: torch.Tensor | None) -> torch.Tensor:
    """(B, M, D) tokens: [text, image, text*image] for both modalities, else the one given."""
    if text is not None and image is not None:
        return torch.stack([text, image, text * image], dim=1)
    present = text if text is not None else image
    if present is None:
        raise ValueError("give at least one modality")
    return present.unsqueeze(1)


TOKEN_NAMES = {3: ("text", "image", "text×image"), 1: ("single",)}


class AttentionFusion(nn.Module):
    """Learned-query attention pooling over modality tokens."""

    def __init__(self, dim: int, num_tokens: int = 3, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.type_embed = nn.Parameter(torch.zeros(num_tokens, dim))
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.randn(heads, self.head_dim) * self.head_dim ** -0.5)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.out_dim = dim

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, M, D) -> fused (B, D), weights (B, heads, M) summing to 1 over M."""
        b, m, d = tokens.shape
        x = self.norm(tokens + self.type_embed[:m])
        k = self.key(x).view(b, m, self.heads, self.head_dim)
        v = self.value(x).view(b, m, self.heads, self.head_dim)
        scores = torch.einsum("hd,bmhd->bhm", self.query, k) * self.head_dim ** -0.5
        weights = scores.softmax(dim=-1)
        pooled = torch.einsum("bhm,bmhd->bhd", weights, v).reshape(b, d)
        fused = self.out(pooled)
        return fused + self.mlp(fused), weights


class ConcatFusion(nn.Module):
    """Concatenate the modality tokens and project: no weights to inspect."""

    def __init__(self, dim: int, num_tokens: int = 3, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(num_tokens * dim), nn.Linear(num_tokens * dim, dim),
                                  nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.out_dim = dim

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.proj(tokens.flatten(1)), None
