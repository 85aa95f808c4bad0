"""Frozen text features, computed once: the frozen bottom of the text encoder is a fixed map.

With ``EncoderConfig.train_last_layers = k`` the embeddings and the first ``L - k`` layers
of the text encoder never change and run without dropout, so every epoch would compute the
same hidden states for the same post again. :func:`with_text_features` computes them once
per dataset and returns a :class:`~emolib.data.TensorCache` whose batches carry them
(``text_features``); the model then runs only the ``k`` trained layers. Results are
the same up to float rounding (tests/test_frozen_features.py). On the ``cpu`` profile
(MiniLM, 5 of 6 layers frozen) a training step takes 336 ms instead of 468 ms on a 2-core
CPU (x1.39, ``benchmarks/frozen_features.py``), for a one-off 21 s.

The features live in memory (N x max_length x hidden floats: 281 MB for the default
EmoSynth) and are kept for the last dataset and weights used, so the ablation runs of
chapter 07 compute them once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import torch
from tqdm import tqdm

from emolib.data import TensorCache
from emolib.encoders import TextEncoder

log = logging.getLogger(__name__)

#: larger feature tensors are not built (the model then runs every layer, as without them)
MAX_BYTES = 4 * 2**30

_memo: dict[str, torch.Tensor] = {}  # the last (dataset, frozen weights) -> features


def fingerprint(encoder: TextEncoder, cache: TensorCache) -> str:
    """Identifies the features: the tokens of every post and the frozen weights."""
    h = hashlib.blake2b(digest_size=16)
    h.update(cache.input_ids.numpy().tobytes())
    h.update(cache.attention_mask.numpy().tobytes())
    h.update(str(encoder.frozen_layers).encode())
    for name, param in encoder.backbone.named_parameters():
        if not param.requires_grad:
            h.update(name.encode())
            h.update(param.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def compute_text_features(encoder: TextEncoder, cache: TensorCache, batch_size: int = 256,
                          progress: bool = False) -> torch.Tensor:
    """(N, L, H) float32 on the CPU: the hidden states entering the first trained layer.

    Positions past a post's last token stay zero: the trained layers mask them out.
    """
    n, length = cache.input_ids.shape
    device = next(encoder.parameters()).device
    out = torch.zeros(n, length, encoder.hidden_size)
    for start in tqdm(range(0, n, batch_size), desc="frozen text features", leave=False,
                      disable=not progress):
        mask = cache.attention_mask[start:start + batch_size]
        width = max(int(mask.sum(1).max()), 1)
        mask = mask[:, :width].long().to(device)
        ids = cache.input_ids[start:start + batch_size, :width].long().to(device)
        feats = encoder.frozen_features(ids, mask) * mask[..., None]
        out[start:start + batch_size, :width] = feats.float().cpu()
    return out


def with_text_features(encoder: TextEncoder | None, cache: TensorCache,
                       progress: bool = False) -> TensorCache:
    """``cache`` plus its frozen text features, or ``cache`` itself where there are none
    (no text branch, nothing frozen, or too large for memory)."""
    if encoder is None or not encoder.frozen_layers:
        return cache
    n, length = cache.input_ids.shape
    size = n * length * encoder.hidden_size * 4
    if size > MAX_BYTES:
        log.info("frozen text features would take %.1f GB: not cached", size / 2**30)
        return cache
    key = fingerprint(encoder, cache)
    if key not in _memo:
        _memo.clear()
        _memo[key] = compute_text_features(encoder, cache, progress=progress)
    return dataclasses.replace(cache, text_features=_memo[key])


def clear() -> None:
    """Forget the kept features (frees their memory)."""
    _memo.clear()
