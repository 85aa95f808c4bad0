"""CLIP-style symmetric InfoNCE with a learnable temperature.

For a batch of N matching (text, image) pairs with L2-normalised embeddings t_i, v_i:

    logits = s * T @ V.T            s = exp(logit_scale), learnable, init 1/0.07
    loss   = (CE(logits, arange(N)) + CE(logits.T, arange(N))) / 2

The diagonal holds the positives; every other entry in the row (column) is a negative.
Under ``torch.distributed`` the embeddings of all ranks are all-gathered *with gradient*,
so the negatives span the global batch (as in open_clip with ``gather_with_grad``).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = 100.0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0; gradients flow back to each rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def clip_loss(text: torch.Tensor, image: torch.Tensor, logit_scale: torch.Tensor
              ) -> torch.Tensor:
    """Symmetric InfoNCE of L2-normalised ``text``/``image`` (N, D) at scale ``logit_scale``.

    ``logit_scale`` is the multiplier itself (exp of the log-parameter), already clamped.
    """
    if text.shape != image.shape or text.dim() != 2:
        raise ValueError(f"text and image must both be (N, D); got {tuple(text.shape)} "
                         f"and {tuple(image.shape)}")
    logits = logit_scale * text @ image.t()
    target = torch.arange(len(text), device=text.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class ContrastiveLoss(nn.Module):
    """InfoNCE over (global) batches with a learnable, clamped temperature."""

    def __init__(self, init_temperature: float = 0.07, max_scale: float = MAX_LOGIT_SCALE):
        super().__init__()
        if not 0 < init_temperature:
            raise ValueError("init_temperature must be positive")
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_scale = max_scale

    def scale(self) -> torch.Tensor:
        """exp(logit_scale) clamped at ``max_scale`` (100, as CLIP and open_clip)."""
        return self.logit_scale.exp().clamp(max=self.max_scale)

    @property
    def temperature(self) -> float:
        return float(1.0 / self.scale().detach())

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``text``, ``image``: L2-normalised (N_local, D) embeddings of matching pairs."""
        return clip_loss(gather_with_grad(text), gather_with_grad(image), self.scale())


def infonce_floor(batch_size: int, compatible: float) -> float:
    """Expected InfoNCE (one direction) of the Bayes-optimal critic, in nats.

    When each text is equally compatible with a fraction ``compatible`` of all images (its
    own image always among them) and carries no other information about the image, the
    best critic scores every compatible image alike, so the loss of a batch is
    ``log(1 + B)`` with ``B ~ Binomial(batch_size - 1, compatible)`` compatible negatives.
    ``compatible = 0`` (the text identifies its image) gives 0; ``compatible = 1`` (no
    information) gives ``log(batch_size)``, the loss of a model at chance. On EmoSynth a
    text is compatible with the images of 2 of the K/2 shape groups: ``compatible = 4 / K``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if not 0.0 <= compatible <= 1.0:
        raise ValueError(f"compatible must be in [0, 1]; got {compatible}")
    if compatible in (0.0, 1.0):
        return math.log(batch_size) if compatible == 1.0 else 0.0
    n = batch_size - 1
    total = 0.0
    for b in range(n + 1):
        log_pmf = (math.lgamma(n + 1) - math.lgamma(b + 1) - math.lgamma(n - b + 1)
                   + (b * math.log(compatible) if b else 0.0)
                   + ((n - b) * math.log1p(-compatible) if n - b else 0.0))
        total += math.exp(log_pmf) * math.log1p(b)
    return total
