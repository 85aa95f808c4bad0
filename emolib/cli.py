"""Command line: ``python -m emolib {data,train,evaluate,predict} ...``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from emolib.config import PROFILES
from emolib.prepare.cli import add_data_commands


def _train(args: argparse.Namespace) -> int:
    from emolib.run import train

    if args.gpu_memory_limit:  # e.g. 15 on a large GPU: plan and run as on a T4
        import torch

        os.environ["EMOLIB_GPU_MEMORY_GIB"] = str(args.gpu_memory_limit)
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.gpu_memory_limit * 2**30
                                                       / total))
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                 "contrastive_weight": args.contrastive_weight, "seed": args.seed,
                 "compile": args.compile or None, "num_threads": args.threads,
                 "precision": args.precision, "micro_batch": args.micro_batch,
                 "grad_checkpointing": args.grad_checkpointing or None,
                 "label_fraction": args.label_fraction, "augment": args.augment or None}
    result = train(args.profile, args.data, args.out, mode=args.mode, fusion=args.fusion,
                   resume=not args.no_resume, **overrides)
    m = result.test_metrics
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    print(f"test ({m['n']} posts): accuracy {m['accuracy']:.4f}  MCC {m['mcc']:.4f}  "
          f"macro-F1 {m['macro_f1']:.4f}  -> {result.out_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from emolib.data import build_cache, load_dataset
    from emolib.run import load_run
    from emolib.train import evaluate

    run = load_run(args.run)
    cache = build_cache(load_dataset(args.data), run.pre)
    print(json.dumps(evaluate(run.model, cache, args.split), indent=1))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from emolib.run import load_run

    run = load_run(args.run)
    for emoji, name, prob in run.predict(args.text, args.image, top_k=args.top_k):
        print(f"{emoji}  {prob:6.1%}  {name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emolib", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build or convert a dataset into the canonical layout")
    data_sub = data.add_subparsers(dest="source", required=True)
    add_data_commands(data_sub)

    tr = sub.add_parser("train", help="train a model (resumes an interrupted run)")
    tr.add_argument("--profile", choices=("auto", *PROFILES), default=None,
                    help="size preset (default: $EMOLIB_PROFILE, else auto: gpu with CUDA, "
                         "else cpu)")
    tr.add_argument("--data", default="data/synthetic", help="canonical dataset folder")
    tr.add_argument("--out", default="runs/default", help="run folder")
    tr.add_argument("--mode", choices=["both", "text", "image"], default=None)
    tr.add_argument("--fusion", choices=["attention", "concat"], default=None)
    tr.add_argument("--contrastive-weight", type=float, default=None, help="lambda")
    tr.add_argument("--epochs", type=int, default=None)
    tr.add_argument("--batch-size", type=int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    tr.add_argument("--compile", action="store_true", help="torch.compile the model")
    tr.add_argument("--augment", action="store_true",
                    help="random flips and shifts of the training images")
    tr.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default=None,
                    help="default auto: bf16 on GPUs with native bf16, fp16 below, fp32 on CPU")
    tr.add_argument("--micro-batch", type=int, default=None,
                    help="posts per forward pass (default: what fits the GPU's free memory); "
                         "the loss still sees the whole batch")
    tr.add_argument("--grad-checkpointing", action="store_true",
                    help="recompute activations in backward (less memory, ~30%% slower)")
    tr.add_argument("--gpu-memory-limit", type=float, default=None, metavar="GIB",
                    help="use at most this much GPU memory (e.g. 15 to act as a T4)")
    tr.add_argument("--label-fraction", type=float, default=None,
                    help="share of training posts whose label CE sees (the rest: InfoNCE only)")
    tr.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    tr.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="metrics of a trained run on a dataset split")
    ev.add_argument("--run", required=True, help="run folder written by train")
    ev.add_argument("--data", default="data/synthetic")
    ev.add_argument("--split", choices=["train", "val", "test"], default="test")
    ev.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", help="emoticon of one post (text + image)")
    pr.add_argument("--run", required=True, help="run folder written by train")
    pr.add_argument("--text", required=True)
    pr.add_argument("--image", required=True, help="image file")
    pr.add_argument("--top-k", type=int, default=3)
    pr.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from emolib.layout import DataError

    try:
        return int(args.func(args) or 0)
    except (DataError, OSError, ValueError) as err:  # bad input: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
