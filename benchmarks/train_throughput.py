"""Training throughput at paper scale: a naive baseline against emolib's trainer.

Both run in one process, on the same model (BERT-base + ViT-B/16, 224 px, 64 tokens,
random init, so it builds offline) and the same EmoSynth data:

* baseline: fp32, a plain loop, torch's default AdamW, ``loss.item()`` every step, and a
  DataLoader that decodes every image file with PIL every epoch (EmoticonDataset +
  Collator), as most tutorials do;
* ours: :func:`emolib.train.train_step`, the step ``fit`` runs, on ``fit``'s data path
  (build_cache -> BatchIterator: uint8 batches, pinned non-blocking copies, normalised on
  the GPU), bf16 autocast, fused AdamW, TF32; with ``--compile`` also torch.compile on
  fixed-width batches.

It also measures the data path alone (BatchIterator, batch 256) against what training
consumes, counts the FLOPs of one sample with FlopCounterMode, and writes everything as
JSON to ``benchmarks/results/``::

    python benchmarks/train_throughput.py              # paper scale, on a GPU
    python benchmarks/train_throughput.py --compile    # + the compiled step
    python benchmarks/train_throughput.py --smoke      # smoke model on the CPU, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import platform
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from emolib.config import Profile, TrainConfig, get_profile
from emolib.data import (
    BatchIterator,
    Collator,
    EmoticonDataset,
    TensorCache,
    build_cache,
    load_dataset,
)
from emolib.encoders import load_tokenizer
from emolib.model import EmoticonModel, compute_loss
from emolib.prepare.emosynth import generate
from emolib.synth import SynthConfig
from emolib.train import DistInfo, enable_tf32, make_optimizer, set_seed, train_batches, train_step

RESULTS = Path(__file__).resolve().parent / "results"
H100_BF16_PEAK = 790e12  # dense bf16 FLOP/s seen on this workplace's H100 (8192^3 matmul)


# ---------------------------------------------------------------- model and data
def bench_profile(smoke: bool) -> Profile:
    """The paper-scale ``gpu`` profile with random init (offline), or the smoke profile."""
    prof = get_profile("smoke" if smoke else "gpu")
    for enc in (prof.model.text, prof.model.image):
        enc.pretrained = False  # BertConfig()/ViTConfig() defaults are base size
    return prof


def ensure_data(path: Path | None, size: int, image_size: int) -> Path:
    """An EmoSynth folder at ``image_size`` (JPEG above 64 px), generated when missing."""
    path = path or Path("data") / f"emosynth-bench-{image_size}px-{size}"
    if not (path / ".complete").is_file():
        generate(path, SynthConfig(size=size, image_size=image_size), progress=False)
    return path


def sync(device: torch.device) -> None:
    """Wait for the device, so that a clock read after it counts finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forever(batches, set_epoch: bool = True) -> Iterator[dict]:
    """Endless batches, a fresh shuffle each epoch."""
    epoch = 0
    while True:
        if set_epoch:
            batches.set_epoch(epoch)
        yield from batches
        epoch += 1


# ---------------------------------------------------------------- FLOPs
def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls, convolutions and attention that ``fn`` runs (FlopCounterMode).

    Elementwise work is not counted, as in every MFU figure. On the CPU, PyTorch's fused
    SDPA kernel is not counted either (a few percent of this model), on CUDA it is.
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def train_flops_per_sample(model: EmoticonModel, batch: dict[str, torch.Tensor],
                           contrastive_weight: float) -> float:
    """Forward + backward FLOPs of one sample (the optimizer's elementwise work is free)."""
    def step() -> None:
        loss, _ = compute_loss(model(**batch), batch["labels"], contrastive_weight)
        loss.backward()

    flops = count_flops(step)
    model.zero_grad(set_to_none=True)
    return flops / len(batch["labels"])


# ---------------------------------------------------------------- timing
def timed(step: Callable[[dict], None], batches: Iterator[dict], warmup: int, steps: int,
          device: torch.device) -> dict:
    """Run ``warmup`` then ``steps`` steps end to end, data path included."""
    for _ in range(warmup):
        step(next(batches))
    sync(device)
    samples, width, t0 = 0, 0, time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        step(batch)
        samples += len(batch["labels"])
        width += batch["input_ids"].shape[1]
    sync(device)
    seconds = time.perf_counter() - t0
    return {"samples_per_s": samples / seconds, "ms_per_step": 1000 * seconds / steps,
            "steps": steps, "warmup": warmup, "mean_text_width": width / steps}


