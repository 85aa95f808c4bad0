"""What the hardware decides: device, precision, and how many posts fit in one pass.

* Precision follows the chip: bf16 autocast where the GPU has native bf16 (compute
  capability >= 8.0: A100, L4, H100); fp16 autocast with a gradient scaler below that
  (Colab's T4 is 7.5: ``torch.cuda.is_bf16_supported()`` says True there, but it counts
  software emulation); fp32 on the CPU.
* The global batch is what the contrastive loss sees (every in-batch negative counts);
  the micro-batch is what fits in memory. :func:`choose_micro_batch` estimates it from the
  GPU's free memory, and :func:`emolib.train.train_step` splits a batch into micro-batches
  without changing the gradient (GradCache).
"""

from __future__ import annotations

import contextlib
import os

import torch

from emolib.config import PRECISIONS as CHOICES

#: Bytes kept for backward per (layer x token x hidden unit) and sample under 16-bit
#: autocast. Measured: BERT-base + ViT-B/16 at 64 tokens / 224 px, bf16, batch 128 on an
#: H200 peaked at 13.4 GiB, 3.3 of them weights, gradients and AdamW state: ~81 MiB per
#: sample for 12 x (64 + 197) x 768 units, 35 B each; 46 B leaves room for the allocator.
#: fp32 doubles it.
ACTIVATION_BYTES = 46
#: Bytes per parameter outside the activations: fp32 weight, gradient, AdamW's two
#: moments, and autocast's 16-bit weight copy.
PARAM_BYTES = 4 * 4 + 2
#: Share of the GPU's free memory a step may plan to use (the allocator fragments).
HEADROOM = 0.85


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: What autocast and the GradScaler take: config's choices, once "auto" is resolved.
PRECISIONS = tuple(p for p in CHOICES if p != "auto")


def choose_precision(device: torch.device, requested: str = "auto",
                     capability: tuple[int, int] | None = None) -> str:
    """"bf16", "fp16" or "fp32" for ``device``; ``requested`` other than "auto" wins."""
    if requested != "auto":
        if requested not in PRECISIONS:
            raise ValueError(f"precision must be auto, bf16, fp16 or fp32; got {requested!r}")
        return requested
    if device.type != "cuda":
        return "fp32"
    major, _ = capability or torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16"


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS` ("auto" is resolved before, by
    :func:`choose_precision`); a typo must not silently train in another precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be bf16, fp16 or fp32; got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str):
    """Autocast to bf16/fp16 (matmuls on tensor cores), or nothing for fp32."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (its range is too small for small gradients); a no-op else."""
    return torch.amp.GradScaler(device.type, enabled=check_precision(precision) == "fp16")


def activation_bytes_per_sample(model: torch.nn.Module, precision: str) -> int:
    """The documented estimate of what one sample keeps for backward (ACTIVATION_BYTES).

    Counts the trained transformer layers of each branch (a frozen bottom keeps nothing).
    """
    units = 0
    cfg = model.cfg
    for enc in (model.text_encoder, model.image_encoder):
        if enc is None or enc.cfg.freeze:
            continue
        c = enc.backbone.config
        patch = getattr(c, "patch_size", None)
        tokens = (cfg.image_size // patch) ** 2 + 1 if patch else cfg.max_length
        layers = enc.cfg.train_last_layers if enc.cfg.train_last_layers is not None \
            else c.num_hidden_layers
        units += layers * tokens * c.hidden_size
    return units * ACTIVATION_BYTES * (2 if precision == "fp32" else 1)


def gpu_budget(device: torch.device) -> int:
    """Bytes this process may still allocate: free memory, within ``EMOLIB_GPU_MEMORY_GIB``
    if set (``python -m emolib train --gpu-memory-limit 15`` sets it, and caps the
    allocator there, to plan and run as on a 15 GB card)."""
    free, _ = torch.cuda.mem_get_info(device)
    limit = os.environ.get("EMOLIB_GPU_MEMORY_GIB")
    if limit:
        free = min(free, int(float(limit) * 2**30) - torch.cuda.memory_reserved(device))
    return free


def choose_micro_batch(batch_size: int, per_sample: int, params: int, budget: int | None
                       ) -> int:
    """The largest power of two (or the whole batch) whose step fits ``budget`` bytes.

    ``budget`` None (the CPU) means the whole batch. Never less than 1.
    """
    if budget is None:
        return batch_size
    room = HEADROOM * budget - PARAM_BYTES * params
    fits = int(room // max(per_sample, 1))
    if fits >= batch_size:
        return batch_size
    micro = 1
    while micro * 2 <= fits:
        micro *= 2
    return micro
