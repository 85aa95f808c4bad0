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
    from emolib.train import train

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                 "contrastive_weight": args.contrastive_weight, "seed": args.seed,
                 "compile": args.compile or None, "num_threads": args.threads}
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
    from emolib.inference import load_run
    from emolib.train import evaluate

    run = load_run(args.run)
    info = load_dataset(args.data)
    cache = build_cache(info, run.tokenizer, run.model.cfg.image_size, run.model.cfg.max_length)
    metrics = evaluate(run.model, cache, args.split)
    print(json.dumps(metrics, indent=1))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from emolib.inference import load_run

    run = load_run(args.run)
    ranked = run.predict(args.text, args.image, top_k=args.top_k)
    for emoji, name, prob in ranked:
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
    tr.add_argument("--profile", choices=PROFILES, default=None,
                    help="size preset (default: $EMOLIB_PROFILE or cpu)")
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
    except (DataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
