"""Instagram posts from the hub, labelled as by Barbieri et al. 2018: keep the posts whose caption
holds emoji of one kind among the K most frequent, remove the emoji; the label is that emoji."""

from collections import Counter
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from emolib.layout import DataError
from emolib.prepare.staging import MAX_SIDE, Report, build, clean_text, emoji_kind
from emolib.text import find_emoji

REPO = "kkcosmos/instagram-images-with-captions"
IMAGE, CAPTION = "image", "caption"  # its columns: the hub's Image feature, a string


def fetch_instagram(cache_dir: str | Path | None = None) -> Path:
    """The parquet files, downloaded once (huggingface_hub resumes, verifies and caches)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(REPO, repo_type="dataset", allow_patterns=["*.parquet"],
                                  cache_dir=cache_dir))


def convert_instagram(parquet_dir: str | Path, out: str | Path, *, top_k: int = 10,
                      max_posts: int | None = None, seed: int = 0, max_side: int = MAX_SIDE,
                      force: bool = False, progress: bool = True) -> Report:
    """Convert the parquet files under ``parquet_dir``: pass 1 reads only the captions, to find
    the ``top_k`` classes; pass 2 decodes the images of the posts kept (up to ``max_posts``)."""
    import pyarrow.parquet as pq

    files = sorted(Path(parquet_dir).expanduser().rglob("*.parquet"))
    report = Report(Path(out).expanduser())
    if not files:
        raise DataError(f"no .parquet files under {parquet_dir}")
    if not {IMAGE, CAPTION} <= set(columns := pq.read_schema(files[0]).names):
        raise DataError(f"{files[0].name} lacks the {IMAGE!r} and {CAPTION!r} columns of {REPO}"
                        f"; its columns are: {', '.join(columns)}")

    def write(tmp: Path):
        captions = pd.concat([pd.read_parquet(f, columns=[CAPTION])[CAPTION] for f in files])
        kinds = [{emoji_kind(e) for e in find_emoji(c if isinstance(c, str) else "")} - {""}
                 for c in captions]  # pandas reads a missing caption as NaN
        counts = Counter(next(iter(k)) for k in kinds if len(k) == 1)
        top = sorted(counts, key=lambda k: (-counts[k], k))[:top_k]
        if not top:
            raise DataError(f"no class: --top-k is {top_k}, or no caption has one kind of emoji")
        posts = (post for f in files for batch in pq.ParquetFile(f).iter_batches(
            64, columns=[IMAGE, CAPTION]) for post in batch.to_pylist())
        for n, post in enumerate(tqdm(posts, total=len(kinds), unit="post",
                                      disable=None if progress else True)):
            if max_posts is not None and len(report.rows) >= max_posts:
                break
            row_id, kind, image = f"ig{n + 1:06d}", next(iter(kinds[n]), ""), post[IMAGE]
            where = f"post {n + 1} ({row_id})"
            image = image.get("bytes") if isinstance(image, dict) else image  # {bytes, path}
            reason = ("no-caption" if not post[CAPTION] else "no-emoji" if not kind else
                      "mixed-emoji" if len(kinds[n]) > 1 else "rare-emoji" if kind not in top
                      else "missing" if image is None else "")
            if reason:
                report.skip(reason, where)
            elif text := clean_text(post[CAPTION], report, where):
                report.keep({"id": row_id, "text": text, "label": kind}, image, where, tmp,
                            max_side)
        return report.finish(top, seed, source="instagram", repo=REPO, top_k=top_k,
                             max_posts=max_posts, max_side=max_side)

    build(report.out, write, force)
    return report