def _start(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _finish(result: dict, device: torch.device, flops: float, peak: float) -> dict:
    result["peak_gpu_mem_gib"] = (torch.cuda.max_memory_allocated(device) / 2**30
                                  if device.type == "cuda" else None)
    result["mfu"] = result["samples_per_s"] * flops / peak
    return result


def run_baseline(prof: Profile, info, tokenizer, cfg: TrainConfig, device: torch.device,
                 workers: int, warmup: int, steps: int) -> dict:
    """fp32, plain loop, default AdamW, PIL decoding in a DataLoader every epoch."""
    torch.set_float32_matmul_precision("highest")  # plain fp32: no TF32
    set_seed(cfg.seed)
    model = EmoticonModel(prof.model).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data = EmoticonDataset(info, "train", prof.model.image_size)
    loader = torch.utils.data.DataLoader(
        data, batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, collate_fn=Collator(tokenizer, prof.model.max_length))

    def step(batch: dict) -> None:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        loss, _ = compute_loss(out, batch["labels"], cfg.contrastive_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())  # the usual per-step logging: a host sync

    losses: list[float] = []
    batches = forever(loader, set_epoch=False)
    try:
        result = timed(step, batches, warmup, steps, device)
    finally:
        batches.close()
    result["settings"] = (f"fp32, plain loop, torch.optim.AdamW defaults, DataLoader "
                          f"(num_workers={workers}) decoding image files with PIL")
    return result


def run_ours(prof: Profile, cache: TensorCache, cfg: TrainConfig, device: torch.device,
             warmup: int, steps: int) -> dict:
    """emolib's own step and data path, as ``fit`` runs them."""
    enable_tf32(device)
    set_seed(cfg.seed)
    model = EmoticonModel(prof.model).to(device).train()
    batches_it = train_batches(cache, cfg, DistInfo(device=device))
    opt, sched = make_optimizer(model, cfg, device, total_steps=10**6)
    step_model = torch.compile(model) if cfg.compile else model

    def step(batch: dict) -> None:
        train_step(step_model, batch, opt, sched, cfg)

    batches = forever(batches_it)
    try:
        result = timed(step, batches, warmup + (2 if cfg.compile else 0), steps, device)
    finally:
        batches.close()
        if cfg.compile:
            torch._dynamo.reset()
    amp = "bf16 autocast" if device.type == "cuda" and cfg.amp != "none" else "fp32 (CPU)"
    result["settings"] = (f"{amp}, fused AdamW on CUDA, TF32, train_step on BatchIterator "
                          f"(uint8 cache, pinned non-blocking copies)"
                          + (", torch.compile, fixed-width text" if cfg.compile else ""))
    return result


def measure_data_path(cache: TensorCache, batch_size: int, device: torch.device,
                      batches: int = 20, warmup: int = 2) -> dict:
    """Samples/s that BatchIterator delivers onto ``device``, with no model running."""
    it = BatchIterator(cache, np.arange(len(cache)), min(batch_size, len(cache)), shuffle=True,
                       device=device)
    stream = forever(it)
    for _ in range(warmup):
        next(stream)
    sync(device)
    samples, t0 = 0, time.perf_counter()
    for _ in range(batches):
        samples += len(next(stream)["labels"])
    sync(device)
    seconds = time.perf_counter() - t0
    stream.close()
    return {"batch_size": it.batch_size, "batches": batches,
            "samples_per_s": samples / seconds}


# ---------------------------------------------------------------- machine
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


# ---------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="smoke model on the CPU, a few steps")
    p.add_argument("--data", type=Path, default=None, help="EmoSynth folder (made if missing)")
    p.add_argument("--synth-size", type=int, default=None, help="posts to generate")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    p.add_argument("--compile", action="store_true", help="also time the compiled step")
    p.add_argument("--no-baseline", action="store_true", help="skip the fp32 baseline")
    p.add_argument("--baseline-workers", type=int, default=None,
                   help="DataLoader workers of the baseline (default min(4, CPUs); smoke 0)")
    p.add_argument("--data-batch-size", type=int, default=256)
    p.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK / 1e12,
                   help="peak FLOP/s for MFU, in TFLOP/s (790: H100 bf16 dense)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (smoke: 1)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    prof = bench_profile(args.smoke)
    small = args.smoke
    cfg = dataclasses.replace(prof.train, batch_size=args.batch_size or (8 if small else 128))
    steps = args.steps or (3 if small else 30)
    warmup = args.warmup if args.warmup is not None else (1 if small else 5)
    workers = args.baseline_workers if args.baseline_workers is not None else (
        0 if small else min(4, os.cpu_count() or 1))
    peak = args.peak_tflops * 1e12
    if args.threads or small:
        torch.set_num_threads(args.threads or 1)

    data = ensure_data(args.data, args.synth_size or (64 if small else 4000),
                       prof.model.image_size)
    info = load_dataset(data)
    prof.model.num_classes = info.num_classes
    tokenizer = load_tokenizer(prof.model)
    cache = build_cache(info, tokenizer, prof.model.image_size, prof.model.max_length,
                        progress=False)

    set_seed(cfg.seed)
    model = EmoticonModel(prof.model).to(device).train()
    nominal = BatchIterator(cache, cache.indices("train")[:2], 2, device=device, trim=False)
    flops = train_flops_per_sample(model, next(iter(nominal)), cfg.contrastive_weight)
    params = sum(p.numel() for p in model.parameters())
    attn = {name: enc.backbone.config._attn_implementation
            for name, enc in (("text", model.text_encoder), ("image", model.image_encoder))}
    del model

    result: dict = {
        "benchmark": "train_throughput", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "device_kind": device.type, "device_name": device_name(device),
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "profile": prof.name, "random_init": True, "params": params,
        "image_size": prof.model.image_size, "max_length": prof.model.max_length,
        "attn_implementation": attn, "batch_size": cfg.batch_size, "steps": steps,
        "warmup": warmup, "data": str(data), "train_posts": int(len(cache.indices("train"))),
        "flops_per_sample": flops, "flops_note": "fwd+bwd, FlopCounterMode, text padded to "
        "max_length (trimmed batches do less work: MFU is of this nominal count); on a "
        "CPU the fused SDPA kernel is not counted (~3% of this model)",
        "peak_flops": peak,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = (f"train_throughput_{slug(result['device_name'])}_{dt.date.today().isoformat()}"
            f"_b{cfg.batch_size}{'_smoke' if small else ''}")
    path = args.out / f"{name}.json"
    runs = {"ours": lambda: run_ours(prof, cache, cfg, device, warmup, steps)}
    if not args.no_baseline:
        runs["baseline"] = lambda: run_baseline(prof, info, tokenizer, cfg, device, workers,
                                                warmup, steps)
    if args.compile:
        runs["ours_compiled"] = lambda: run_ours(
            prof, cache, dataclasses.replace(cfg, compile=True), device, warmup, steps)
    _start(device)
    result["data_path"] = measure_data_path(cache, args.data_batch_size, device)
    for key, run in runs.items():  # saved after each run: a timeout keeps what finished
        _start(device)
        result[key] = _finish(run(), device, flops, peak)
        path.write_text(json.dumps(summarise(result), indent=1) + "\n")
    report(result, path)
    return result


def summarise(result: dict) -> dict:
    """Add the ratios to the baseline and the data path's margin over training."""
    ours = [k for k in ("ours", "ours_compiled") if k in result]
    for k in ours:
        if "baseline" in result:
            result[f"ratio_{k}_over_baseline"] = (result[k]["samples_per_s"]
                                                  / result["baseline"]["samples_per_s"])
    if ours:
        dp = result["data_path"]
        dp["vs_training"] = dp["samples_per_s"] / max(result[k]["samples_per_s"] for k in ours)
        dp["bottleneck"] = dp["vs_training"] < 3  # it should deliver >= 3x what training uses
    return result


def report(r: dict, path: Path) -> None:
    print(f"{r['device_name']} | torch {r['torch']} | transformers {r['transformers']} | "
          f"{r['profile']} model, {r['params'] / 1e6:.0f}M params, batch {r['batch_size']}, "
          f"{r['flops_per_sample'] / 1e9:.2f} GFLOP/sample")
    print(f"{'run':15} {'samples/s':>10} {'ms/step':>9} {'peak GiB':>9} {'MFU':>7} {'ratio':>6}")
    for key in ("baseline", "ours", "ours_compiled"):
        if key in r:
            x = r[key]
            mem = f"{x['peak_gpu_mem_gib']:.1f}" if x["peak_gpu_mem_gib"] is not None else "-"
            ratio = r.get(f"ratio_{key}_over_baseline")
            print(f"{key:15} {x['samples_per_s']:10.1f} {x['ms_per_step']:9.1f} {mem:>9} "
                  f"{x['mfu']:7.2%} {'' if ratio is None else f'{ratio:5.2f}x':>6}")
    dp = r["data_path"]
    print(f"data path alone (batch {dp['batch_size']}): {dp['samples_per_s']:.0f} samples/s = "
          f"{dp['vs_training']:.1f}x training ({'BOTTLENECK' if dp['bottleneck'] else 'ok'})")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
