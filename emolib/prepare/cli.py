"""``python -m emolib data synth|instagram|twitter-emoticon``: build a dataset in ``--out``
unless a complete one is there (``--force`` rebuilds it)."""

import argparse
import os
import shutil
from pathlib import Path

from emolib.layout import DataError
from emolib.prepare.staging import MAX_SIDE

#: command -> (what it builds, [(option, type, default)]); all take --out, --force, --seed
COMMANDS = {
    "synth": ("EmoSynth, drawn offline", [
        ("--size", int, 6000), ("--classes", int, 8), ("--image-size", int, 64),
        ("--noise", float, 0.05), ("--workers", int, min(8, os.cpu_count() or 1))]),
    "instagram": ("Instagram posts from the hub, labelled as by Barbieri et al. 2018", [
        ("--top-k", int, 10), ("--max-posts", int, None), ("--parquet-dir", Path, None),
        ("--cache-dir", Path, None), ("--max-side", int, MAX_SIDE)]),
    "twitter-emoticon": ("your copy of Multimodal-TwitterEmoticon: a folder, or an archive", [
        ("--from", Path, None), ("--url", str, None), ("--sha256", str, None),
        ("--table", Path, None), ("--labels", Path, None), ("--max-side", int, MAX_SIDE)]),
}


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Register the commands of :data:`COMMANDS` under ``python -m emolib data``."""
    for name, (text, options) in COMMANDS.items():
        parser = sub.add_parser(name, help=text, description=f"Build {text}.")
        parser.add_argument("--force", action="store_true", help="rebuild a finished dataset")
        out = Path("data", "synthetic" if name == "synth" else name)
        for option, kind, default in [("--out", Path, out), *options, ("--seed", int, 0)]:
            parser.add_argument(option, type=kind, default=default, help="default: %(default)s")
        parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    """Completion first (no download for a finished dataset); emolib.cli.main prints errors."""
    from emolib.prepare import emosynth, instagram, staging, twitter
    from emolib.synth import SynthConfig, ceilings

    out, src = args.out, vars(args).get("from")
    if not staging.needs_build(out, args.force):
        print(f"{out} already holds a complete dataset; nothing to do (--force rebuilds it)")
    elif args.source == "synth":
        cfg = SynthConfig(args.size, args.classes, args.image_size, args.noise, args.seed)
        emosynth.generate(out, cfg, workers=args.workers)
        c = ceilings(cfg.classes, cfg.noise)
        print(f"EmoSynth: {cfg.size} posts, {cfg.classes} classes, {cfg.image_size}px -> {out}"
              f"\nBayes ceilings: text-only {c['text']:.3f}  image-only {c['image']:.3f}  "
              f"joint {c['joint']:.3f}")
    elif args.source == "twitter-emoticon" and ((src is None) == (args.url is None)
                                                or (args.url and not args.sha256)):
        raise DataError("give --from DIR, or --url URL with --sha256 HEX (the checksum of the "
                        "archive you were given: sha256sum FILE prints it)")
    else:
        try:
            if args.source == "instagram":
                folder = args.parquet_dir or instagram.fetch_instagram(args.cache_dir)
                report = instagram.convert_instagram(folder, out, top_k=args.top_k, force=True,
                                                     max_posts=args.max_posts, seed=args.seed,
                                                     max_side=args.max_side)
            else:
                cache = out.with_name(f".{out.name}.download")  # the archive, until converted
                src = src or twitter.extract(twitter.download(args.url, cache / "archive",
                                                          args.sha256), cache / args.sha256)
                report = twitter.convert_twitter_emoticon(
                    src, out, table=args.table, labels_file=args.labels, seed=args.seed,
                    max_side=args.max_side, force=True)
                shutil.rmtree(cache, ignore_errors=True)
        except ImportError as err:  # huggingface_hub, pyarrow or pooch: the 'data' extra
            raise DataError(f"{err}; pip install 'emolib[data]' installs it") from err
        print(report.summary())
    return 0
