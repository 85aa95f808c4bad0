"""CLIP-style symmetric InfoNCE with a learnable temperature, and the training loss.

For a batch of N matching (text, image) pairs with L2-normalised embeddings t_i, v_i:

    logits = s * T @ V.T            s = exp(logit_scale), learnable, init 1/0.07
    loss   = (CE(logits, arange(N)) + CE(logits.T, arange(N))) / 2

The diagonal holds the positives; every other entry in the row (column) is a negative.
Under ``torch.distributed`` the embeddings of all ranks are all-gathered *with gradient*,
so the negatives span the global batch (open_clip's ``gather_with_grad``). The loss is
computed outside the model, as in open_clip and Hugging Face: the model returns
embeddings, logits and the scale; :func:`compute_loss` adds CE + lambda * InfoNCE.

The logits are computed in float32 with autocast off: at s = 100 a bf16 similarity
matmul would move logits by up to ~0.1.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

MAX_LOGIT_SCALE = 100.0
#: Labels hidden from the CE term (semi-supervised training: ``label_fraction`` < 1).
IGNORE = -100


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0; gradients flow back to each rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def clip_loss(text: torch.Tensor, image: torch.Tensor, logit_scale: torch.Tensor
              ) -> torch.Tensor:
    """Symmetric InfoNCE of L2-normalised ``text``/``image`` (N, D) at scale ``logit_scale``.

    ``logit_scale`` is the multiplier s itself (the exp of the learnt log-parameter).
    """
    if text.shape != image.shape or text.dim() != 2:
        raise ValueError(f"text and image must both be (N, D); got {tuple(text.shape)} "
                         f"and {tuple(image.shape)}")
    dtype = torch.promote_types(text.dtype, torch.float32)  # float32, or float64 in tests
    with torch.autocast(text.device.type, enabled=False):
        logits = logit_scale.to(dtype) * text.to(dtype) @ image.to(dtype).t()
        target = torch.arange(len(text), device=text.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def contrastive_loss(text: torch.Tensor, image: torch.Tensor, logit_scale: torch.Tensor
                     ) -> torch.Tensor:
    """InfoNCE over the global batch: this rank's embeddings plus every other rank's."""
    return clip_loss(gather_with_grad(text), gather_with_grad(image), logit_scale)


def clamp_logit_scale_(log_scale: torch.nn.Parameter, max_scale: float = MAX_LOGIT_SCALE
                       ) -> None:
    """Keep ln s in [0, ln max_scale], in place, after each optimizer step (open_clip).

    Clamping the parameter rather than s in the forward keeps its gradient alive: a
    scale at the cap can still come back down.
    """
    with torch.no_grad():
        log_scale.clamp_(0, math.log(max_scale))


def classification_loss(logits: torch.Tensor, labels: torch.Tensor,
                        count: int | torch.Tensor | None = None, q: float = 0.0
                        ) -> torch.Tensor:
    """Cross-entropy summed over labelled posts, divided by ``count`` (default: their number).

    ``q`` > 0: the generalized cross-entropy (1 - p_y^q) / q (Zhang & Sabuncu, 2018),
    whose pull towards a label the model finds unlikely (a wrong one) is bounded; q -> 0
    is cross-entropy. Hidden labels (``IGNORE``) add nothing; a batch without any labelled
    post gives 0. Micro-batches pass the count of the whole batch, so their sum is the
    batch's mean.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if q:
        seen = labels != IGNORE
        log_p = logits[seen].log_softmax(-1).gather(1, labels[seen, None])
        ce = ((1 - (q * log_p).exp()) / q).sum()
    else:
        ce = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
    if count is None:
        count = (labels != IGNORE).sum()
    return ce / torch.as_tensor(count, device=ce.device).clamp_min(1)


def compute_loss(out, labels: torch.Tensor, contrastive_weight: float, q: float = 0.0
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CE + lambda * InfoNCE for a model output; returns the total and its detached parts.

    ``out`` has ``logits`` and, for a two-branch model, ``text_embed``, ``image_embed`` and
    ``logit_scale``. The InfoNCE value is reported even at lambda = 0 (an ablation).
    ``q`` > 0 makes the CE term the generalized one (:func:`classification_loss`).
    """
    ce = classification_loss(out.logits, labels, q=q)
    parts = {"ce": ce.detach()}
    loss = ce
    if out.logit_scale is not None:
        if contrastive_weight:
            nce = contrastive_loss(out.text_embed, out.image_embed, out.logit_scale)
            loss = loss + contrastive_weight * nce
        else:
            with torch.no_grad():
                nce = clip_loss(out.text_embed, out.image_embed, out.logit_scale)
        parts["contrastive"] = nce.detach()
    return loss, parts


def infonce_floor(batch_size: int, compatible: float) -> float:
    """Expected InfoNCE (one direction) of the Bayes-optimal critic, in nats.

    When each text is equally compatible with a fraction ``compatible`` of all images (its
    own image always among them) and carries no other information about the image, the
    best critic scores every compatible image alike, so the loss of a batch is
    ``log(1 + B)`` with ``B ~ Binomial(batch_size - 1, compatible)`` compatible negatives.
    ``compatible = 0`` (the text identifies its image) gives 0; ``compatible = 1`` (no
    information) gives ``log(batch_size)``, the loss of a model at chance. On EmoSynth a
    post's text is compatible with the images of 2 of the K/2 shape groups:
    ``compatible = 4 / K`` (so at K = 4 there is nothing to learn).
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
