"""Training: AdamW, warmup + cosine, clipping, bf16 on CUDA, early stopping on val MCC,
atomic checkpoints each epoch and exact resume; DDP under ``torchrun``.

Exact resume works because nothing random carries over from one epoch to the next: each
epoch reseeds torch (dropout) and the batch order from ``(seed, epoch)``, and the
checkpoint holds the weights, optimizer, schedule and history.

Under ``torchrun`` every rank trains on its own share of each epoch's permutation
(``batch_size`` is per rank), the contrastive loss spans the global batch, and rank 0
alone writes files. Every rank evaluates (the contrastive head all-gathers, so the forward
is a collective) and rank 0's metrics are broadcast: all take the same early-stopping
decision.
"""

from __future__ import annotations

import atexit
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
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from emolib.config import ModelConfig, Profile, TrainConfig, get_profile
from emolib.data import BatchIterator, DatasetInfo, TensorCache, build_cache, load_dataset
from emolib.encoders import load_tokenizer
from emolib.frozen_features import with_text_features
from emolib.metrics import classification_metrics
from emolib.model import EmoticonModel, compute_loss

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


def set_seed(seed: int) -> None:
    """Seed every random source we use: Python, NumPy, torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup_distributed() -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo(device=default_device())
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:  # before the process group, so NCCL binds each rank to its own GPU
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_destroy_process_group)
    return DistInfo(rank, world, local, torch.device(f"cuda:{local}" if cuda else "cpu"))


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_from_main(info: DistInfo, value: Any) -> Any:
    """Rank 0's ``value`` (picklable) on every rank.

    For metrics: every rank then takes the same early-stopping decision, even if its own
    evaluation differed in the last bit (ranks that disagree would hang DDP).
    """
    if info.world_size > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        value = box[0]
    return value


def autocast(device: torch.device, amp: str):
    """bf16 autocast on CUDA ('auto' or 'bf16'), nothing on CPU."""
    if device.type == "cuda" and amp in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enable_tf32(device: torch.device) -> None:
    """Let fp32 matmuls left outside autocast use TF32 tensor cores (CUDA only; global)."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")


def param_groups(model: EmoticonModel, cfg: TrainConfig) -> list[dict]:
    """Pretrained encoder weights get ``pretrained_lr``; no weight decay on norms/biases."""
    pretrained = set()
    for enc in (model.text_encoder, model.image_encoder):
        if enc is not None and enc.pretrained:
            pretrained.update(id(p) for p in enc.parameters())
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.dim() < 2 or "logit_scale" in name or "type_embed" in name
        groups.setdefault((id(p) in pretrained, no_decay), []).append(p)
    return [{"params": ps, "lr": cfg.pretrained_lr if pre else cfg.lr,
             "weight_decay": 0.0 if nd else cfg.weight_decay}
            for (pre, nd), ps in sorted(groups.items())]


