"""Training: the loop. AdamW, warmup + cosine, clipping, precision by hardware,
micro-batches that leave the gradient unchanged, early stopping on validation MCC,
atomic checkpoints each epoch and exact resume.

Exact resume works because nothing random carries over from one epoch to the next: each
epoch reseeds torch (dropout) and the batch order from ``(seed, epoch)``, and the
checkpoint holds the weights, optimizer, scaler, schedule and history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from emolib.config import TrainConfig
from emolib.data import BatchIterator, TensorCache
from emolib.distributed import DistInfo, barrier, from_main
from emolib.hardware import (
    activation_bytes_per_sample,
    autocast,
    choose_micro_batch,
    choose_precision,
    gpu_budget,
    grad_scaler,
)
from emolib.layout import write_atomic
from emolib.losses import (
    IGNORE,
    clamp_logit_scale_,
    classification_loss,
    clip_loss,
    compute_loss,
    contrastive_loss,
)
from emolib.metrics import classification_metrics
from emolib.model import EmoticonModel, predict, text_features

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


def set_seed(seed: int) -> None:
    """Seed every random source we use: Python, NumPy, torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_groups(model: EmoticonModel, cfg: TrainConfig) -> list[dict]:
    """Pretrained encoder weights get ``pretrained_lr``; no weight decay on norms, biases,
    the log-scale and the fusion's type embeddings."""
    pretrained = set()
    for enc in (model.text_encoder, model.image_encoder):
        if enc is not None and enc.pretrained:
            pretrained.update(id(p) for p in enc.parameters())
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            no_decay = p.dim() < 2 or "type_embed" in name
            groups.setdefault((id(p) in pretrained, no_decay), []).append(p)
    return [{"params": ps, "lr": cfg.pretrained_lr if pre else cfg.lr,
             "weight_decay": 0.0 if nd else cfg.weight_decay}
            for (pre, nd), ps in sorted(groups.items())]


