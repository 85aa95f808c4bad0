"""``python -m emolib data synth|instagram|twitter-emoticon``: build a dataset in ``--out``.

A complete dataset there is left as it is (``--force`` rebuilds it); a failure is one line
``error: ...`` with exit status 2, printed by :func:`emolib.cli.main`.
"""

import argparse
import os
import shutil
from pathlib import Path

from emolib.images import MAX_SIDE
from emolib.layout import DataError

#: command -> (what it builds, [(option, type, default, help)])
COMMANDS = {
    "synth": ("EmoSynth, drawn offline and deterministically", [
        ("--size", int, 6000, "number of posts"),
        ("--classes", int, 8, "number of emoticons (even)"),
        ("--image-size", int, 64, "image side in pixels"),
        ("--noise", float, 0.05, "label-noise probability"),
        ("--workers", int, min(8, os.cpu_count() or 1), "processes drawing posts")]),
    "instagram": ("Instagram posts with captions from the Hugging Face hub (about 3.7 GB), "
                  "labelled with the protocol of Barbieri et al. 2018", [
        ("--top-k", int, 10, "number of classes: the most frequent emoji"),
        ("--max-posts", int, None, "stop after converting this many posts"),
        ("--parquet-dir", Path, None, "parquet files already on disk: no download"),
        ("--cache-dir", Path, None, "Hugging Face cache folder (default: HF_HOME)")]),
    "twitter-emoticon": ("your copy of Multimodal-TwitterEmoticon: a folder with a table "
                         "(text, image, label; optional id, split) and the images", [
        ("--from", Path, None, "the folder or the table file"),
        ("--url", str, None, "or the http(s) URL of a .zip or .tar.* archive ..."),
        ("--sha256", str, None, "... with its SHA-256"),
        ("--table", Path, None, "the table, when the folder holds several"),
        ("--labels", Path, None, "labels.json or a list of the classes to keep")]),
}


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Register the commands of :data:`COMMANDS` under ``python -m emolib data``."""
    for name, (text, options) in COMMANDS.items():
        parser = sub.add_parser(name, help=text, description=f"Build {text}.")
        parser.add_argument("--out", type=Path, help="dataset folder (default data/NAME)",
                            default=Path("data", "synthetic" if name == "synth" else name))
        parser.add_argument("--force", action="store_true", help="rebuild a finished one")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        if name != "synth":
            options = [*options, ("--max-side", int, MAX_SIDE, "longest image side")]
        for option, kind, default, help_ in options:
            parser.add_argument(option, type=kind, default=default, help=help_)
        parser.set_defaults(func=_run, build={"synth": _synth, "instagram": _instagram,
                                              "twitter-emoticon": _twitter}[name])


def _run(args: argparse.Namespace) -> int:
    from emolib.prepare.staging import needs_build

    try:
        if needs_build(args.out, args.force):
            print(args.build(args))
        else:
            print(f"{args.out} already holds a complete dataset; nothing to do (pass --force "
                  "to rebuild it)")
    except ImportError as err:  # an optional dependency that is not installed
        raise DataError(f"{err}; pip install 'emolib[data]' installs what data needs") from err
    except OSError as err:  # offline, HTTP or disk errors (the hub's and requests' too)
        raise DataError(f"{err} ({type(err).__name__})") from err
    return 0


def _synth(args: argparse.Namespace) -> str:
    from emolib.prepare.emosynth import generate
    from emolib.synth import SynthConfig, ceilings

    cfg = SynthConfig(size=args.size, classes=args.classes, image_size=args.image_size,
                      noise=args.noise, seed=args.seed)
    try:
        cfg.check()
    except ValueError as err:
        raise DataError(str(err)) from err
    generate(args.out, cfg, workers=args.workers)
    c = ceilings(cfg.classes, cfg.noise)
    return (f"EmoSynth: {cfg.size} posts, {cfg.classes} classes, {cfg.image_size}px -> "
            f"{args.out}\nBayes ceilings: text-only {c['text']:.3f}  image-only "
            f"{c['image']:.3f}  joint {c['joint']:.3f}")


def _instagram(args: argparse.Namespace) -> str:
    from emolib.prepare.instagram import convert_instagram, fetch_instagram

    folder = args.parquet_dir or fetch_instagram(args.cache_dir)
    return convert_instagram(folder, args.out, top_k=args.top_k, max_posts=args.max_posts,
                             seed=args.seed, max_side=args.max_side, force=True).summary()


def _twitter(args: argparse.Namespace) -> str:
    from emolib.prepare.twitter import convert_twitter_emoticon, fetch_twitter_emoticon

    src, cache = vars(args)["from"], args.out.with_name(f".{args.out.name}.download")
    if (src is None) == (args.url is None) or (args.url and not args.sha256):
        raise DataError("give --from DIR, or --url URL with --sha256 HEX (the checksum of the "
                        "archive you were given: sha256sum FILE prints it)")
    if args.url:
        src = fetch_twitter_emoticon(args.url, args.sha256, cache)
    report = convert_twitter_emoticon(src, args.out, table=args.table, labels_file=args.labels,
                                      seed=args.seed, max_side=args.max_side, force=True)
    shutil.rmtree(cache, ignore_errors=True)  # converted: the archive is no longer needed
    return report.summary()