def warmup_cosine(total_steps: int, warmup_ratio: float):
    warmup = max(1, int(warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def make_optimizer(model: EmoticonModel, cfg: TrainConfig, device: torch.device,
                   total_steps: int):
    """AdamW (fused into one kernel per step on CUDA) and its warmup + cosine schedule."""
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(param_groups(model, cfg), fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, cfg.warmup_ratio))
    return opt, sched


def train_step(model: nn.Module, batch: dict[str, torch.Tensor], opt: torch.optim.Optimizer,
               sched: torch.optim.lr_scheduler.LRScheduler | None, cfg: TrainConfig
               ) -> torch.Tensor:
    """One optimisation step: forward under autocast, CE + lambda * InfoNCE, backward,
    clipping, AdamW, schedule. ``model`` may be wrapped (DDP, torch.compile).

    Returns the detached ``(loss, ce, contrastive)`` as one tensor on the device, without
    reading it: a read would make the host wait for the GPU, so callers accumulate and
    read once per epoch.
    """
    with autocast(batch["labels"].device, cfg.amp):
        res = model(**batch)
        loss, parts = compute_loss(res, batch["labels"], cfg.contrastive_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    if sched is not None:
        sched.step()
    contrastive = parts.get("contrastive")
    if contrastive is None:
        contrastive = torch.zeros_like(parts["ce"])
    return torch.stack([loss.detach(), parts["ce"], contrastive])


def train_batches(cache: TensorCache, cfg: TrainConfig, info: DistInfo) -> BatchIterator:
    """The training split as this rank's shuffled batches (fixed width under compile)."""
    n = len(cache.indices("train"))
    return BatchIterator(cache, cache.indices("train"), cfg.batch_size, shuffle=True,
                         drop_last=n >= 2 * cfg.batch_size * info.world_size, seed=cfg.seed,
                         rank=info.rank, world_size=info.world_size, device=info.device,
                         trim=not cfg.compile)


@torch.no_grad()
def predict(model: nn.Module, batches, amp: str = "auto", progress: bool = False,
            desc: str = "predict") -> dict[str, np.ndarray]:
    """Run ``model`` over batches; returns logits, labels, embeddings and fusion weights."""
    was_training = model.training
    model.eval()
    out: dict[str, list] = {"logits": [], "labels": [], "text_embed": [], "image_embed": [],
                            "fusion_weights": []}
    device = next(model.parameters()).device
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        with autocast(device, amp):
            res = model(**batch)
        out["logits"].append(res.logits.float().cpu())
        out["labels"].append(batch["labels"].cpu())
        for key in ("text_embed", "image_embed", "fusion_weights"):
            value = getattr(res, key)
            if value is not None:
                out[key].append(value.float().cpu())
    model.train(was_training)
    return {k: torch.cat(v).numpy() for k, v in out.items() if v}


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
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


def fit(model: EmoticonModel, cache: TensorCache, cfg: TrainConfig, out_dir: str | Path, *,
        dist_info: DistInfo | None = None, resume: bool = True, stop_after_epoch: int | None = None,
        progress: bool = True, extra_config: dict | None = None) -> FitResult:
    """Train ``model`` on the cached ``train`` split, select on ``val`` MCC.

    Writes ``checkpoint.pt`` (atomic, every epoch), ``best/`` (the best model so far),
    ``metrics.csv``/``metrics.json`` (one row per epoch). With ``resume`` it continues from
    an existing checkpoint. ``stop_after_epoch`` simulates an interruption (for tests).
    """
    info = dist_info or DistInfo(device=next(model.parameters()).device)
    device = info.device
    out = Path(out_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    enable_tf32(device)
    model.to(device)
    train_iter = train_batches(cache, cfg, info)
    val_iter = BatchIterator(cache, cache.indices("val"), cfg.eval_batch_size, device=device)
    total_steps = cfg.epochs * len(train_iter)
    opt, sched = make_optimizer(model, cfg, device, total_steps)
    history: list[dict] = []
    start_epoch, best_mcc, best_epoch, bad_epochs = 0, -math.inf, -1, 0
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best_mcc = state["epoch"] + 1, state["best_mcc"]
        best_epoch, bad_epochs = state["best_epoch"], state["bad_epochs"]
        history = list(state["history"])
        if info.is_main:
            log.info("resumed from %s after epoch %d", ckpt_path, state["epoch"])
    step_model: nn.Module = model
    if info.world_size > 1:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        step_model = torch.compile(step_model)
    stopped_early = bad_epochs >= cfg.patience
    if cfg.cache_text_features and start_epoch < cfg.epochs and not stopped_early:
        train_iter.cache = val_iter.cache = with_text_features(
            model.text_encoder, cache, progress and info.is_main)
    for epoch in range(start_epoch, cfg.epochs):
        if stopped_early:
            break
        set_seed(cfg.seed * 1000 + epoch)
        train_iter.set_epoch(epoch)
        model.train()
        sums = torch.zeros(3, device=device)  # loss, ce, contrastive (no per-step host sync)
        seen, t0 = 0, time.perf_counter()
        bar = tqdm(train_iter, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (progress and info.is_main))
        for step, batch in enumerate(bar):
            sums += train_step(step_model, batch, opt, sched, cfg)
            seen += len(batch["labels"])
            if step % 20 == 0 and bar.disable is False:  # one host sync per 20 steps
                bar.set_postfix(loss=f"{float(sums[0]) / (step + 1):.3f}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the clock reads finished work
        elapsed = time.perf_counter() - t0
        steps = max(1, len(train_iter))
        if info.world_size > 1:
            dist.all_reduce(sums)
            sums /= info.world_size
        val = predict(model, val_iter, cfg.amp)  # on every rank: the forward all-gathers
        val_metrics = broadcast_from_main(info, classification_metrics(val["labels"],
                                                                       val["logits"]))
        row = {"epoch": epoch + 1, "train_loss": float(sums[0]) / steps,
               "train_ce": float(sums[1]) / steps, "train_contrastive": float(sums[2]) / steps,
               **{f"val_{k}": v for k, v in val_metrics.items()},
               "temperature": model.contrastive.temperature if model.contrastive else None,
               "lr": sched.get_last_lr()[0], "epoch_seconds": elapsed,
               "samples_per_second": seen * info.world_size / elapsed}
        history.append(row)
        improved = val_metrics["mcc"] > best_mcc
        if improved:
            best_mcc, best_epoch, bad_epochs = val_metrics["mcc"], epoch + 1, 0
        else:
            bad_epochs += 1
        if info.is_main:
            if improved:
                model.save(out / "best", extra=extra_config)
            _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "scheduler": sched.state_dict(), "epoch": epoch,
                          "best_mcc": best_mcc, "best_epoch": best_epoch,
                          "bad_epochs": bad_epochs, "history": history}, ckpt_path)
            frame = pd.DataFrame(history)
            frame.to_csv(out / "metrics.csv", index=False)
            (out / "metrics.json").write_text(frame.to_json(orient="records", indent=1))
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in row.items()
                                                 if isinstance(v, float)})
            if progress:
                tqdm.write(f"epoch {epoch + 1}: loss {row['train_loss']:.3f}  "
                           f"val acc {row['val_accuracy']:.3f}  val MCC {row['val_mcc']:.3f}  "
                           f"({elapsed:.0f}s, {row['samples_per_second']:.0f} samples/s)")
        if bad_epochs >= cfg.patience:
            stopped_early = True
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    if info.world_size > 1:
        dist.barrier()
    return FitResult(pd.DataFrame(history), best_epoch, best_mcc, stopped_early)