def warmup_cosine(total_steps: int, warmup_ratio: float):
    """Learning-rate factor of step 0, 1, ...: linear warmup to 1 at step ``warmup - 1``,
    then a cosine down to 0 at step ``total_steps``."""
    warmup = max(1, int(warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def schedule(cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs, patience) of a run: ``cfg.epochs`` and ``cfg.patience``, both stretched by
    ``cfg.min_epoch_steps / steps_per_epoch`` where an epoch is shorter than
    ``cfg.min_epoch_steps`` steps. A small dataset then gets as many optimizer steps, and
    as long a patience in steps, as one of ``min_epoch_steps`` batches per epoch."""
    if steps_per_epoch >= cfg.min_epoch_steps:
        return cfg.epochs, cfg.patience
    factor = cfg.min_epoch_steps / max(1, steps_per_epoch)
    return math.ceil(cfg.epochs * factor), math.ceil(cfg.patience * factor)


def augment(images: torch.Tensor) -> torch.Tensor:
    """A batch of images, each flipped left-right with probability 1/2 and shifted by up to
    1/8 of its side in x and y (borders reflected); draws from torch's generator, which
    ``fit`` reseeds every epoch (exact resume)."""
    b, _, h, w = images.shape
    flip = torch.rand(b, device=images.device) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    pad = max(1, min(h, w) // 8)
    padded = nn.functional.pad(images.float(), (pad,) * 4, mode="reflect").to(images.dtype)
    shifts = torch.randint(0, 2 * pad + 1, (b, 2)).tolist()
    return torch.stack([padded[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(shifts)])


def make_optimizer(model: EmoticonModel, cfg: TrainConfig, device: torch.device,
                   total_steps: int):
    """AdamW (fused into one kernel per step on CUDA) and its warmup + cosine schedule."""
    opt = torch.optim.AdamW(param_groups(model, cfg), fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, cfg.warmup_ratio))
    return opt, sched


# ---------------------------------------------------------------- one step
def _rng_state(device: torch.device) -> tuple:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device)
                                   if device.type == "cuda" else None)


def _set_rng_state(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def log_scale(model: nn.Module) -> nn.Parameter | None:
    """The learnt ln s of a (possibly DDP-wrapped or compiled) model, if it has one."""
    return next((p for n, p in model.named_parameters() if n.endswith("logit_scale")), None)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (autocast's 16-bit embeddings widened; float64 kept, for tests)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def micro_batched_backward(model: nn.Module, batch: dict, micro: int, weight: float,
                           precision: str, scaler, q: float = 0.0
                           ) -> dict[str, torch.Tensor]:
    """Backward of CE + weight * InfoNCE over the whole batch, ``micro`` posts at a time.

    GradCache (Gao et al. 2021), as open_clip's ``accum_freq``: (1) embed every
    micro-batch without gradient; (2) InfoNCE over all the embeddings, backward to them
    (and to the scale); (3) run each micro-batch again with gradient and push those
    embedding gradients (plus its CE) through the encoders. Each micro-batch replays the
    random state of its first pass, so dropout draws the same masks: the gradient is
    exactly that of one pass over the batch, in a fraction of the memory.
    """
    scale = log_scale(model)
    device = batch["labels"].device
    chunks = [{k: v[i:i + micro] for k, v in batch.items()}
              for i in range(0, len(batch["labels"]), micro)]
    labelled = (batch["labels"] != IGNORE).sum()
    grads: list = [None] * len(chunks)
    states, nce = [], None
    if weight and scale is not None:
        with torch.no_grad():
            embeds = []
            for chunk in chunks:
                states.append(_rng_state(device))
                with autocast(device, precision):
                    out = model(**chunk)
                embeds.append((_wide(out.text_embed), _wide(out.image_embed)))
        t = torch.cat([e[0] for e in embeds]).requires_grad_()
        v = torch.cat([e[1] for e in embeds]).requires_grad_()
        nce = contrastive_loss(t, v, scale.exp())
        scaler.scale(weight * nce).backward()
        end_state = _rng_state(device)
        sizes = [len(c["labels"]) for c in chunks]
        grads = list(zip(t.grad.split(sizes), v.grad.split(sizes), strict=True))
    ce, seen = [], []
    for i, chunk in enumerate(chunks):
        if states:
            _set_rng_state(states[i], device)
        last = i == len(chunks) - 1
        no_sync = getattr(model, "no_sync", None)
        with no_sync() if no_sync and not last else contextlib.nullcontext():
            with autocast(device, precision):
                out = model(**chunk)
            part = classification_loss(out.logits, chunk["labels"], labelled, q)
            surrogate = scaler.scale(part)
            if grads[i] is not None:  # d(loss)/d(embedding), already scaled
                surrogate = surrogate + (_wide(out.text_embed) * grads[i][0]).sum() \
                    + (_wide(out.image_embed) * grads[i][1]).sum() + 0 * out.logit_scale
            surrogate.backward()
        ce.append(part.detach())
        if out.logit_scale is not None:
            seen.append((out.text_embed.detach(), out.image_embed.detach(), out.logit_scale))
    if states:
        _set_rng_state(end_state, device)
    if nce is None and seen:  # lambda = 0: report the InfoNCE all the same
        with torch.no_grad():
            nce = clip_loss(torch.cat([s[0] for s in seen]), torch.cat([s[1] for s in seen]),
                            seen[0][2])
    parts = {"ce": torch.stack(ce).sum()}
    if nce is not None:
        parts["contrastive"] = nce.detach()
    return parts


def train_step(model: nn.Module, batch: dict[str, torch.Tensor], opt: torch.optim.Optimizer,
               sched, cfg: TrainConfig, precision: str = "fp32", scaler=None,
               micro_batch: int | None = None) -> torch.Tensor:
    """One optimisation step: CE + lambda * InfoNCE, backward (in micro-batches if asked),
    clipping, AdamW, the log-scale clamped, schedule. ``model`` may be wrapped (DDP,
    torch.compile).

    Returns the detached ``(loss, ce, contrastive)`` as one tensor on the device, unread:
    a read would make the host wait for the GPU, so callers read once per epoch.
    """
    device = batch["labels"].device
    scaler = scaler or grad_scaler(device, "fp32")
    opt.zero_grad(set_to_none=True)
    if micro_batch and micro_batch < len(batch["labels"]):
        parts = micro_batched_backward(model, batch, micro_batch, cfg.contrastive_weight,
                                       precision, scaler, cfg.gce_q)
    else:
        with autocast(device, precision):
            out = model(**batch)
        loss, parts = compute_loss(out, batch["labels"], cfg.contrastive_weight, cfg.gce_q)
        scaler.scale(loss).backward()
    scaler.unscale_(opt)
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(opt)
    scaler.update()
    scale = log_scale(model)
    if scale is not None:
        clamp_logit_scale_(scale)
    sched.step()
    nce = parts.get("contrastive", torch.zeros_like(parts["ce"]))
    return torch.stack([parts["ce"] + cfg.contrastive_weight * nce, parts["ce"], nce])


def hide_labels(cache: TensorCache, fraction: float, seed: int) -> TensorCache:
    """``cache`` where only a seeded ``fraction`` of the training posts keep their label;
    the others still pair a text with an image (InfoNCE) but add nothing to the CE."""
    if fraction >= 1.0:
        return cache
    train = cache.indices("train")
    rng = np.random.default_rng([seed, 7])
    hidden = rng.permutation(train)[max(1, round(fraction * len(train))):]
    labels = cache.labels.clone()
    labels[torch.as_tensor(hidden, dtype=torch.long)] = IGNORE
    return dataclasses.replace(cache, labels=labels)


def evaluate(model: EmoticonModel, cache: TensorCache, split: str = "test",
             batch_size: int = 256, precision: str = "fp32") -> dict:
    """Metrics of ``model`` on a cached split (a plain forward: no collective)."""
    device = next(model.parameters()).device
    res = predict(model, BatchIterator(cache, cache.indices(split), batch_size, device=device),
                  precision)
    return {"split": split, "n": int(len(res["labels"])),
            **classification_metrics(res["labels"], res["logits"])}


# ---------------------------------------------------------------- the loop
def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash keeps the last checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint (tensors and plain values only: ``weights_only=True``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass
class FitResult:
    history: pd.DataFrame
    best_epoch: int
    best_val_mcc: float
    stopped_early: bool
    precision: str
    micro_batch: int
    epochs: int | None = None  # as scheduled (cfg.epochs, stretched by cfg.min_epoch_steps)


def enable_grad_checkpointing(model: EmoticonModel, cfg: TrainConfig) -> None:
    """Recompute the trained encoders' activations in backward (``cfg.grad_checkpointing``):
    memory for a transformer's layers falls to about one layer's, for ~30% more compute."""
    for enc in (model.text_encoder, model.image_encoder):
        if cfg.grad_checkpointing and enc is not None and not enc.cfg.freeze:
            b = enc.backbone  # transformers 5.2x renamed it; older versions have the old name
            enable = getattr(b, "activation_checkpointing_enable", b.gradient_checkpointing_enable)
            enable({"use_reentrant": False})


def plan(model: EmoticonModel, cfg: TrainConfig, device: torch.device) -> tuple[str, int]:
    """Precision and micro-batch for this hardware (``cfg`` may fix either)."""
    precision = choose_precision(device, cfg.precision)
    micro = cfg.micro_batch or choose_micro_batch(
        cfg.batch_size, activation_bytes_per_sample(model, precision),
        sum(p.numel() for p in model.parameters()),
        gpu_budget(device) if device.type == "cuda" else None)
    return precision, min(micro, cfg.batch_size)


def fit(model: EmoticonModel, cache: TensorCache, cfg: TrainConfig, out_dir: str | Path, *,
        dist: DistInfo | None = None, resume: bool = True, progress: bool = True,
        extra_config: dict | None = None) -> FitResult:
    """Train ``model`` on the cached ``train`` split, select on ``val`` MCC.

    Writes ``checkpoint.pt`` (atomic, every epoch), ``best/`` (the best model so far) and
    ``metrics.csv``/``metrics.json`` (one row per epoch); with ``resume`` it continues from
    an existing checkpoint.
    """
    cfg.check()
    info = dist or DistInfo(device=next(model.parameters()).device)
    device, out = info.device, Path(out_dir)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if device.type == "cuda":  # fp32 matmuls left outside autocast use TF32 tensor cores
        torch.set_float32_matmul_precision("high")
    model.to(device)
    if model.logit_scale is not None and not cfg.contrastive_weight:
        model.logit_scale.requires_grad_(False)  # lambda = 0: the scale has nothing to learn
    enable_grad_checkpointing(model, cfg)
    precision, micro = plan(model, cfg, device)
    if info.is_main and progress:
        tqdm.write(f"precision {precision}, batch {cfg.batch_size} in micro-batches of "
                   f"{micro} on {device.type}")
    cache = hide_labels(cache, cfg.label_fraction, cfg.seed)
    n_train = len(cache.indices("train"))
    train_iter = BatchIterator(cache, cache.indices("train"), cfg.batch_size, shuffle=True,
                               drop_last=n_train >= 2 * cfg.batch_size * info.world_size,
                               seed=cfg.seed, rank=info.rank, world_size=info.world_size,
                               device=device, trim=not cfg.compile)
    epochs, patience = schedule(cfg, len(train_iter))
    opt, sched = make_optimizer(model, cfg, device, epochs * len(train_iter))
    scaler = grad_scaler(device, precision)
    history: list[dict] = []
    start, best_mcc, best_epoch, bad_epochs = 0, -math.inf, 0, 0
    ckpt = out / CHECKPOINT
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start, best_mcc = state["epoch"], state["best_mcc"]
        best_epoch, bad_epochs, history = state["best_epoch"], state["bad_epochs"], \
            list(state["history"])
        if info.is_main and progress:
            tqdm.write(f"resumed from {ckpt} after epoch {start}")
    step_model: nn.Module = model
    if info.world_size > 1:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        step_model = torch.compile(step_model)
    stopped = bad_epochs >= patience
    if start < epochs and not stopped:
        cache = text_features(model, cache, progress=progress and info.is_main)
        train_iter.cache = cache
    for epoch in range(start, epochs):
        if stopped:
            break
        set_seed(cfg.seed * 1000 + epoch)
        train_iter.set_epoch(epoch)
        model.train()
        sums = torch.zeros(3, device=device)  # loss, ce, contrastive: no per-step host sync
        t0 = time.perf_counter()
        bar = tqdm(train_iter, desc=f"epoch {epoch + 1}/{epochs}",
                   disable=not (progress and info.is_main))
        for batch in bar:
            if cfg.augment:
                batch["pixel_values"] = augment(batch["pixel_values"])
            sums += train_step(step_model, batch, opt, sched, cfg, precision, scaler, micro)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the clock reads finished work
        elapsed = time.perf_counter() - t0
        if info.world_size > 1:
            torch.distributed.all_reduce(sums)
            sums /= info.world_size
        sums = (sums / max(1, len(train_iter))).tolist()
        val = evaluate(model, cache, "val", cfg.eval_batch_size, precision)
        row = {"epoch": epoch + 1, "train_loss": sums[0], "train_ce": sums[1],
               "train_contrastive": sums[2],
               **{f"val_{k}": v for k, v in val.items() if k not in ("split", "n")},
               "temperature": model.temperature, "lr": sched.get_last_lr()[0],
               "epoch_seconds": elapsed,
               "samples_per_second": len(train_iter) * cfg.batch_size * info.world_size
               / elapsed,  # epoch 1 includes the warm-up (allocator, kernel choice)
               "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
               if device.type == "cuda" else None}
        history.append(row)
        mcc = from_main(info, val["mcc"])
        improved = mcc > best_mcc
        best_mcc, best_epoch = (mcc, epoch + 1) if improved else (best_mcc, best_epoch)
        bad_epochs = 0 if improved else bad_epochs + 1
        stopped = bad_epochs >= patience
        if info.is_main:
            if improved:
                model.save(out / "best", extra={**(extra_config or {}), "epoch": epoch + 1})
            save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                             "epoch": epoch + 1, "best_mcc": best_mcc,
                             "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                             "history": history}, ckpt)
            frame = pd.DataFrame(history)
            write_atomic(out / "metrics.csv", frame.to_csv(index=False))
            write_atomic(out / "metrics.json", json.dumps(frame.to_dict("records"), indent=1))
            if progress:
                tqdm.write(f"epoch {epoch + 1}: loss {row['train_loss']:.3f}  val acc "
                           f"{row['val_accuracy']:.3f}  val MCC {row['val_mcc']:.3f}"
                           + ("  (best)" if improved else ""))
    barrier(info)
    return FitResult(pd.DataFrame(history), best_epoch, best_mcc, stopped, precision, micro,
                     epochs)
