"""Instagram posts with captions from the hub, labelled with the protocol of Barbieri et
al. 2018: keep posts whose caption holds emoji of exactly one kind among the K most
frequent, remove the emoji from the text, label = that emoji.
"""

from collections import Counter
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from emolib.images import MAX_SIDE, ImageSkip, load_rgb
from emolib.layout import DataError
from emolib.prepare.rows import Report, clean_text, emoji_kind, finish, save_image
from emolib.prepare.staging import build, needs_build
from emolib.text import find_emoji

INSTAGRAM_REPO = "kkcosmos/instagram-images-with-captions"


def fetch_instagram(cache_dir: str | Path | None = None) -> Path:
    """The dataset's parquet files, downloaded once into the hub's cache (huggingface_hub
    resumes and verifies them, and finds them offline once they are cached).
    """
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(INSTAGRAM_REPO, repo_type="dataset",
                                  allow_patterns=["*.parquet"], cache_dir=cache_dir))


def caption_kinds(text: str) -> set[str]:
    """The distinct emoji kinds in a caption (skin tones and variation selectors ignored)."""
    return {kind for kind in map(emoji_kind, find_emoji(text)) if kind}


def detect_columns(schema) -> tuple[str, str]:
    """(image, caption) columns of a parquet schema: the image is binary, or a struct with
    ``bytes`` (the hub's Image feature); the caption is the string column named like one.
    """
    import pyarrow as pa

    images = [f.name for f in schema if pa.types.is_binary(f.type) or (
        pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0)]
    texts = [f.name for f in schema if pa.types.is_string(f.type)]
    named = [c for c in texts if any(hint in c.lower() for hint in ("caption", "text"))]
    found = ", ".join(f"{f.name} ({f.type})" for f in schema)
    if not images or not (named or len(texts) == 1):
        raise DataError(f"no {'caption' if images else 'image'} column in the parquet files "
                        "(an image is binary or a struct with 'bytes'; a caption is a string "
                        f"named like 'caption' or 'text'); the columns are: {found}")
    return images[0], (named or texts)[0]


def convert_instagram(parquet_dir: str | Path, out: str | Path, *, top_k: int = 10,
                      max_posts: int | None = None, seed: int = 0, max_side: int = MAX_SIDE,
                      force: bool = False, progress: bool = True) -> Report:
    """Convert a folder of Instagram parquet files into ``out``.

    Pass 1 reads only the captions, to find the ``top_k`` most frequent emoji among posts
    whose caption holds one kind; pass 2 decodes the images of the posts kept.
    ``max_posts`` stops after that many converted posts (a quick subset).
    """
    import pyarrow.parquet as pq

    parquet_dir, out = Path(parquet_dir).expanduser(), Path(out).expanduser()
    report = Report(out)
    if not needs_build(out, force):
        return report
    files = sorted(parquet_dir.rglob("*.parquet"))
    if not files or top_k < 1:
        raise DataError(f"--top-k must be at least 1, got {top_k}" if files
                        else f"no .parquet files under {parquet_dir}")
    image_col, caption_col = detect_columns(pq.read_schema(files[0]))
    captions = pd.concat([pd.read_parquet(f, columns=[caption_col])[caption_col]
                          for f in files], ignore_index=True)
    kinds = [caption_kinds(c) if isinstance(c, str) else set() for c in captions]
    counts = Counter(next(iter(k)) for k in kinds if len(k) == 1)
    top = sorted(counts, key=lambda k: (-counts[k], k))[:top_k]
    if not top:
        raise DataError(f"no caption in {parquet_dir} holds a single kind of emoji")
    posts = (post for f in files for batch in pq.ParquetFile(f).iter_batches(
        64, columns=[image_col, caption_col]) for post in batch.to_pylist())

    def write(tmp: Path):
        rows, taken = [], set()
        for n, post in enumerate(tqdm(posts, total=len(kinds), unit="post",
                                      disable=None if progress else True)):
            if max_posts is not None and len(rows) >= max_posts:
                break
            row_id, kind = f"ig{n + 1:06d}", next(iter(kinds[n]), "")
            where, image = f"post {n + 1} ({row_id})", post[image_col]
            if isinstance(image, dict):  # the hub's Image feature: {bytes, path}
                image = image.get("bytes")
            reason = ("no-caption" if not post[caption_col] else "no-emoji" if not kind else
                      "mixed-emoji" if len(kinds[n]) > 1 else "rare-emoji" if kind not in top
                      else "missing" if image is None else "")
            if reason:
                report.skip(reason, where)
                continue
            text = clean_text(post[caption_col], report, where)
            if text is None:
                continue
            try:
                img = load_rgb(image)
            except ImageSkip as skip:
                report.skip(skip.reason, f"{where}: {skip}")
                continue
            rows.append({"id": row_id, "text": text, "label": kind,
                         "image": save_image(tmp, row_id, img, max_side, taken)})
        return finish(report, rows, top, seed, source="instagram", repo=INSTAGRAM_REPO,
                      top_k=top_k, max_posts=max_posts, max_side=max_side)

    build(out, write)
    return report