@dataclass
class TrainResult:
    out_dir: Path
    model: EmoticonModel
    history: pd.DataFrame
    test_metrics: dict
    info: DatasetInfo
    cache: TensorCache


def prepare(profile: str | Profile | None, data_dir: str | Path, *, mode: str | None = None,
            fusion: str | None = None, progress: bool = True, **train_overrides
            ) -> tuple[ModelConfig, TrainConfig, DatasetInfo, object, TensorCache]:
    """Configs (profile + overrides), the validated dataset, its tokenizer and tensor cache."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    model_cfg = dataclasses.replace(prof.model)
    if mode:
        model_cfg.mode = mode
    if fusion:
        model_cfg.fusion = fusion
    unknown = set(train_overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown training option(s): {sorted(unknown)}")
    train_cfg = dataclasses.replace(prof.train, **{k: v for k, v in train_overrides.items()
                                                   if v is not None})
    info = load_dataset(data_dir)
    model_cfg.num_classes = info.num_classes
    model_cfg.check()
    tokenizer = load_tokenizer(model_cfg)
    cache = build_cache(info, tokenizer, model_cfg.image_size, model_cfg.max_length,
                        progress=progress)
    return model_cfg, train_cfg, info, tokenizer, cache


def train(profile: str | Profile | None, data_dir: str | Path, out_dir: str | Path, *,
          mode: str | None = None, fusion: str | None = None, resume: bool = True,
          progress: bool = True, stop_after_epoch: int | None = None, **train_overrides
          ) -> TrainResult:
    """Train one model end to end and evaluate its best checkpoint on the test split.

    ``train_overrides`` are :class:`TrainConfig` fields (epochs, batch_size, lr,
    contrastive_weight, seed, ...).
    """
    info_d = setup_distributed()
    with main_first(info_d):  # rank 0 builds the image cache; the others then read it
        model_cfg, train_cfg, info, tokenizer, cache = prepare(
            profile, data_dir, mode=mode, fusion=fusion, progress=progress and info_d.is_main,
            **train_overrides)
    set_seed(train_cfg.seed)
    model = EmoticonModel(model_cfg)
    out = Path(out_dir)
    extra = {"labels": [dataclasses.asdict(lab) for lab in info.labels],
             "train": dataclasses.asdict(train_cfg)}
    if info_d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(out / "tokenizer")
        (out / "run.json").write_text(json.dumps({
            "data": str(data_dir), "profile": getattr(profile, "name", profile),
            "skipped_images": cache.skipped, **extra,
            "model": dataclasses.asdict(model_cfg)}, indent=1, ensure_ascii=False))
    result = fit(model, cache, train_cfg, out, dist_info=info_d, resume=resume,
                 stop_after_epoch=stop_after_epoch, progress=progress, extra_config=extra)
    best = out / "best"
    if best.is_dir():  # fit ends with a barrier: rank 0 has finished writing it
        model = EmoticonModel.load(best, device=info_d.device)
    test_metrics = broadcast_from_main(info_d, evaluate(model, cache, "test",
                                                        train_cfg.eval_batch_size, train_cfg.amp))
    if info_d.is_main:
        (out / "test_metrics.json").write_text(json.dumps(test_metrics, indent=1))
    return TrainResult(out, model, result.history, test_metrics, info, cache)


@contextlib.contextmanager
def main_first(info: DistInfo):
    """Rank 0 runs the block first, then the other ranks (shared files are written once)."""
    if info.world_size > 1 and not info.is_main:
        dist.barrier()
    yield
    if info.world_size > 1 and info.is_main:
        dist.barrier()


def evaluate(model: EmoticonModel, cache: TensorCache, split: str = "test",
             batch_size: int = 256, amp: str = "auto") -> dict:
    """Metrics of ``model`` on a cached split.

    Under torch.distributed call it on every rank: the contrastive head all-gathers.
    """
    device = next(model.parameters()).device
    batches = BatchIterator(cache, cache.indices(split), batch_size, device=device)
    res = predict(model, batches, amp)
    return {"split": split, "n": int(len(res["labels"])),
            **classification_metrics(res["labels"], res["logits"])}
