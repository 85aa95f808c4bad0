"""Training throughput at paper scale, as a ladder: each rung changes one thing.

Every rung runs in one process, on the same model (BERT-base + ViT-B/16, 224 px, 64
tokens, random init so it builds offline) and the same EmoSynth data:

    fp32         a plain loop: fp32, a DataLoader decoding image files with PIL,
                 torch's default AdamW, ``loss.item()`` every step
    tf32         + fp32 matmuls on TF32 tensor cores
    autocast     + bf16 autocast (fp16 + GradScaler below compute capability 8.0)
    fused_adamw  + AdamW fused into one kernel
    no_sync      + no ``loss.item()`` per step: this is emolib's ``train_step``
    cache        + emolib's data path (uint8 tensor cache, pinned non-blocking copies)
    compile      + ``torch.compile`` on fixed-width text (what ``fit`` runs with --compile)
    cudagraphs   + ``mode="reduce-overhead"``: the step's kernels replayed as CUDA graphs

Each rung: ``warmup`` steps, then ``reps`` repetitions of ``steps`` steps, each inside one
epoch; the median and the spread are reported. FLOPs are counted for the text widths
actually run (FlopCounterMode on each width), so MFU is of the work done. Also measured:
the data path alone, and a profiler summary of the fastest eager rung::

    python benchmarks/train_throughput.py                 # every rung, on a GPU
    python benchmarks/train_throughput.py --smoke         # smoke model on the CPU
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
import statistics
import time
from pathlib import Path

import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from emolib.config import Profile, get_profile
from emolib.data import BatchIterator, Collator, EmoticonDataset
from emolib.hardware import choose_precision, grad_scaler
from emolib.losses import compute_loss
from emolib.model import EmoticonModel
from emolib.run import experiment
from emolib.train import param_groups, set_seed, train_step

RESULTS = Path(__file__).resolve().parent / "results"
PEAK_BF16 = 790e12  # dense bf16 FLOP/s measured on this workplace's H100 and H200
RUNGS = {  # name: what it changes, relative to the rung before
    "fp32": "plain loop, fp32, PIL DataLoader, default AdamW, loss.item() each step",
    "tf32": "fp32 matmuls on TF32 tensor cores",
    "autocast": "16-bit autocast (bf16; fp16 + GradScaler below capability 8.0)",
    "fused_adamw": "AdamW fused into one kernel",
    "no_sync": "no loss.item() per step (emolib's train_step)",
    "cache": "emolib's data path: uint8 tensor cache, pinned non-blocking copies",
    "compile": "torch.compile, fixed-width text",
    "cudagraphs": "torch.compile(mode='reduce-overhead'): CUDA graphs, no per-kernel launches",
}


def bench_profile(smoke: bool) -> Profile:
    """The paper-scale ``gpu`` profile with random init (offline), or the smoke profile."""
    prof = get_profile("smoke" if smoke else "gpu")
    for enc in (prof.model.text, prof.model.image):
        enc.pretrained = False  # BertConfig()/ViTConfig() defaults are base size
    return prof


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Flops:
    """Forward + backward FLOPs per sample, counted once for each text width run."""

    def __init__(self, model: EmoticonModel, sample: dict, weight: float):
        self.model, self.sample, self.weight, self.memo = model, sample, weight, {}

    def __call__(self, width: int) -> float:
        if width not in self.memo:
            batch = {k: (v[:, :width] if k in ("input_ids", "attention_mask") else v)
                     for k, v in self.sample.items()}
            with FlopCounterMode(display=False) as counter:
                compute_loss(self.model(**batch), batch["labels"], self.weight)[0].backward()
            self.model.zero_grad(set_to_none=True)
            self.memo[width] = counter.get_total_flops() / len(batch["labels"])
        return self.memo[width]


def run_rung(name: str, exp, prof: Profile, device: torch.device, args, flops: Flops) -> dict:
    """Time one rung: every switch up to ``name`` on, the later ones off."""
    on = list(RUNGS)[:list(RUNGS).index(name) + 1]
    cfg = dataclasses.replace(exp.train, batch_size=args.batch_size)
    torch.set_float32_matmul_precision("high" if "tf32" in on else "highest")
    precision = choose_precision(device, "auto") if "autocast" in on else "fp32"
    set_seed(cfg.seed)
    model = EmoticonModel(prof.model).to(device).train()
    fused = "fused_adamw" in on and device.type == "cuda"
    opt = torch.optim.AdamW(param_groups(model, cfg), fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    scaler = grad_scaler(device, precision)
    mode = "reduce-overhead" if "cudagraphs" in on else None
    step_model = torch.compile(model, mode=mode) if "compile" in on else model
    if "cache" in on:
        batches = BatchIterator(exp.cache, exp.cache.indices("train"), cfg.batch_size,
                                shuffle=True, drop_last=True, device=device,
                                trim="compile" not in on)
    else:
        batches = torch.utils.data.DataLoader(
            EmoticonDataset(exp.data, "train", exp.pre), batch_size=cfg.batch_size,
            shuffle=True, drop_last=True, num_workers=args.workers,
            collate_fn=Collator(exp.pre), persistent_workers=args.workers > 0)

    def epoch(seed: int):
        if isinstance(batches, BatchIterator):
            batches.set_epoch(seed)
            yield from batches
        else:
            torch.manual_seed(seed)  # the DataLoader's shuffle
            for batch in batches:
                yield {k: v.to(device) for k, v in batch.items()}

    def step(batch: dict) -> None:
        if mode:  # a new iteration: the graphs' previous outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        losses = train_step(step_model, batch, opt, sched, cfg, precision, scaler)
        if "no_sync" not in on:
            float(losses[0])  # the usual per-step logging: the host waits for the GPU

    it = epoch(10_000)
    for _ in range(args.warmup):
        step(next(it))
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    reps = []
    for rep in range(args.reps):  # each repetition: a fresh epoch, never crossing its end
        it = epoch(rep)
        sync(device)
        work, t0 = 0.0, time.perf_counter()
        for _ in range(args.steps):
            batch = next(it)
            step(batch)
            work += flops(batch["input_ids"].shape[1]) * len(batch["labels"])
        sync(device)
        seconds = time.perf_counter() - t0
        reps.append({"samples_per_s": args.steps * cfg.batch_size / seconds,
                     "ms_per_step": 1000 * seconds / args.steps,
                     "mfu": work / seconds / args.peak_tflops / 1e12})
    med = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
    out = {"rung": name, "change": RUNGS[name], "precision": precision, **med,
           "samples_per_s_spread": [min(r["samples_per_s"] for r in reps),
                                    max(r["samples_per_s"] for r in reps)],
           "reps": reps, "peak_gpu_mem_gib": (torch.cuda.max_memory_allocated(device) / 2**30
                                              if device.type == "cuda" else None)}
    if args.profile_rung == name and device.type == "cuda":
        out["profile"] = profile_steps(step, epoch(99), device)
    if "compile" in on:
        torch._dynamo.reset()
    return out  # the model and optimizer go with this frame; main() collects them


def profile_steps(step, it, device: torch.device, steps: int = 8) -> dict:
    """Top kernels by GPU time, and how busy the GPU was, over a few steps."""
    from torch.profiler import ProfilerActivity, profile

    sync(device)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step(next(it))
        sync(device)
    wall = time.perf_counter() - t0
    events = [e for e in prof.key_averages() if getattr(e, "self_device_time_total", 0) > 0]
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    busy = sum(e.self_device_time_total for e in events) / 1e6
    return {"steps": steps, "wall_s": wall, "gpu_busy_s": busy, "gpu_busy_share": busy / wall,
            "top_kernels": [{"name": e.key[:90], "ms_per_step": e.self_device_time_total
                             / 1e3 / steps, "calls_per_step": e.count / steps}
                            for e in events[:15]]}


def data_path_rate(exp, batch_size: int, device: torch.device, batches: int = 40) -> float:
    """Samples/s that BatchIterator alone delivers onto ``device``."""
    it = BatchIterator(exp.cache, exp.cache.indices("train"), batch_size, shuffle=True,
                       device=device)
    stream = iter(it)
    next(stream)
    sync(device)
    t0 = time.perf_counter()
    n = sum(len(next(stream)["labels"]) for _ in range(min(batches, len(it) - 1)))
    sync(device)
    return n / (time.perf_counter() - t0)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="smoke model on the CPU, a few steps")
    p.add_argument("--data", type=Path, required=True, help="an EmoSynth folder at the "
                   "profile's image size, with >= reps x steps x batch training posts")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=50, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=3, help="repetitions per rung")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--rungs", default=",".join(RUNGS), help="comma-separated subset")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="DataLoader workers of the rungs before 'cache'")
    p.add_argument("--profile-rung", default="cache", help="rung to profile (CUDA only)")
    p.add_argument("--peak-tflops", type=float, default=PEAK_BF16 / 1e12,
                   help="peak FLOP/s for MFU, in TFLOP/s (790: bf16 dense, H100/H200)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    prof = bench_profile(args.smoke)
    args.batch_size = args.batch_size or (8 if args.smoke else 128)
    if args.smoke:
        torch.set_num_threads(1)
    exp = experiment(prof, args.data, progress=False)
    prof.model.num_classes = exp.model.num_classes
    if len(exp.cache.indices("train")) < args.steps * args.batch_size:
        raise SystemExit(f"{args.data}: {len(exp.cache.indices('train'))} training posts, "
                         f"fewer than one repetition needs ({args.steps} x {args.batch_size})")
    set_seed(0)
    counter_model = EmoticonModel(prof.model).to(device).train()
    sample = next(iter(BatchIterator(exp.cache, exp.cache.indices("train")[:2], 2,
                                     device=device, trim=False)))
    flops = Flops(counter_model, sample, exp.train.contrastive_weight)
    result = {
        "benchmark": "train_throughput", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "device": device_name(device), "device_kind": device.type,
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "profile": prof.name, "random_init": True,
        "params": sum(p.numel() for p in counter_model.parameters()),
        "image_size": prof.model.image_size, "max_length": prof.model.max_length,
        "batch_size": args.batch_size, "steps": args.steps, "reps": args.reps,
        "warmup": args.warmup, "train_posts": int(len(exp.cache.indices("train"))),
        "flops_per_sample_at_max_length": flops(prof.model.max_length),
        "peak_flops": args.peak_tflops * 1e12, "rungs": [],
        "data_path_samples_per_s": data_path_rate(exp, args.batch_size, device),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")[:40]
    path = args.out / (f"train_throughput_{name}_{dt.date.today().isoformat()}"
                       f"_b{args.batch_size}{'_smoke' if args.smoke else ''}.json")
    for rung in [r for r in args.rungs.split(",") if r]:
        if rung not in RUNGS:
            raise SystemExit(f"unknown rung {rung!r}; choose from {', '.join(RUNGS)}")
        result["rungs"].append(run_rung(rung, exp, prof, device, args, flops))
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        best = max(r["samples_per_s"] for r in result["rungs"])
        result["data_path_vs_fastest_rung"] = result["data_path_samples_per_s"] / best
        path.write_text(json.dumps(result, indent=1) + "\n")  # a timeout keeps what finished
        report(result["rungs"][-1], result["rungs"])
    print(f"data path alone: {result['data_path_samples_per_s']:.0f} samples/s "
          f"({result.get('data_path_vs_fastest_rung', 0):.1f}x the fastest rung) -> {path}")
    return result


def report(r: dict, rungs: list[dict]) -> None:
    first = rungs[0]["samples_per_s"]
    lo, hi = r["samples_per_s_spread"]
    mem = f"{r['peak_gpu_mem_gib']:.1f} GiB" if r["peak_gpu_mem_gib"] is not None else "-"
    print(f"{r['rung']:12} {r['samples_per_s']:8.1f} samples/s [{lo:.0f}-{hi:.0f}] "
          f"{r['ms_per_step']:8.1f} ms/step  MFU {r['mfu']:6.1%}  {mem:>9}  "
          f"x{r['samples_per_s'] / first:.2f}", flush=True)


if __name__ == "__main__":
    main()
